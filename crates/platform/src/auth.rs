//! Who is calling: JWT access tokens (HS256 pinned, issuer, audience and expiry
//! checked against the injected clock), roles, and argon2id passwords.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::credentials::Credentials;
use crate::problem::ApiError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Agent,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Role::Customer),
            "agent" => Ok(Role::Agent),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    /// The account's credential version when the token was issued; suspending
    /// an account bumps it, so older tokens stop working at once.
    pub ver: i64,
}

/// Mints and checks access tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl_secs: i64,
    clock: SharedClock,
    /// The service's projection of who still stands; without it only the
    /// signature and claims are checked (the gateway, the users service,
    /// which reads its own accounts).
    credentials: Option<Arc<Credentials>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// A freshly minted access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: i64,
}

impl Tokens {
    pub fn new(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        access_ttl_secs: i64,
        clock: SharedClock,
    ) -> Self {
        // The algorithm is pinned: a token whose header names any other
        // (`none`, RS256 with our secret as a "public key", …) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the injected clock below, not the wall clock.
        validation.validate_exp = false;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            access_ttl_secs,
            clock,
            credentials: None,
        }
    }

    /// The same keys, also checking each caller against `credentials`.
    pub fn with_credentials(&self, credentials: Arc<Credentials>) -> Self {
        Self {
            credentials: Some(credentials),
            ..self.clone()
        }
    }

    /// The same keys, checking signature and claims only.
    pub fn without_credentials(&self) -> Self {
        Self {
            credentials: None,
            ..self.clone()
        }
    }

    /// The projection callers are checked against, if any.
    pub fn credentials(&self) -> Option<&Arc<Credentials>> {
        self.credentials.as_ref()
    }

    /// Verifies `token` and, where this service keeps the projection, that
    /// its account still stands at the token's credential version.
    pub async fn authenticate(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = self.verify(token)?;
        if let Some(credentials) = &self.credentials {
            credentials
                .check(claims.sub, claims.role, claims.ver)
                .await?;
        }
        Ok(claims)
    }

    pub fn issue(&self, user: Uuid, role: Role, ver: i64) -> Result<AccessToken, ApiError> {
        let now = self.clock.now().timestamp();
        let claims = Claims {
            sub: user,
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + self.access_ttl_secs,
            jti: crate::id::new_id(),
            ver,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok(AccessToken {
            token,
            expires_in: self.access_ttl_secs,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                // Which check failed helps an attacker more than a client: log it, say less.
                tracing::debug!(error = %e, "access token refused");
                ApiError::Unauthenticated("invalid token".into())
            })?;
        let now = self.clock.now().timestamp();
        if data.claims.exp <= now {
            return Err(ApiError::Unauthenticated("token expired".into()));
        }
        if data.claims.iat > now + 60 {
            return Err(ApiError::Unauthenticated(
                "token issued in the future".into(),
            ));
        }
        Ok(data.claims)
    }
}

/// An authenticated caller, from a valid `Authorization: Bearer` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
    pub ver: i64,
    /// When the token expires (Unix seconds): long-lived streams end then.
    pub expires_at: i64,
}

impl AuthUser {
    /// Refuses callers whose role is not among `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        require_role(self.role, roles)
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Refuses `role` unless it is among `allowed`: one wording of a role's 403,
/// whichever service's caller type asks.
pub fn require_role(role: Role, allowed: &[Role]) -> Result<(), ApiError> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this action is not open to the {role} role"
        )))
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Arc<Tokens>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)
            .ok_or_else(|| ApiError::Unauthenticated("missing bearer token".into()))?;
        let tokens = Arc::<Tokens>::from_ref(state);
        let claims = tokens.authenticate(token).await?;
        Ok(AuthUser {
            id: claims.sub,
            role: claims.role,
            ver: claims.ver,
            expires_at: claims.exp,
        })
    }
}

/// A password that met the policy. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Passwords so common that length alone does not make them safe.
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "12345678910",
    "password123",
    "password1234",
    "qwertyuiop",
    "1q2w3e4r5t",
    "iloveyou123",
    "0123456789",
    "passw0rd123",
    "miliki12345",
];

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 128;

    /// Length is what makes a password strong (NIST SP 800-63B): at least ten
    /// characters, not one repeated character, not a well-known password.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(format!("must be at least {} characters", Self::MIN_CHARS));
        }
        if chars > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        let mut distinct = raw.chars().collect::<Vec<_>>();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 4 {
            return Err("is too repetitive".into());
        }
        if COMMON_PASSWORDS.contains(&raw.to_lowercase().as_str()) {
            return Err("is too common".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// An argon2id PHC string; hashing is CPU-bound, so it runs off the
    /// reactor, in the bounded [`hashing`] pool.
    pub async fn hash(&self) -> Result<String, ApiError> {
        let plain = self.0.clone();
        hashing::run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(plain.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing failed: {e}")))
        })
        .await?
    }
}

/// Checks `plain` against a stored PHC hash. With no stored hash it checks a
/// dummy, so an unknown login costs the same time as a wrong password. Fails
/// only when the hashing pool is full (503 with Retry-After).
pub async fn verify_password(plain: String, stored: Option<String>) -> Result<bool, ApiError> {
    hashing::run(move || {
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(plain.as_bytes(), &parsed)
            .is_ok()
    })
    .await
}

/// The process-wide pool that password hashing runs in. Each argon2id run
/// takes 19 MiB and a core for tens of milliseconds, so running them without
/// bound lets a burst of logins exhaust memory; a few at a time, each waiting
/// briefly for its turn, keeps the process steady and tells the rest to retry.
pub mod hashing {
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use crate::problem::ApiError;

    struct Pool {
        slots: Arc<Semaphore>,
        wait: Duration,
    }

    static POOL: OnceLock<Pool> = OnceLock::new();

    /// Sizes the pool; the first call wins (one process, one pool).
    pub fn configure(slots: usize, wait: Duration) {
        let _ = POOL.set(Pool {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            wait,
        });
    }

    fn pool() -> &'static Pool {
        POOL.get_or_init(|| Pool {
            slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            wait: Duration::from_secs(3),
        })
    }

    /// Runs `work` on a blocking thread once a slot is free.
    pub async fn run<T: Send + 'static>(
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let pool = pool();
        let permit = tokio::time::timeout(pool.wait, pool.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                metrics::counter!("password_hash_rejected_total").increment(1);
                ApiError::Overloaded {
                    retry_after_secs: 1,
                }
            })?
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(ApiError::internal)
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"not-a-real-password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::{Duration, TimeZone, Utc};

    fn tokens(clock: Arc<ManualClock>) -> Tokens {
        Tokens::new(
            b"0123456789abcdef0123456789abcdef",
            "miliki",
            "miliki-api",
            900,
            clock,
        )
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ));
        let t = tokens(clock.clone());
        let user = Uuid::now_v7();
        let minted = t.issue(user, Role::Agent, 3).unwrap();
        let claims = t.verify(&minted.token).unwrap();
        assert_eq!(
            (claims.sub, claims.role, claims.ver),
            (user, Role::Agent, 3)
        );
        clock.advance(Duration::seconds(901));
        assert!(t.verify(&minted.token).is_err());
    }

    #[test]
    fn refuses_other_algorithms_issuers_and_secrets() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let t = tokens(clock.clone());
        let minted = t.issue(Uuid::now_v7(), Role::Admin, 0).unwrap();
        // alg=none: same claims, no signature.
        let mut parts = minted.token.split('.');
        let _header = parts.next();
        let payload = parts.next().unwrap();
        let none_header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        assert!(t.verify(&format!("{none_header}.{payload}.")).is_err());
        let other_secret = Tokens::new(
            b"another-secret-another-secret-xx",
            "miliki",
            "miliki-api",
            900,
            clock.clone(),
        );
        assert!(other_secret.verify(&minted.token).is_err());
        let other_audience = Tokens::new(
            b"0123456789abcdef0123456789abcdef",
            "miliki",
            "elsewhere",
            900,
            clock,
        );
        assert!(other_audience.verify(&minted.token).is_err());
    }

    #[test]
    fn password_policy() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("aaaaaaaaaaaa").is_err());
        assert!(Password::parse("kiboko-ride-2026").is_ok());
        assert!(Password::parse("Password123").is_err());
        assert_eq!(
            format!("{:?}", Password::parse("correct horse battery").unwrap()),
            "Password(***)"
        );
    }
}

//! `/api/v1/auth`: registration, login, refresh and logout.

use axum::extract::State;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Duration;
use miliki_events::catalogue::users::UserRegistered;
use miliki_platform::auth::{verify_password, Password, Role};
use miliki_platform::contact::{EmailAddress, PhoneNumber};
use miliki_platform::http::{ClientIp, Json};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::users::UserView;
use crate::domain::{parse_name, UserStatus};
use crate::state::AppState;
use crate::store::{self, NewUser};
use crate::verification;

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub name: Option<String>,
    /// Any common notation; national numbers are read in the operator's region.
    pub phone: Option<String>,
    pub email: Option<String>,
    /// At least 10 characters.
    pub password: Option<String>,
}

/// The account fields of a registration-shaped body, as sent.
pub(crate) struct AccountFields<'a> {
    pub name: &'a Option<String>,
    pub phone: &'a Option<String>,
    pub email: &'a Option<String>,
    pub password: &'a Option<String>,
}

/// Turns account fields into a new account, hashing its password. Errors
/// already in `v` are reported together with these fields' own.
pub(crate) async fn parse_new_user(
    state: &AppState,
    fields: AccountFields<'_>,
    role: Role,
    onboarded_by: Option<Uuid>,
    mut v: Validator,
) -> Result<NewUser, ApiError> {
    let AccountFields {
        name,
        phone,
        email,
        password,
    } = fields;
    let region = &state.deps.settings.default_region;
    let name = v
        .required("name", name)
        .and_then(|n| v.check("name", parse_name(n)));
    let phone = v
        .required("phone", phone)
        .and_then(|p| v.check("phone", PhoneNumber::parse(p, region)));
    let email = match email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => v.check("email", EmailAddress::parse(e)).map(Some),
        None => Some(None),
    };
    let password = v
        .required("password", password)
        .and_then(|p| v.check("password", Password::parse(p)));
    v.finish()?;
    let (Some(name), Some(phone), Some(email), Some(password)) = (name, phone, email, password)
    else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    if let Some(which) =
        store::contact_in_use(&state.deps.db, &state.deps.keyring, &phone, email.as_ref()).await?
    {
        return Err(ApiError::Conflict(format!(
            "an account with this {which} already exists"
        )));
    }
    Ok(NewUser {
        name,
        role,
        phone,
        email,
        password_hash: password.hash().await?,
        onboarded_by,
        phone_vouched: false,
    })
}

/// Creates an account and its `users.user.registered.v1` event in one
/// transaction, with its phone vouched for or a code on its way to it.
pub(crate) async fn create_account(state: &AppState, user: &NewUser) -> Result<Uuid, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let id = store::insert_user(&mut tx, &deps.keyring, user, now).await?;
    if user.phone_vouched {
        verification::mark_verified(&mut tx, deps, id, user.phone.as_str(), None, now).await?;
    } else {
        verification::issue(&mut tx, deps, id, user.phone.as_str(), now).await?;
    }
    crate::credentials::announce(&mut tx, &deps.events, id).await?;
    deps.events
        .write(
            &mut tx,
            &UserRegistered {
                user_id: id,
                role: user.role.as_str().to_owned(),
                onboarded_by: user.onboarded_by,
            },
        )
        .await?;
    deps.events.commit(tx).await?;
    Ok(id)
}

/// Register as a customer.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created", body = UserView),
        (status = 409, description = "Phone or email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user = parse_new_user(
        &state,
        AccountFields {
            name: &body.name,
            phone: &body.phone,
            email: &body.email,
            password: &body.password,
        },
        Role::Customer,
        None,
        Validator::new(),
    )
    .await?;
    let id = create_account(&state, &user).await?;
    let record = store::find_user(&state.deps.db, &state.deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok((StatusCode::CREATED, Json(UserView::from(&record))))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// A phone number or an email address.
    pub login: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// The blind-index column and values (one per blind key, the active key's
/// first) a login string names, if it can name any.
fn login_index(state: &AppState, login: &str) -> Option<(&'static str, Vec<String>)> {
    let keys = &state.deps.keyring;
    if login.contains('@') {
        EmailAddress::parse(login)
            .ok()
            .map(|e| ("email_index", store::email_indexes(keys, &e)))
    } else {
        PhoneNumber::parse(login, &state.deps.settings.default_region)
            .ok()
            .map(|p| ("phone_index", store::phone_indexes(keys, &p)))
    }
}

/// Log in with phone or email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens", body = TokenResponse),
        (status = 401, description = "Wrong login or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let mut v = Validator::new();
    let login = v.required("login", &body.login);
    let password = v.required("password", &body.password);
    v.finish()?;
    let (Some(login), Some(password)) = (login, password) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let deps = &state.deps;
    let settings = &deps.settings;
    let index = login_index(&state, login);
    // Throttle by account (whatever was typed, so unknown logins count too) and by address.
    let account = index
        .as_ref()
        .and_then(|(_, i)| i.first().cloned())
        .unwrap_or_else(|| deps.keyring.blind_index("login", &login.to_lowercase()));
    let pair_key = format!("login:pair:{account}:{ip}");
    let account_key = format!("login:account:{account}");
    let ip_key = format!("login:ip:{ip}");
    let limiter = &deps.limiter;
    let window = std::time::Duration::from_secs(settings.login_window_secs);
    // Every attempt takes a number before any password is checked, so a burst
    // of concurrent guesses cannot all slip in under the limit. Only this
    // (account, address) pair is held back: the owner elsewhere still gets in.
    let pair = limiter
        .hit(&pair_key, window)
        .await
        .map_err(ApiError::internal)?;
    if pair.count > settings.login_max_failures {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: pair.resets_in_secs,
        });
    }
    let failures = |key: &str| {
        let key = key.to_owned();
        async move {
            limiter
                .peek(&key)
                .await
                .map(|w| w.map_or(0, |w| w.count))
                .map_err(ApiError::internal)
        }
    };
    let (account_failures, ip_failures) = (failures(&account_key).await?, failures(&ip_key).await?);
    if ip_failures >= settings.login_ip_max_failures {
        let resets = limiter
            .peek(&ip_key)
            .await
            .map_err(ApiError::internal)?
            .map_or(1, |w| w.resets_in_secs);
        return Err(ApiError::TooManyRequests {
            retry_after_secs: resets,
        });
    }
    // Many failures on one account (from anywhere), or from one address (many
    // customers share carrier NAT), slow each further attempt rather than ban.
    let delay = slowdown(account_failures, settings.login_account_slow_after)
        .max(slowdown(ip_failures, settings.login_ip_slow_after));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let user = match &index {
        Some((column, values)) => {
            store::find_by_index(&deps.db, &deps.keyring, column, values).await?
        }
        None => None,
    };
    let ok = verify_password(
        password.to_owned(),
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await?;
    let Some(user) = user.filter(|_| ok) else {
        for key in [&account_key, &ip_key] {
            limiter.hit(key, window).await.map_err(ApiError::internal)?;
        }
        return Err(ApiError::Unauthenticated("wrong login or password".into()));
    };
    for key in [&pair_key, &account_key] {
        limiter.clear(key).await.map_err(ApiError::internal)?;
    }
    if user.status != UserStatus::Active {
        return Err(ApiError::Forbidden("the account is suspended".into()));
    }
    if !verification::may_log_in(&user, settings, deps.clock.now()) {
        return Err(verification::unverified_refusal());
    }
    let mut tx = deps.db.begin().await?;
    let tokens = issue_tokens(
        &state,
        &mut tx,
        user.id,
        user.role,
        user.auth_version,
        miliki_platform::id::new_id(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(tokens))
}

/// How long an attempt waits once `failures` passed `after`: doubling from a
/// quarter second, at most five seconds.
fn slowdown(failures: u64, after: u64) -> std::time::Duration {
    if failures < after {
        return std::time::Duration::ZERO;
    }
    let doublings = (failures - after).min(5) as u32;
    std::time::Duration::from_millis(250 * 2u64.pow(doublings))
        .min(std::time::Duration::from_secs(5))
}

/// Mints an access token and the next refresh token of `family`.
async fn issue_tokens(
    state: &AppState,
    tx: &mut miliki_platform::db::Tx,
    user: Uuid,
    role: Role,
    version: i64,
    family: Uuid,
) -> Result<TokenResponse, ApiError> {
    let deps = &state.deps;
    let access = deps.tokens.issue(user, role, version)?;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let refresh = URL_SAFE_NO_PAD.encode(raw);
    let now = deps.clock.now();
    let expires = now + Duration::seconds(deps.settings.refresh_token_ttl_secs);
    store::insert_refresh(tx, family, user, &hash_token(&refresh), now, expires).await?;
    Ok(TokenResponse {
        access_token: access.token,
        refresh_token: refresh,
        token_type: "Bearer".into(),
        expires_in: access.expires_in,
    })
}

fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: Option<String>,
}

/// Trade a refresh token for new tokens. Each refresh token works once; using
/// one again revokes every token descended from the same login.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or reused token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let mut v = Validator::new();
    let token = v.required("refresh_token", &body.refresh_token);
    v.finish()?;
    let token = token.unwrap_or_default();
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let Some(record) = store::find_refresh(&mut tx, &hash_token(token)).await? else {
        return Err(ApiError::Unauthenticated("unknown refresh token".into()));
    };
    if record.used || record.revoked {
        // Someone holds a token that was already traded: assume it was stolen.
        store::revoke_family(&mut tx, record.family_id, now).await?;
        tx.commit().await?;
        if record.used && !record.revoked {
            tracing::warn!(user = %record.user_id, "refresh token reuse detected; session revoked");
        }
        return Err(ApiError::Unauthenticated(
            "refresh token already used or revoked; sign in again".into(),
        ));
    }
    if record.expires_at <= now {
        return Err(ApiError::Unauthenticated("refresh token expired".into()));
    }
    if !store::use_refresh(&mut tx, record.id, now).await? {
        store::revoke_family(&mut tx, record.family_id, now).await?;
        tx.commit().await?;
        return Err(ApiError::Unauthenticated(
            "refresh token already used; sign in again".into(),
        ));
    }
    let user = store::find_user(&deps.db, &deps.keyring, record.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(|| ApiError::Unauthenticated("the account is not active".into()))?;
    if !verification::may_log_in(&user, &deps.settings, now) {
        // The refresh is spent; the session ends here.
        tx.commit().await?;
        return Err(verification::unverified_refusal());
    }
    let tokens = issue_tokens(
        &state,
        &mut tx,
        user.id,
        user.role,
        user.auth_version,
        record.family_id,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(tokens))
}

/// Log out: the refresh token and its whole family stop working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "Logged out (also for unknown tokens)")))]
pub async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let mut v = Validator::new();
    let token = v.required("refresh_token", &body.refresh_token);
    v.finish()?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    if let Some(record) =
        store::find_refresh(&mut tx, &hash_token(token.unwrap_or_default())).await?
    {
        store::revoke_family(&mut tx, record.family_id, deps.clock.now()).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

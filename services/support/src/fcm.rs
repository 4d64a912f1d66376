//! FCM HTTP v1 access tokens minted from a Google service account
//! (`MILIKI_PUSH_SERVICE_ACCOUNT_FILE`, the JSON key file Google issues): a
//! JWT signed RS256 with the account's private key (iss = client_email,
//! scope = firebase.messaging, aud = token_uri, an hour long) is exchanged at
//! token_uri (grant type jwt-bearer) for a bearer token, which is reused until
//! a minute before it expires. Times come from the injected clock.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use miliki_platform::clock::SharedClock;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// The scope FCM HTTP v1 asks for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The OAuth2 grant type of a signed JWT assertion (RFC 7523).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long an assertion is valid (Google's maximum).
const ASSERTION_SECS: i64 = 3600;
/// A cached token is renewed this long before it expires.
const RENEW_BEFORE_SECS: i64 = 60;

/// The fields of a service-account key file this needs.
#[derive(Debug, Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// The claims of the assertion.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// A service account that mints access tokens, with its cached token.
pub struct ServiceAccount {
    pub client_email: String,
    pub project_id: Option<String>,
    pub token_uri: String,
    key_id: Option<String>,
    key: EncodingKey,
    cached: Mutex<Option<(String, DateTime<Utc>)>>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Reads a key file. `token_uri` overrides the file's (as does a path,
    /// resolved by `here` to this process, for the sandbox).
    pub fn load(
        path: &str,
        token_uri: Option<String>,
        here: impl Fn(String) -> String,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("MILIKI_PUSH_SERVICE_ACCOUNT_FILE {path:?} cannot be read: {e}")
        })?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "MILIKI_PUSH_SERVICE_ACCOUNT_FILE {path:?} is not a service-account key: {e}"
            )
        })?;
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes()).map_err(|e| {
            anyhow::anyhow!("MILIKI_PUSH_SERVICE_ACCOUNT_FILE {path:?}: private_key: {e}")
        })?;
        let token_uri = token_uri
            .or(file.token_uri)
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        Ok(Self {
            client_email: file.client_email,
            project_id: file.project_id,
            token_uri: here(token_uri),
            key_id: file.private_key_id,
            key,
            cached: Mutex::new(None),
        })
    }

    /// A bearer token valid for more than a minute: the cached one, or a new one.
    pub async fn access_token(
        &self,
        http: &reqwest::Client,
        clock: &SharedClock,
    ) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        let now = clock.now();
        if let Some((token, expires)) = cached.as_ref() {
            if now < *expires - chrono::Duration::seconds(RENEW_BEFORE_SECS) {
                return Ok(token.clone());
            }
        }
        let (token, expires) = self.mint(http, now).await?;
        *cached = Some((token.clone(), expires));
        Ok(token)
    }

    async fn mint(
        &self,
        http: &reqwest::Client,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let claims = Claims {
            iss: self.client_email.clone(),
            scope: SCOPE.into(),
            aud: self.token_uri.clone(),
            iat: now.timestamp(),
            exp: now.timestamp() + ASSERTION_SECS,
        };
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("token: signing the assertion: {e}"))?;
        let resp = http
            .post(&self.token_uri)
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("token {}: {e}", self.token_uri))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            return Err(format!(
                "token {}: HTTP {status} {} {}",
                self.token_uri,
                body["error"].as_str().unwrap_or(""),
                body["error_description"].as_str().unwrap_or("")
            ));
        }
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("token {}: no access_token in the answer", self.token_uri))?;
        let lifetime = body["expires_in"].as_i64().unwrap_or(ASSERTION_SECS).max(0);
        Ok((token.to_owned(), now + chrono::Duration::seconds(lifetime)))
    }
}

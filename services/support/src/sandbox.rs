//! In-process stand-ins for the SMS provider (Africa's Talking's messaging API)
//! and for push (FCM HTTP v1), recording what they were sent, so the platform
//! runs and is tested end to end without accounts. Each can be told to fail
//! its next requests, to rehearse retries and failover.
//!
//! - `POST /sandbox/sms/version1/messaging` (form: `username`, `to`, `message`, `from`; header `apiKey`)
//! - `POST /sandbox/sms-fallback/version1/messaging`: a second, independent provider
//! - `POST /sandbox/push/v1/projects/{project}/messages:send` (bearer token)
//! - `POST /sandbox/push/token`: Google's OAuth2 token endpoint for a service
//!   account's signed JWT (form `grant_type`, `assertion`). It trusts the RSA
//!   public keys in `MILIKI_PUSH_SANDBOX_PUBLIC_KEY_FILE` (PEM); once one is
//!   set, `messages:send` takes only the bearer tokens it issued, unexpired.
//!   `GET /sandbox/push/tokens` lists what it issued.
//! - `GET /sandbox/{sms,sms-fallback,push}/messages`: what was accepted
//! - `POST /sandbox/{sms,sms-fallback,push}/outage` `{"failures": n}`: fail the next n requests with 503

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use miliki_events::service::SandboxContext;
use miliki_platform::clock::SharedClock;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub id: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The SMS fields, or the FCM message.
    pub request: serde_json::Value,
}

/// An access token the push sandbox's token endpoint issued.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    pub access_token: String,
    /// The service account it was issued to.
    pub client_email: String,
    pub issued_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// What the push sandbox needs for OAuth: the keys it trusts, where it
/// answers (the assertion's audience), and what it issued.
#[derive(Clone, Default)]
struct OAuth {
    keys: Arc<Vec<jsonwebtoken::DecodingKey>>,
    audience: String,
    issued: Arc<Mutex<Vec<Issued>>>,
}

/// How long a sandbox access token lives, as Google's do.
const TOKEN_SECS: i64 = 3599;

#[derive(Clone)]
struct Sandbox {
    clock: SharedClock,
    messages: Arc<Mutex<Vec<Recorded>>>,
    failures: Arc<Mutex<u32>>,
    oauth: OAuth,
}

impl Sandbox {
    fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            messages: Arc::default(),
            failures: Arc::default(),
            oauth: OAuth::default(),
        }
    }

    /// True when this request is to fail (an outage was ordered).
    fn failing(&self) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if *f > 0 {
            *f -= 1;
            true
        } else {
            false
        }
    }

    fn record(&self, request: serde_json::Value) -> String {
        let id = format!("sbx-{}", uuid::Uuid::now_v7().simple());
        let mut m = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a sandbox is for looking at, not for keeping.
        if m.len() >= 10_000 {
            m.remove(0);
        }
        m.push(Recorded {
            id: id.clone(),
            at: self.clock.now(),
            request,
        });
        id
    }
}

#[derive(Debug, Deserialize)]
struct SmsForm {
    username: String,
    to: String,
    message: String,
    from: Option<String>,
}

async fn sms_send(
    State(s): State<Sandbox>,
    headers: HeaderMap,
    Form(f): Form<SmsForm>,
) -> Response {
    if headers.get("apikey").is_none_or(|k| k.is_empty()) {
        return (
            StatusCode::UNAUTHORIZED,
            "The supplied authentication is invalid",
        )
            .into_response();
    }
    if s.failing() {
        return (StatusCode::SERVICE_UNAVAILABLE, "sandbox outage").into_response();
    }
    let recipients: Vec<serde_json::Value> = f
        .to
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|number| {
            let id = s.record(json!({
                "username": f.username, "to": number, "message": f.message, "from": f.from,
            }));
            json!({"statusCode": 101, "number": number, "status": "Success", "cost": "KES 0.8000", "messageId": id})
        })
        .collect();
    (
        StatusCode::CREATED,
        Json(json!({"SMSMessageData": {
            "Message": format!("Sent to {}/{} Total Cost: KES 0.8000", recipients.len(), recipients.len()),
            "Recipients": recipients,
        }})),
    )
        .into_response()
}

async fn push_send(
    State(s): State<Sandbox>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    // With keys configured, only a token this sandbox issued and that is unexpired.
    let authorized = match &bearer {
        None => false,
        Some(_) if s.oauth.keys.is_empty() => true,
        Some(t) => {
            let now = s.clock.now();
            s.oauth
                .issued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|i| i.access_token == *t && i.expires_at > now)
        }
    };
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "missing token"}})),
        )
            .into_response();
    }
    if s.failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": 503, "status": "UNAVAILABLE", "message": "sandbox outage"}})),
        )
            .into_response();
    }
    if body["message"]["token"].as_str().is_none_or(str::is_empty) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "message.token is required"}})),
        )
            .into_response();
    }
    let id = s.record(json!({"project": project, "message": body["message"], "bearer": bearer}));
    Json(json!({"name": format!("projects/{project}/messages/{id}")})).into_response()
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    assertion: String,
}

fn token_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Google's token endpoint for a service account: verifies the assertion's
/// RS256 signature against the trusted keys, its audience, scope and times
/// (on the sandbox's clock), and issues a bearer token for an hour.
async fn push_token(State(s): State<Sandbox>, Form(f): Form<TokenForm>) -> Response {
    if f.grant_type != crate::fcm::GRANT_TYPE {
        return token_error("unsupported_grant_type", "Invalid grant_type.");
    }
    if s.oauth.keys.is_empty() {
        return token_error("invalid_grant", "No key is registered with the sandbox.");
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // Times are checked below on the sandbox's clock, which tests move.
    validation.validate_exp = false;
    validation.required_spec_claims = ["iss", "aud", "exp"]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    validation.set_audience(&[s.oauth.audience.as_str()]);
    let claims = s.oauth.keys.iter().find_map(|key| {
        jsonwebtoken::decode::<crate::fcm::Claims>(&f.assertion, key, &validation).ok()
    });
    let Some(token) = claims else {
        return token_error("invalid_grant", "Invalid JWT Signature.");
    };
    let c = token.claims;
    let now = s.clock.now().timestamp();
    if c.exp <= now || c.iat > now + 60 || c.exp - c.iat > 3600 {
        return token_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    if !c.scope.split(' ').any(|sc| sc == crate::fcm::SCOPE) {
        return token_error(
            "invalid_scope",
            "The assertion does not ask for firebase.messaging.",
        );
    }
    let now = s.clock.now();
    let issued = Issued {
        access_token: format!("ya29.sbx-{}", uuid::Uuid::now_v7().simple()),
        client_email: c.iss,
        issued_at: now,
        expires_at: now + chrono::Duration::seconds(TOKEN_SECS),
    };
    s.oauth
        .issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(issued.clone());
    Json(json!({"access_token": issued.access_token, "expires_in": TOKEN_SECS, "token_type": "Bearer"}))
        .into_response()
}

async fn tokens(State(s): State<Sandbox>) -> Json<Vec<Issued>> {
    Json(
        s.oauth
            .issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    )
}

async fn messages(State(s): State<Sandbox>) -> Json<Vec<Recorded>> {
    Json(s.messages.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Outage {
    failures: u32,
}

async fn outage(State(s): State<Sandbox>, Json(o): Json<Outage>) -> StatusCode {
    *s.failures.lock().unwrap_or_else(|e| e.into_inner()) = o.failures.min(10_000);
    StatusCode::NO_CONTENT
}

fn sms(prefix: &str, clock: SharedClock) -> Router {
    Router::new()
        .route(&format!("{prefix}/version1/messaging"), post(sms_send))
        .route(&format!("{prefix}/messages"), get(messages))
        .route(&format!("{prefix}/outage"), post(outage))
        .with_state(Sandbox::new(clock))
}

/// The RSA public keys (PEM, one or more in a file) the push sandbox trusts.
fn trusted_keys(context: &SandboxContext) -> Vec<jsonwebtoken::DecodingKey> {
    let Some(path) = context
        .settings
        .extra
        .get("push_sandbox_public_key_file")
        .and_then(|v| v.as_str())
        .filter(|p| !p.trim().is_empty())
    else {
        return Vec::new();
    };
    let text = match std::fs::read_to_string(path.trim()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("MILIKI_PUSH_SANDBOX_PUBLIC_KEY_FILE {path:?} cannot be read: {e}");
            return Vec::new();
        }
    };
    pem_blocks(&text)
        .into_iter()
        .filter_map(
            |pem| match jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::error!(
                        "MILIKI_PUSH_SANDBOX_PUBLIC_KEY_FILE: a key does not parse: {e}"
                    );
                    None
                }
            },
        )
        .collect()
}

/// Each `-----BEGIN …----- … -----END …-----` block of a PEM file.
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        let Some(end) = rest[start..].find("-----END").map(|i| start + i + 8) else {
            break;
        };
        let close = rest[end..]
            .find("-----")
            .map(|i| end + i + 5)
            .unwrap_or(rest.len());
        out.push(&rest[start..close]);
        rest = &rest[close..];
    }
    out
}

/// The support service's sandboxes, at their full paths.
pub fn router(context: &SandboxContext) -> Router {
    let mut push_state = Sandbox::new(context.clock.clone());
    push_state.oauth = OAuth {
        keys: Arc::new(trusted_keys(context)),
        audience: format!(
            "{}/sandbox/push/token",
            context.base_url.trim_end_matches('/')
        ),
        issued: Arc::default(),
    };
    let push = Router::new()
        .route(
            "/sandbox/push/v1/projects/{project}/messages:send",
            post(push_send),
        )
        .route("/sandbox/push/token", post(push_token))
        .route("/sandbox/push/tokens", get(tokens))
        .route("/sandbox/push/messages", get(messages))
        .route("/sandbox/push/outage", post(outage))
        .with_state(push_state);
    sms("/sandbox/sms", context.clock.clone())
        .merge(sms("/sandbox/sms-fallback", context.clock.clone()))
        .merge(push)
}

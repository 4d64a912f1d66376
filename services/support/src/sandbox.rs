//! In-process stand-ins for the SMS provider (Africa's Talking's messaging API)
//! and for push (FCM HTTP v1), recording what they were sent, so the platform
//! runs and is tested end to end without accounts. Each can be told to fail
//! its next requests, to rehearse retries and failover.
//!
//! - `POST /sandbox/sms/version1/messaging` (form: `username`, `to`, `message`, `from`; header `apiKey`)
//! - `POST /sandbox/sms-fallback/version1/messaging`: a second, independent provider
//! - `POST /sandbox/push/v1/projects/{project}/messages:send` (bearer token)
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

#[derive(Clone)]
struct Sandbox {
    clock: SharedClock,
    messages: Arc<Mutex<Vec<Recorded>>>,
    failures: Arc<Mutex<u32>>,
}

impl Sandbox {
    fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            messages: Arc::default(),
            failures: Arc::default(),
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
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
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
    let id = s.record(json!({"project": project, "message": body["message"]}));
    Json(json!({"name": format!("projects/{project}/messages/{id}")})).into_response()
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

/// The support service's sandboxes, at their full paths.
pub fn router(context: &SandboxContext) -> Router {
    let push = Router::new()
        .route(
            "/sandbox/push/v1/projects/{project}/messages:send",
            post(push_send),
        )
        .route("/sandbox/push/messages", get(messages))
        .route("/sandbox/push/outage", post(outage))
        .with_state(Sandbox::new(context.clock.clone()));
    sms("/sandbox/sms", context.clock.clone())
        .merge(sms("/sandbox/sms-fallback", context.clock.clone()))
        .merge(push)
}

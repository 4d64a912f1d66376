//! HTTP plumbing shared by the gateway and every service: extractors that
//! answer with problem documents, the common tower layers, health, metrics,
//! and serving with graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::problem::{ApiError, FieldError};

/// The request-id header set by the gateway (or the first service to see a request).
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `201 Created` with `body` as JSON and `Location: location` (a path of
/// this API; a location that is not a valid header value is left out).
pub fn created<T: Serialize>(location: &str, body: T) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A JSON body extractor and response whose rejections are problem documents:
/// 415 without a JSON content type, 413 past the body limit, 400 for broken
/// JSON and 422, naming the field, for JSON of the wrong shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("the request body is larger than allowed".into())
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn has_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Parses a JSON document into `T`, naming the offending field on failure.
/// Text may not carry control characters other than tab and line breaks, in
/// any field: they corrupt logs, terminals and exports, and PostgreSQL
/// refuses NUL outright.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if may_hold_control_characters(bytes) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Some(field) = control_character_field(&value, "") {
                return Err(ApiError::field(
                    field,
                    "must not contain control characters",
                ));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::MalformedJson(inner.to_string());
        }
        let message = inner.to_string();
        // serde reports a missing field against the enclosing object; name the field itself.
        let field = match message.split('`').nth(1) {
            Some(missing) if message.starts_with("missing field") => {
                if path == "." {
                    missing.to_owned()
                } else {
                    format!("{path}.{missing}")
                }
            }
            _ if path == "." => "body".to_owned(),
            _ => path,
        };
        ApiError::Validation(vec![FieldError::new(field, strip_position(&message))])
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// JSON cannot carry raw C0 controls inside strings, so they can only come as
/// `\u00XX` escapes, a raw DEL, or a raw C1 control (UTF-8 `C2 80`–`C2 9F`):
/// a cheap scan keeps the full walk off the common path.
fn may_hold_control_characters(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\\u00")
        || bytes.contains(&0x7f)
        || bytes
            .windows(2)
            .any(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1]))
}

fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// The path of the first string (or key) in `value` with a forbidden control character.
fn control_character_field(value: &serde_json::Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        serde_json::Value::String(s) => s.chars().any(is_forbidden_control).then(|| {
            if path.is_empty() {
                "body".to_owned()
            } else {
                path.to_owned()
            }
        }),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            control_character_field(
                item,
                &format!("{}[{i}]", if path.is_empty() { "body" } else { path }),
            )
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.chars().any(is_forbidden_control) {
                return Some(join(&key.escape_default().to_string()));
            }
            control_character_field(item, &join(key))
        }),
        _ => None,
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Path parameters; a segment that does not parse is a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters. A parameter that does not parse, or carries control
/// characters, is a 422 problem naming it (one rule for every list's `limit`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Parses a query string into `T`, naming the offending parameter on failure.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name.chars().chain(value.chars()).any(char::is_control) {
            return Err(ApiError::field(
                name.into_owned(),
                "must not contain control characters",
            ));
        }
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let field = match message.split('`').nth(1) {
            Some(missing) if message.starts_with("missing field") => missing.to_owned(),
            _ if path == "." => "query".to_owned(),
            _ => path,
        };
        ApiError::field(field, message)
    })
}

/// The client's address. Behind the gateway it is the first `X-Forwarded-For`
/// entry, which the gateway overwrites with the peer it saw, so a client cannot
/// choose it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(
            forwarded.or(peer).unwrap_or(IpAddr::from([127, 0, 0, 1])),
        ))
    }
}

/// UUIDv7 request ids: sortable in logs.
#[derive(Clone, Copy, Default)]
pub struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&crate::id::new_id().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// The layers every HTTP surface wears, outermost first: request ids, a trace
/// span, panics turned into problems, metrics and a deadline.
pub fn with_common_layers(router: Router, surface: &'static str, timeout: Duration) -> Router {
    router
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            deadline(timeout, req, next)
        }))
        .layer(middleware::from_fn(errors_as_problems))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            track_metrics(surface, req, next)
        }))
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let request_id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let span = tracing::info_span!(
                    "http",
                    method = %req.method(),
                    uri = %req.uri().path(),
                    request_id,
                    otel.name = tracing::field::Empty,
                    otel.kind = tracing::field::Empty,
                );
                if crate::telemetry::tracing_enabled() {
                    span.record("otel.kind", "server");
                    span.record(
                        "otel.name",
                        format!("{} {}", req.method(), req.uri().path()),
                    );
                    // Continue the caller's trace (the gateway's, or a client's).
                    crate::telemetry::continue_from_headers(&span, req.headers());
                }
                span
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID.clone(),
            MakeRequestUuidV7,
        ))
}

/// Errors produced below the handlers (axum's 405 with an empty body, the
/// body limit's plain-text 413, a 404 for a bad path) become problem
/// documents like every other error.
async fn errors_as_problems(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // Problems, and JSON bodies that say more (readiness), pass as they are.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/")
                && v.split(';').next().is_some_and(|m| m.ends_with("json"))
        });
    if is_json {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut rewritten =
        crate::problem::problem_response(&crate::problem::Problem::for_status(status));
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

async fn deadline(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("the request took too long".into()).into_response(),
    }
}

/// Requests slower than this are logged with their full URI.
const SLOW_REQUEST: Duration = Duration::from_millis(500);

async fn track_metrics(surface: &'static str, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let uri = req.uri().clone();
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    if elapsed > SLOW_REQUEST {
        tracing::warn!(%uri, ms = elapsed.as_millis() as u64, status = response.status().as_u16(), "slow request");
    } else {
        tracing::debug!(%uri, us = elapsed.as_micros() as u64, status = response.status().as_u16(), "request");
    }
    let labels = [
        ("surface", surface.to_owned()),
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    response
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                    ],
                )
                .map(|b| b.build_recorder());
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    // Another recorder may already be installed (a test harness); then
                    // this handle simply renders nothing of its own.
                    let _ = metrics::set_global_recorder(recorder);
                    handle
                }
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format.
pub fn metrics_router() -> Router {
    // Install the recorder now, so requests before the first scrape are counted.
    let handle = metrics_handle();
    Router::new().route(
        "/metrics",
        get(move || async move {
            handle.run_upkeep();
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
        }),
    )
}

/// Something `/health/ready` must find working: a database, a bus, an upstream.
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> String;
    async fn check(&self) -> Result<(), String>;
    /// Whether requests cannot be served without it. A non-critical failure
    /// (Redis, the broker while the outbox holds events, an upstream behind
    /// the gateway) is reported as degraded and keeps the process ready, so an
    /// orchestrator does not pull healthy replicas.
    fn critical(&self) -> bool {
        true
    }
}

/// `/health/live` (the process answers) and `/health/ready` (every check passes).
pub fn health_router(checks: Vec<Arc<dyn ReadinessCheck>>) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route(
            "/health/live",
            get(|| async { axum::Json(serde_json::json!({ "status": "live" })) }),
        )
        .route(
            "/health/ready",
            get(move || {
                let checks = checks.clone();
                async move {
                    let results = futures::future::join_all(checks.iter().map(|c| async move {
                        let outcome = tokio::time::timeout(Duration::from_secs(2), c.check()).await;
                        let outcome = outcome.unwrap_or_else(|_| Err("timed out".into()));
                        (c.name(), c.critical(), outcome)
                    }))
                    .await;
                    let ready = results
                        .iter()
                        .all(|(_, critical, r)| r.is_ok() || !critical);
                    let degraded = results.iter().any(|(_, _, r)| r.is_err());
                    let detail: serde_json::Map<String, serde_json::Value> = results
                        .into_iter()
                        .map(|(name, critical, r)| {
                            let v = match r {
                                Ok(()) => serde_json::json!("ok"),
                                Err(e) if critical => serde_json::json!(e),
                                Err(e) => serde_json::json!(format!("degraded: {e}")),
                            };
                            (name, v)
                        })
                        .collect();
                    let status = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    let word = match (ready, degraded) {
                        (false, _) => "not_ready",
                        (true, true) => "degraded",
                        (true, false) => "ready",
                    };
                    (
                        status,
                        axum::Json(serde_json::json!({
                            "status": word,
                            "checks": detail,
                        })),
                    )
                }
            }),
        )
}

/// Serves `app` until `shutdown` is cancelled, then lets in-flight requests
/// finish, within the default [`crate::server::ServeLimits`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    crate::server::serve(listener, app, shutdown, Default::default()).await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// The answer for routes nobody serves.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

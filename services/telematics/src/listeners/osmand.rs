//! The OsmAnd HTTP listener (Traccar Client, OsmAnd, many phone apps). A
//! device identifies itself with its device token as `id` (what Traccar
//! Client calls the device identifier), or with its IMEI as `id` plus
//! `token`. Answers 200 once the position is stored; a client retries
//! anything else.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ingest::IngestError;
use crate::protocol::osmand::{self, Report};
use crate::state::AppState;
use crate::{store, token};

pub async fn run(state: AppState, listener: TcpListener, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/", any(report))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(tower::limit::ConcurrencyLimitLayer::new(1024))
        .with_state(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "OsmAnd listener stopped");
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn report(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.deps.clock.now();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let parsed: Result<Report, String> = if is_json && !body.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&body)
            .map_err(|_| "body: is not JSON".to_owned())
            .and_then(|v| osmand::from_json(&v, now).map_err(|e| e.to_string()))
    } else {
        // Parameters in the query string, or a form body, or both.
        let mut params: Vec<(String, String)> = Vec::new();
        for raw in [
            query.as_deref().unwrap_or(""),
            std::str::from_utf8(&body).unwrap_or(""),
        ] {
            match serde_urlencoded::from_str::<Vec<(String, String)>>(raw) {
                Ok(p) => params.extend(p),
                Err(_) => return text(StatusCode::BAD_REQUEST, "query: is not a form".into()),
            }
        }
        osmand::from_query(&params, now).map_err(|e| e.to_string())
    };
    let report = match parsed {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let device = match &report.token {
        Some(t) => store::active_device_by_token(&state.deps.db, &token::hash(t))
            .await
            .map(|d| d.filter(|d| d.imei == report.id)),
        None => store::active_device_by_token(&state.deps.db, &token::hash(&report.id)).await,
    };
    let device = match device {
        Ok(Some(d)) => d,
        Ok(None) => {
            state.stats.unknown_device();
            return text(StatusCode::UNAUTHORIZED, "unknown device or token".into());
        }
        Err(e) => {
            tracing::warn!(error = %e, "OsmAnd device lookup failed");
            return text(StatusCode::SERVICE_UNAVAILABLE, "try again".into());
        }
    };
    match state.ingest.submit(device.id, vec![report.position]).await {
        Ok(_) => text(StatusCode::OK, String::new()),
        Err(IngestError::UnknownDevice) => {
            text(StatusCode::UNAUTHORIZED, "unknown device or token".into())
        }
        Err(IngestError::Unavailable) => text(StatusCode::SERVICE_UNAVAILABLE, "try again".into()),
    }
}

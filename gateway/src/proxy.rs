//! Forwarding to a service in another process. A service that cannot be
//! reached answers 503 as a problem; one that is too slow, 504.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use miliki_platform::ApiError;

/// A service the gateway forwards to.
#[derive(Clone)]
pub struct Target {
    service: &'static str,
    base: Arc<str>,
    client: reqwest::Client,
}

impl Target {
    pub fn new(service: &'static str, base: &str, client: reqwest::Client) -> Self {
        Self {
            service,
            base: Arc::from(base.trim_end_matches('/')),
            client,
        }
    }
}

pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}

/// Connection-level headers are not forwarded (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !is_hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

pub async fn forward(State(target): State<Target>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path}", target.base);
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    let stream = body.into_data_stream();
    let upstream = target
        .client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match upstream {
        Ok(resp) => {
            let mut builder = Response::builder().status(resp.status());
            if let Some(h) = builder.headers_mut() {
                copy_headers(resp.headers(), h);
            }
            let body = Body::from_stream(resp.bytes_stream().map_err(std::io::Error::other));
            builder
                .body(body)
                .unwrap_or_else(|e| ApiError::internal(e).into_response())
        }
        Err(e) if e.is_timeout() => ApiError::GatewayTimeout.into_response(),
        Err(e) => {
            tracing::warn!(service = target.service, error = %e, "upstream unavailable");
            ApiError::Unavailable(format!("the {} service is unavailable", target.service))
                .into_response()
        }
    }
}

/// Whether a service behind the gateway answers its own readiness probe.
/// Reported, never fatal: the gateway serves every other area meanwhile.
pub struct UpstreamReady {
    service: &'static str,
    probe: Result<(String, reqwest::Client), String>,
}

impl UpstreamReady {
    pub fn new(service: &'static str, base: &str, client: reqwest::Client) -> Self {
        Self {
            service,
            probe: Ok((
                format!("{}/health/ready", base.trim_end_matches('/')),
                client,
            )),
        }
    }

    /// A service that could not be started or has no URL.
    pub fn unavailable(service: &'static str, reason: &str) -> Self {
        Self {
            service,
            probe: Err(reason.to_owned()),
        }
    }
}

#[async_trait::async_trait]
impl miliki_platform::http::ReadinessCheck for UpstreamReady {
    fn name(&self) -> String {
        format!("upstream_{}", self.service)
    }

    async fn check(&self) -> Result<(), String> {
        let (url, client) = self.probe.as_ref().map_err(Clone::clone)?;
        let response = client
            .get(url)
            .timeout(Duration::from_millis(1500))
            .send()
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        match body.get("status").and_then(|s| s.as_str()) {
            Some("ready") if status.is_success() => Ok(()),
            Some(word) => Err(format!("{word}: {}", body["checks"])),
            None => Err(format!("answered {status}")),
        }
    }

    fn critical(&self) -> bool {
        false
    }
}

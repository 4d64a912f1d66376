//! Forwarding to a service in other processes. A service may have several
//! base URLs (replicas): each request goes to the healthy one with the fewest
//! requests in flight (ties in turn). A replica that cannot be reached, times
//! out or answers 502/504 is skipped for a cool-down and then tried again;
//! a GET or HEAD that could not connect is retried once on another replica
//! (nothing reached the first, so nothing can happen twice). When every
//! replica is cooling down, the one due back first is tried. A service that
//! cannot be reached answers 503 as a problem; one that is too slow, 504.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use miliki_platform::ApiError;

/// The replicas of one service and what the gateway knows of their health.
pub struct Pool {
    service: &'static str,
    members: Vec<Member>,
    next: AtomicUsize,
    cooldown: Duration,
    epoch: Instant,
}

struct Member {
    base: Arc<str>,
    in_flight: AtomicUsize,
    /// Milliseconds since the pool's epoch until which this replica is
    /// skipped; 0 when healthy.
    down_until: AtomicU64,
}

/// Parses `http://a:8082,http://b:8082` into base URLs.
pub fn base_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(|u| u.trim().trim_end_matches('/'))
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Pool {
    /// `bases` is one base URL or a comma-separated list of them.
    pub fn new(service: &'static str, bases: &str, cooldown: Duration) -> Self {
        Self {
            service,
            members: base_urls(bases)
                .into_iter()
                .map(|base| Member {
                    base: Arc::from(base.as_str()),
                    in_flight: AtomicUsize::new(0),
                    down_until: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            cooldown,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The replica to try next, never `exclude`.
    fn pick(&self, exclude: Option<usize>) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let candidates = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| Some(i) != exclude);
        let healthy = candidates
            .clone()
            .filter(|&i| self.members[i].down_until.load(Ordering::Relaxed) <= now)
            .min_by_key(|&i| self.members[i].in_flight.load(Ordering::Relaxed));
        healthy.or_else(|| {
            candidates.min_by_key(|&i| self.members[i].down_until.load(Ordering::Relaxed))
        })
    }

    fn mark_down(&self, i: usize, why: &str) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX));
        let before = self.members[i]
            .down_until
            .swap(until.max(1), Ordering::Relaxed);
        if before == 0 {
            tracing::warn!(
                service = self.service,
                upstream = %self.members[i].base,
                cooldown_ms = self.cooldown.as_millis() as u64,
                why,
                "upstream skipped for a while"
            );
        }
    }

    fn mark_up(&self, i: usize) {
        if self.members[i].down_until.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(service = self.service, upstream = %self.members[i].base, "upstream back");
        }
    }

    /// The replicas' base URLs, in configured order.
    pub fn bases(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| &*m.base)
    }
}

/// Counts a request in flight on a replica until dropped.
struct InFlight(Arc<Pool>, usize);

impl InFlight {
    fn new(pool: &Arc<Pool>, i: usize) -> Self {
        pool.members[i].in_flight.fetch_add(1, Ordering::Relaxed);
        Self(pool.clone(), i)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.members[self.1]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A service the gateway forwards to.
#[derive(Clone)]
pub struct Target {
    pool: Arc<Pool>,
    client: reqwest::Client,
}

impl Target {
    pub fn new(pool: Arc<Pool>, client: reqwest::Client) -> Self {
        Self { pool, client }
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

/// What a request's body is, for sending once or, buffered, twice.
enum Payload {
    Stream(Option<Body>),
    Buffered(axum::body::Bytes),
}

impl Payload {
    fn take(&mut self) -> reqwest::Body {
        match self {
            Payload::Stream(body) => match body.take() {
                Some(body) => reqwest::Body::wrap_stream(body.into_data_stream()),
                None => reqwest::Body::from(Vec::new()),
            },
            Payload::Buffered(bytes) => reqwest::Body::from(bytes.clone()),
        }
    }
}

pub async fn forward(State(target): State<Target>, req: Request) -> Response {
    let pool = &target.pool;
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    // The gateway's span is the parent of the service's.
    miliki_platform::telemetry::inject_headers(&mut headers);
    let idempotent = matches!(parts.method, Method::GET | Method::HEAD);
    let mut payload = if idempotent {
        // Bodies of GET and HEAD are empty in practice; kept to send again.
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => Payload::Buffered(bytes),
            Err(e) => {
                return ApiError::BadRequest(format!("reading the body: {e}")).into_response()
            }
        }
    } else {
        Payload::Stream(Some(body))
    };
    let attempts = if idempotent { 2 } else { 1 };
    let mut tried = None;
    let mut failure = None;
    for _ in 0..attempts {
        let Some(i) = pool.pick(tried) else { break };
        tried = Some(i);
        let in_flight = InFlight::new(pool, i);
        let url = format!("{}{path}", pool.members[i].base);
        let sent = target
            .client
            .request(parts.method.clone(), &url)
            .headers(headers.clone())
            .body(payload.take())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                // A proxy in front of the replica saying it cannot reach it.
                if matches!(
                    resp.status(),
                    StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                ) {
                    pool.mark_down(i, "answered 502/504");
                } else {
                    pool.mark_up(i);
                }
                return relay(resp, in_flight);
            }
            Err(e) => {
                let connect = e.is_connect();
                pool.mark_down(
                    i,
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "unreachable"
                    },
                );
                tracing::warn!(service = pool.service, upstream = %pool.members[i].base, error = %e, "upstream request failed");
                failure = Some(e);
                // Only a request that never reached the replica is sent again.
                if !connect {
                    break;
                }
            }
        }
    }
    match failure {
        Some(e) if e.is_timeout() => ApiError::GatewayTimeout.into_response(),
        _ => ApiError::Unavailable(format!("the {} service is unavailable", pool.service))
            .into_response(),
    }
}

/// The replica's answer as the gateway's; the replica counts as busy until
/// its body has been passed on.
fn relay(resp: reqwest::Response, in_flight: InFlight) -> Response {
    let mut builder = Response::builder().status(resp.status());
    if let Some(h) = builder.headers_mut() {
        copy_headers(resp.headers(), h);
    }
    let stream = resp
        .bytes_stream()
        .map_err(std::io::Error::other)
        .inspect(move |_| {
            let _ = &in_flight;
        });
    builder
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| ApiError::internal(e).into_response())
}

/// Whether a service behind the gateway answers its own readiness probe
/// (one ready replica is enough). Reported, never fatal: the gateway serves
/// every other area meanwhile.
pub struct UpstreamReady {
    service: &'static str,
    probe: Result<(Vec<String>, reqwest::Client), String>,
}

impl UpstreamReady {
    /// `base` is one base URL or a comma-separated list of replicas.
    pub fn new(service: &'static str, base: &str, client: reqwest::Client) -> Self {
        Self {
            service,
            probe: Ok((
                base_urls(base)
                    .into_iter()
                    .map(|b| format!("{b}/health/ready"))
                    .collect(),
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

async fn probe(client: &reqwest::Client, url: &str) -> Result<(), String> {
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

#[async_trait::async_trait]
impl miliki_platform::http::ReadinessCheck for UpstreamReady {
    fn name(&self) -> String {
        format!("upstream_{}", self.service)
    }

    async fn check(&self) -> Result<(), String> {
        let (urls, client) = self.probe.as_ref().map_err(Clone::clone)?;
        let answers = futures::future::join_all(urls.iter().map(|u| probe(client, u))).await;
        if answers.iter().any(Result::is_ok) {
            return Ok(());
        }
        Err(answers
            .into_iter()
            .filter_map(Result::err)
            .collect::<Vec<_>>()
            .join("; "))
    }

    fn critical(&self) -> bool {
        false
    }
}

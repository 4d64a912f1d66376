//! The single public entry point. It routes `/api/v1/<area>/...` to the
//! service that owns the area — a router in this process (embedded mode) or a
//! base URL (distributed mode) — and in front of every route it authenticates
//! bearer tokens, counts requests per client, stamps request ids, sets
//! `X-Forwarded-For`, and answers CORS. It serves one merged OpenAPI document.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use miliki_platform::auth::{bearer_token, Tokens};
use miliki_platform::config::Settings;
use miliki_platform::http::{
    health_router, not_found, with_common_layers, ClientIp, ReadinessCheck,
};
use miliki_platform::ratelimit::RateLimiter;
use miliki_platform::ApiError;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_swagger_ui::SwaggerUi;

pub mod proxy;

/// Where a service's requests go.
pub enum Upstream {
    /// Its router, in this process.
    InProcess(Router),
    /// Its base URL, e.g. `http://10.0.0.5:8081`, or several replicas'
    /// separated by commas (`http://a:8081,http://b:8081`), balanced here.
    Remote(String),
    /// It could not start; its routes answer 503 with this reason.
    Unavailable(String),
}

/// One routed service.
pub struct Route {
    pub service: &'static str,
    pub areas: &'static [&'static str],
    pub upstream: Upstream,
    pub openapi: OpenApi,
}

/// What the gateway needs.
pub struct Gateway {
    pub settings: Arc<Settings>,
    pub tokens: Arc<Tokens>,
    pub limiter: Arc<dyn RateLimiter>,
    pub routes: Vec<Route>,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
}

#[derive(Clone)]
struct Guard {
    tokens: Arc<Tokens>,
    limiter: Arc<dyn RateLimiter>,
    per_minute: u64,
}

/// Headers a client may not set itself: the gateway owns them.
static IDENTITY_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-miliki-user-id"),
    HeaderName::from_static("x-miliki-role"),
];

impl Gateway {
    /// The whole public surface.
    pub fn router(self) -> Router {
        let settings = self.settings.clone();
        let client = proxy::client(Duration::from_secs(settings.request_timeout_secs));
        let mut api = Router::new();
        let mut docs = base_document();
        let mut readiness = self.readiness;
        for route in self.routes {
            docs.merge(route.openapi);
            match route.upstream {
                Upstream::InProcess(router) => api = api.merge(router),
                Upstream::Remote(base) => {
                    readiness.push(Arc::new(proxy::UpstreamReady::new(
                        route.service,
                        &base,
                        client.clone(),
                    )));
                    let pool = Arc::new(proxy::Pool::new(
                        route.service,
                        &base,
                        settings.upstream_cooldown(),
                    ));
                    let target = proxy::Target::new(pool, client.clone());
                    for area in route.areas {
                        let handler = any(proxy::forward).with_state(target.clone());
                        api = api
                            .route(&format!("/api/v1/{area}"), handler.clone())
                            .route(&format!("/api/v1/{area}/{{*rest}}"), handler);
                    }
                }
                Upstream::Unavailable(reason) => {
                    let reason = Arc::new(format!(
                        "the {} service is unavailable: {reason}",
                        route.service
                    ));
                    readiness.push(Arc::new(proxy::UpstreamReady::unavailable(
                        route.service,
                        &reason,
                    )));
                    for area in route.areas {
                        let reason = reason.clone();
                        let handler = any(move || {
                            let reason = reason.clone();
                            async move { ApiError::Unavailable(reason.to_string()) }
                        });
                        api = api
                            .route(&format!("/api/v1/{area}"), handler.clone())
                            .route(&format!("/api/v1/{area}/{{*rest}}"), handler);
                    }
                }
            }
        }
        complete_error_responses(&mut docs);
        let guard = Guard {
            tokens: self.tokens,
            limiter: self.limiter,
            per_minute: settings.rate_limit_per_minute,
        };
        // The largest body any route accepts (KYC uploads); routes cap themselves tighter.
        let body_cap = settings
            .max_body_bytes
            .max(settings.max_upload_bytes * 3 + 64 * 1024);
        let api = api
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(guard, guard_request))
            .layer(RequestBodyLimitLayer::new(body_cap));
        let app = Router::new()
            .merge(api)
            .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", docs))
            .merge(health_router(readiness));
        with_common_layers(
            app,
            "gateway",
            Duration::from_secs(settings.request_timeout_secs),
        )
        .layer(cors(&settings.cors_origin_list()))
    }
}

/// Adds to every operation the error answers the shared layers give it
/// whether or not its handler mentions them: 401 where a token is required,
/// 400 and 422 where parameters can be wrong, 413, 415 and 422 where a body
/// is taken, and 429 everywhere (the per-client rate limit).
fn complete_error_responses(doc: &mut OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    miliki_platform::problem::PROBLEM_CONTENT_TYPE,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let shared_params = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let protected = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_params = shared_params || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let has_body = op.request_body.is_some();
            let responses = &mut op.responses.responses;
            let mut put = |code: &str, description: &str| {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| problem(description));
            };
            if protected {
                put("401", "Missing, invalid, expired or revoked token");
            }
            if has_params || has_body {
                put("400", "Malformed request");
                put("422", "Invalid fields, each named");
            }
            if has_body {
                put("413", "Body larger than allowed");
                put("415", "Unsupported content type");
            }
            put("429", "Too many requests; see Retry-After");
        }
    }
}

fn base_document() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Miliki API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Rent-to-own mobility finance. Errors are RFC 9457 problem documents; lists use cursor pagination.",
                ))
                .build(),
        )
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    doc
}

/// Cross-origin calls only from the configured origins; with none
/// configured, no CORS headers at all, so browsers refuse other sites.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(600))
}

/// How many times the per-client limit provider callbacks may reach.
const CALLBACK_ALLOWANCE: u64 = 100;

/// Rate limit per client, check any bearer token, and pass identity on.
async fn guard_request(
    State(guard): State<Guard>,
    ClientIp(ip): ClientIp,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = peer_ip(&req).unwrap_or(ip);
    // A payment provider calls back from a few addresses at its own pace and
    // never retries (Daraja, MoMo): its callbacks get a bucket of their own,
    // far larger. Without the secret path segment they are cheap 404s.
    let (bucket, limit) = if req.uri().path().starts_with("/api/v1/callbacks/") {
        (
            "gateway-callbacks",
            guard.per_minute.saturating_mul(CALLBACK_ALLOWANCE),
        )
    } else {
        ("gateway", guard.per_minute)
    };
    let counted = if guard.per_minute == 0 {
        Ok(None)
    } else {
        guard
            .limiter
            .hit(&format!("{bucket}:{peer}"), Duration::from_secs(60))
            .await
            .map(Some)
    };
    match counted {
        Ok(Some(window)) if window.count > limit => {
            return ApiError::TooManyRequests {
                retry_after_secs: window.resets_in_secs,
            }
            .into_response();
        }
        Ok(_) => {}
        // A limiter outage must not take the API down with it.
        Err(e) => tracing::warn!(error = %e, "rate limiter unavailable; request allowed"),
    }
    let headers = req.headers_mut();
    for name in &IDENTITY_HEADERS {
        headers.remove(name);
    }
    if let Ok(value) = HeaderValue::from_str(&peer.to_string()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    if let Some(token) = bearer_token(req.headers()) {
        match guard.tokens.verify(token) {
            Ok(claims) => {
                let headers = req.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&claims.sub.to_string()) {
                    headers.insert(IDENTITY_HEADERS[0].clone(), v);
                }
                headers.insert(
                    IDENTITY_HEADERS[1].clone(),
                    HeaderValue::from_static(claims.role.as_str()),
                );
            }
            Err(e) => return e.into_response(),
        }
    }
    next.run(req).await
}

/// The address of the TCP peer: the gateway is the edge, so it trusts no
/// forwarding header a client sent.
fn peer_ip(req: &Request<Body>) -> Option<IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|ci| ci.0.ip())
}

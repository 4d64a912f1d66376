use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn request_ids_cors_and_unknown_routes() {
    let app = TestApp::spawn_with(|s| s.cors_origins = "https://shop.example.com".into()).await;
    let resp = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!resp.headers()["x-request-id"].is_empty());
    let resp = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-123");

    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/login"))
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );

    let (status, body) = app.get("/api/v1/nothing-here", None).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    let resp = app
        .client
        .get(app.url("/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    app.stop().await;
}

#[tokio::test]
async fn the_gateway_refuses_bad_tokens_before_any_service_sees_them() {
    let app = TestApp::spawn().await;
    // Even on a public route, a bad token is an error rather than silently ignored.
    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .bearer_auth("not.a.token")
        .json(&json!({"login": "x", "password": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn openapi_docs_health_and_metrics() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/v1/auth/login",
        "/api/v1/users/{id}",
        "/api/v1/kyc/submissions",
        "/api/v1/kyc/submissions/{id}/decision",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let resp = app.client.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("swagger"));

    let (status, ready) = app.get("/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["users_database"], "ok");
    assert_eq!(ready["checks"]["event_bus"], "ok");

    app.post(
        "/api/v1/auth/login",
        None,
        json!({"login": "0700999888", "password": "wrong-password-x"}),
    )
    .await;
    // Metrics live on the operations listener only.
    let ops = app.runtime.as_ref().unwrap().ops_addr;
    let metrics = app
        .client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    let (status, body) = app.get("/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn clients_over_the_request_rate_get_429() {
    let app = TestApp::spawn_with(|s| s.rate_limit_per_minute = 5).await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            app.client
                .get(app.url("/api/v1/users/me"))
                .send()
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

#[tokio::test]
async fn a_service_that_cannot_start_answers_503_and_the_rest_keeps_working() {
    let app = TestApp::spawn_with(|s| {
        // A database file that cannot be created.
        s.extra.insert(
            "users_database_url".into(),
            "sqlite:///proc/miliki-cannot-write-here/users.db".into(),
        );
    })
    .await;
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "0712345678", "password": "whatever-it-is"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "service-unavailable",
    );
    assert!(body["detail"].as_str().unwrap().contains("users"), "{body}");
    let (status, ready) = app.get("/health/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready["checks"]["users"]
            .as_str()
            .is_some_and(|s| s.contains("not running")),
        "{ready}"
    );
    let (status, _) = app.get("/health/live", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

/// A stand-in replica of the users service: a real HTTP server that says
/// which replica answered and counts what it served.
struct Replica {
    name: &'static str,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Replica {
    async fn start(name: &'static str, port: u16) -> Self {
        Self::start_counting(name, port, Default::default()).await
    }

    async fn start_counting(
        name: &'static str,
        port: u16,
        served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        use axum::routing::get;
        let counter = served.clone();
        let router = axum::Router::new()
            .route(
                "/api/v1/users/me",
                get(move || {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        axum::Json(json!({ "replica": name }))
                    }
                }),
            )
            .route(
                "/health/ready",
                get(|| async { axum::Json(json!({"status": "ready", "checks": {}})) }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind replica");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            name,
            served,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn served(&self) -> usize {
        self.served.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops listening and closes its connections, like a killed process.
    async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `n` reads through the gateway; returns which replica answered each.
async fn reads(client: &reqwest::Client, base: &str, n: usize) -> Vec<String> {
    let mut answered = Vec::new();
    for _ in 0..n {
        let resp = client
            .get(format!("{base}/api/v1/users/me"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "{body}");
        answered.push(body["replica"].as_str().unwrap_or_default().to_owned());
    }
    answered
}

#[tokio::test]
async fn the_gateway_balances_replicas_and_routes_around_a_dead_one() {
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = Replica::start("a", port_a).await;
    let b = Replica::start("b", port_b).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path()).await;
    settings.extra.insert(
        "users_url".into(),
        format!("http://127.0.0.1:{port_a}, http://127.0.0.1:{port_b}/").into(),
    );
    settings
        .extra
        .insert("upstream_cooldown_secs".into(), json!(1));
    let clock = std::sync::Arc::new(miliki_platform::clock::SystemClock);
    let kernel = miliki::runtime::Kernel::new(settings, clock).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = miliki::runtime::Runtime::start(kernel, miliki::runtime::Role::Gateway, listener)
        .await
        .unwrap();
    let base = format!("http://{}", gateway.addr);
    let client = reqwest::Client::new();

    // Both replicas take traffic.
    let answered = reads(&client, &base, 20).await;
    assert!(answered.iter().any(|r| r == "a"), "{answered:?}");
    assert!(answered.iter().any(|r| r == "b"), "{answered:?}");
    assert_eq!(a.served() + b.served(), 20);
    let (status, ready) = app_get(&client, &base, "/health/ready").await;
    assert_eq!(ready["checks"]["upstream_users"], "ok", "{status} {ready}");

    // One dies: every read still succeeds, on the other (a read that met the
    // dead one first is retried there), and readiness still holds.
    a.kill().await;
    let served_by_b = b.served();
    let answered = reads(&client, &base, 20).await;
    assert!(answered.iter().all(|r| r == "b"), "{answered:?}");
    assert_eq!(b.served(), served_by_b + 20);
    let (_, ready) = app_get(&client, &base, "/health/ready").await;
    assert_eq!(ready["checks"]["upstream_users"], "ok", "{ready}");

    // It comes back on its address: after the cool-down it gets traffic again.
    let a = Replica::start_counting("a", port_a, a.served.clone()).await;
    let before = a.served();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while a.served() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "replica {} never got traffic back",
            a.name
        );
        reads(&client, &base, 2).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let answered = reads(&client, &base, 20).await;
    assert!(answered.iter().any(|r| r == "a"), "{answered:?}");
    assert!(answered.iter().any(|r| r == "b"), "{answered:?}");

    // Both gone: a clear 503 problem, not a hang.
    let (mut a, mut b) = (a, b);
    a.kill().await;
    b.kill().await;
    let (status, body) = app_get(&client, &base, "/api/v1/users/me").await;
    assert_problem(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "service-unavailable",
    );
    gateway.stop().await.unwrap();
}

async fn app_get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
) -> (StatusCode, serde_json::Value) {
    let resp = client.get(format!("{base}{path}")).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or_default())
}

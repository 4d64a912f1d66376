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

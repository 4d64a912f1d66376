use miliki_platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let app = TestApp::spawn().await;
    let (status, user) = app
        .post("/api/v1/auth/register", None, json!({"name": "Achieng Otieno", "phone": "0712 345 678", "email": "Achieng@Example.com", "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["phone"], "+254712345678");
    assert_eq!(user["email"], "achieng@example.com");
    assert_eq!(user["role"], "customer");
    assert_eq!(user["kyc_status"], "not_submitted");

    // Phone in another notation, and email, both log in.
    let tokens = app.login("+254712345678", PASSWORD).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let by_email = app.login("ACHIENG@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (status, me) = app.get("/api/v1/users/me", Some(access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], user["id"]);

    // Refresh rotates: the new pair works, the old refresh token does not.
    let (status, rotated) = app.refresh(&tokens["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["refresh_token"], tokens["refresh_token"]);
    let (status, _) = app
        .get(
            "/api/v1/users/me",
            Some(rotated["access_token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Logout revokes the family; the other login's session is untouched.
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": rotated["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.refresh(&rotated["refresh_token"]).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, _) = app.refresh(&by_email["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let app = TestApp::spawn().await;
    let me = app.customer().await;
    let (status, second) = app.refresh(&me.refresh).await;
    assert_eq!(status, StatusCode::OK);
    // An attacker replays the first token: refused, and the legitimate successor dies too.
    let (status, body) = app.refresh(&me.refresh).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, _) = app.refresh(&second["refresh_token"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A fresh login still works.
    app.login(&me.phone, PASSWORD).await;
    app.stop().await;
}

#[tokio::test]
async fn refresh_tokens_expire_with_the_clock() {
    let app = TestApp::spawn().await;
    let me = app.customer().await;
    app.clock.advance(chrono::Duration::days(31));
    let (status, body) = app.refresh(&me.refresh).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    app.stop().await;
}

#[tokio::test]
async fn registration_refuses_bad_input_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let count = |body: serde_json::Value| body["items"].as_array().map(|a| a.len()).unwrap_or(0);
    let (_, before) = app.get("/api/v1/users?limit=100", Some(&admin.token)).await;

    // Every invalid field is named at once.
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"name": "A", "phone": "12", "email": "nope", "password": "short"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let mut fields = invalid_fields(&body);
    fields.sort();
    assert_eq!(fields, ["email", "name", "password", "phone"]);

    let (status, body) = app.post("/api/v1/auth/register", None, json!({})).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body).len(), 3, "{body}");

    // Wrong types, broken JSON, wrong content type, oversized bodies.
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"name": 42, "phone": "0712345678", "password": PASSWORD}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), ["name"]);
    let resp = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge =
        json!({"name": "x".repeat(2 * 1024 * 1024), "phone": "0712345678", "password": PASSWORD});
    let (status, body) = app.post("/api/v1/auth/register", None, huge).await;
    assert_problem(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
    );

    // Duplicates, in any notation, conflict.
    let (status, _) = app.post("/api/v1/auth/register", None, json!({"name": "First", "phone": "0722000111", "email": "first@example.com", "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"name": "Second", "phone": "+254 722 000 111", "password": PASSWORD}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = app.post("/api/v1/auth/register", None, json!({"name": "Third", "phone": "0722000112", "email": "FIRST@example.com", "password": PASSWORD})).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    let (_, after) = app.get("/api/v1/users?limit=100", Some(&admin.token)).await;
    assert_eq!(
        count(after),
        count(before) + 1,
        "only the one valid registration was stored"
    );
    app.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_account() {
    let app = TestApp::spawn().await;
    let me = app.customer().await;
    for _ in 0..5 {
        let (status, body) = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": me.phone, "password": "wrong-password-1"}),
            )
            .await;
        assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"login": me.phone, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 900, "{retry_after}");
    // Other accounts are not locked out by it.
    let other = app.customer().await;
    app.login(&other.phone, PASSWORD).await;
    // The window passes and the right password works again. (Redis times its
    // windows with its own clock, which a test cannot move.)
    if redis_url().is_none() {
        app.clock.advance(chrono::Duration::minutes(16));
        app.login(&me.phone, PASSWORD).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_address() {
    let app = TestApp::spawn_with(|s| s.login_ip_max_failures = 3).await;
    for n in 0..3 {
        let (status, _) = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": format!("+25471100000{n}"), "password": "whatever-it-is"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "+254711000009", "password": "whatever-it-is"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    app.stop().await;
}

#[tokio::test]
async fn login_needs_its_fields_and_says_nothing_about_which_was_wrong() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post("/api/v1/auth/login", None, json!({"login": ""}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (_, unknown) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "0799111222", "password": PASSWORD}),
        )
        .await;
    let me = app.customer().await;
    let (_, wrong) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": me.phone, "password": "not-the-password"}),
        )
        .await;
    assert_eq!(unknown["detail"], wrong["detail"]);
    let (status, body) = app.refresh(&"made-up").await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    app.stop().await;
}

#[tokio::test]
async fn suspended_accounts_cannot_log_in_and_their_tokens_stop_working() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let me = app.account(Role::Agent, None).await;
    let (status, _) = app
        .post(
            &format!("/api/v1/users/{}/suspend", me.id),
            Some(&admin.token),
            json!({"reason": "left the company"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.get("/api/v1/users/me", Some(&me.token)).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, _) = app.refresh(&me.refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": me.phone, "password": PASSWORD}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // Reinstated, they log in again.
    let (status, _) = app
        .post(
            &format!("/api/v1/users/{}/reinstate", me.id),
            Some(&admin.token),
            json!({"reason": "came back"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.login(&me.phone, PASSWORD).await;
    app.stop().await;
}

#[tokio::test]
async fn token_endpoints_refuse_bad_input_and_anonymous_callers() {
    let app = TestApp::spawn().await;
    for path in ["/api/v1/auth/refresh", "/api/v1/auth/logout"] {
        let (status, body) = app.post(path, None, json!({})).await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert_eq!(invalid_fields(&body), ["refresh_token"]);
        let (status, body) = app.post(path, None, json!({"refresh_token": 7})).await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
    }
    // Logging out an unknown token is harmless and says nothing.
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": "never-issued"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/api/v1/users/me", None).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    app.stop().await;
}

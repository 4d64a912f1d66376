//! Phone verification: the code sent by SMS at registration and after a
//! change of phone, its limits, the grace period, and agents verifying in person.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

/// Registers a customer through the API (so a code is sent) and logs in.
async fn register(app: &TestApp) -> (Value, String, String) {
    let phone = unique_phone();
    let (status, user) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"name": "Wanjiru Kamau", "phone": phone, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["phone_verified"], false);
    let tokens = app.login(&phone, PASSWORD).await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    (user, phone, token)
}

async fn nth_code(app: &TestApp, phone: &str, n: usize) -> String {
    app.phone_code(phone, n).await
}

fn wrong(code: &str) -> String {
    let last = code.as_bytes()[5] - b'0';
    format!("{}{}", &code[..5], (last + 1) % 10)
}

#[tokio::test]
async fn the_code_sent_at_registration_verifies_the_phone() {
    let app = TestApp::spawn().await;
    let (user, phone, token) = register(&app).await;
    let code = nth_code(&app, &phone, 1).await;

    // A wrong code is refused and says how many tries are left.
    let (s, b) = app
        .post(
            "/api/v1/auth/verify-phone",
            Some(&token),
            json!({"code": wrong(&code)}),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert!(b.to_string().contains("4 tries left"), "{b}");
    for bad in [
        json!({}),
        json!({"code": "12ab56"}),
        json!({"code": "1234"}),
    ] {
        let (s, b) = app
            .post("/api/v1/auth/verify-phone", Some(&token), bad)
            .await;
        assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    }
    let (_, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me["phone_verified"], false);

    let (s, me) = app
        .post(
            "/api/v1/auth/verify-phone",
            Some(&token),
            json!({"code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["id"], user["id"]);
    assert_eq!(me["phone_verified"], true);
    // Once is enough.
    let (s, b) = app
        .post(
            "/api/v1/auth/verify-phone",
            Some(&token),
            json!({"code": code}),
        )
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "conflict");
    let (s, b) = app
        .post("/api/v1/auth/verify-phone/resend", Some(&token), json!({}))
        .await;
    assert_problem(s, &b, StatusCode::CONFLICT, "conflict");
    // Accounts the operator creates start verified.
    let vouched = app.customer().await;
    let (_, me) = app.get("/api/v1/users/me", Some(&vouched.token)).await;
    assert_eq!(me["phone_verified"], true);
    app.stop().await;
}

#[tokio::test]
async fn codes_expire_die_after_five_wrong_tries_and_resend_after_a_cooldown() {
    let app = TestApp::spawn().await;
    let (_, phone, token) = register(&app).await;
    let first = nth_code(&app, &phone, 1).await;

    // Too soon for another.
    let resp = app
        .client
        .post(app.url("/api/v1/auth/verify-phone/resend"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // Five wrong tries kill the code: even the right one is refused after.
    for _ in 0..5 {
        let (s, _) = app
            .post(
                "/api/v1/auth/verify-phone",
                Some(&token),
                json!({"code": wrong(&first)}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (s, b) = app
        .post(
            "/api/v1/auth/verify-phone",
            Some(&token),
            json!({"code": first}),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert!(b.to_string().contains("ask for a new one"), "{b}");

    // After the cooldown a new code comes; the old one no longer works.
    app.clock.advance(chrono::Duration::seconds(61));
    let (s, sent) = app
        .post("/api/v1/auth/verify-phone/resend", Some(&token), json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{sent}");
    assert!(sent["expires_at"].is_string(), "{sent}");
    let second = nth_code(&app, &phone, 2).await;
    if second != first {
        let (s, _) = app
            .post(
                "/api/v1/auth/verify-phone",
                Some(&token),
                json!({"code": first}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }

    // Ten minutes on, it has expired.
    app.clock.advance(chrono::Duration::minutes(11));
    let (s, b) = app
        .post(
            "/api/v1/auth/verify-phone",
            Some(&token),
            json!({"code": second}),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert!(b.to_string().contains("expired"), "{b}");
    let (_, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me["phone_verified"], false);
    app.stop().await;
}

#[tokio::test]
async fn an_unverified_phone_cannot_log_in_after_the_grace_period() {
    let app = TestApp::spawn_with(|s| {
        s.extra
            .insert("phone_verification_grace_hours".into(), json!(1));
    })
    .await;
    let (_, phone, _) = register(&app).await;
    let tokens = app.login(&phone, PASSWORD).await;
    nth_code(&app, &phone, 1).await;

    app.clock.advance(chrono::Duration::hours(2));
    let (s, b) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": phone, "password": PASSWORD}),
        )
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    assert!(b.to_string().contains("not verified"), "{b}");
    let (s, _) = app.refresh(&tokens["refresh_token"]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Without a token: ask for a new code by phone and enter it with the phone.
    let (s, sent) = app
        .post(
            "/api/v1/auth/verify-phone/resend",
            None,
            json!({"phone": phone}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{sent}");
    // An unknown phone is answered the same, so the route tells nothing.
    let (s, unknown) = app
        .post(
            "/api/v1/auth/verify-phone/resend",
            None,
            json!({"phone": unique_phone()}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(unknown, sent);
    let code = nth_code(&app, &phone, 2).await;
    let (s, b) = app
        .post(
            "/api/v1/auth/verify-phone",
            None,
            json!({"phone": unique_phone(), "code": code}),
        )
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let (s, b) = app
        .post("/api/v1/auth/verify-phone", None, json!({"code": code}))
        .await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let (s, me) = app
        .post(
            "/api/v1/auth/verify-phone",
            None,
            json!({"phone": phone, "code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["phone_verified"], true);
    app.login(&phone, PASSWORD).await;
    app.stop().await;
}

#[tokio::test]
async fn an_agent_verifies_their_customer_on_the_spot() {
    let app = TestApp::spawn().await;
    let agent = app.agent().await;
    let other_agent = app.agent().await;
    let phone = unique_phone();
    let (s, customer) = app
        .post(
            "/api/v1/users",
            Some(&agent.token),
            json!({"name": "Otieno Odhiambo", "phone": phone, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{customer}");
    assert_eq!(customer["phone_verified"], false);
    let id = customer["id"].as_str().unwrap();
    let code = nth_code(&app, &phone, 1).await;
    let path = format!("/api/v1/users/{id}/verify-phone");

    // Not another agent's customer, and not for customers themselves.
    let (s, b) = app
        .post(&path, Some(&other_agent.token), json!({"code": code}))
        .await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not-found");
    let someone = app.customer().await;
    let (s, b) = app
        .post(&path, Some(&someone.token), json!({"code": code}))
        .await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, _) = app.post(&path, None, json!({"code": code})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, b) = app
        .post(
            &format!("{path}/resend"),
            Some(&other_agent.token),
            json!({}),
        )
        .await;
    assert_problem(s, &b, StatusCode::NOT_FOUND, "not-found");
    let (s, verified) = app
        .post(&path, Some(&agent.token), json!({"code": code}))
        .await;
    assert_eq!(s, StatusCode::OK, "{verified}");
    assert_eq!(verified["phone_verified"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_changed_phone_is_verified_again() {
    let app = TestApp::spawn().await;
    let me = app.customer().await;
    let taken = app.customer().await;
    let new_phone = unique_phone();
    let change = |body: Value| {
        app.send(
            Method::PUT,
            "/api/v1/users/me/phone",
            Some(&me.token),
            Some(body),
        )
    };

    let (s, b) = change(json!({"phone": new_phone, "password": "not-the-password"})).await;
    assert_problem(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = change(json!({"phone": taken.phone, "password": PASSWORD})).await;
    assert_problem(s, &b, StatusCode::CONFLICT, "conflict");
    let (s, b) = change(json!({"phone": "not a phone", "password": PASSWORD})).await;
    assert_problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let (_, still) = app.get("/api/v1/users/me", Some(&me.token)).await;
    assert_eq!(still["phone"], me.phone.as_str());
    assert_eq!(still["phone_verified"], true);

    let (s, changed) = change(json!({"phone": new_phone, "password": PASSWORD})).await;
    assert_eq!(s, StatusCode::OK, "{changed}");
    assert_eq!(changed["phone"], new_phone.as_str());
    assert_eq!(changed["phone_verified"], false);
    // The old phone no longer logs in; the new one does.
    let (s, _) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": me.phone, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.login(&new_phone, PASSWORD).await;

    let code = nth_code(&app, &new_phone, 1).await;
    let (s, verified) = app
        .post(
            "/api/v1/auth/verify-phone",
            Some(&me.token),
            json!({"code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{verified}");
    assert_eq!(verified["phone_verified"], true);
    app.stop().await;
}

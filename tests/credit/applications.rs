//! Who may apply, for whom, and each refusal: every one a clear problem that
//! changes nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::support::*;

async fn count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM applications")
        .fetch_one(credit(app).db.reader())
        .await
        .unwrap()
}

#[tokio::test]
async fn each_refusal_is_its_own_problem_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let good = body(&s, 40_000_00, 52, 45_000_00);

    // No token, a forged one, the wrong role.
    let (status, b) = app.post("/api/v1/applications", None, good.clone()).await;
    assert_problem(status, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some("eyJhbGciOiJub25lIn0.e30."),
            good.clone(),
        )
        .await;
    assert_problem(status, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, b) = app
        .post("/api/v1/applications", Some(&s.admin.token), good.clone())
        .await;
    assert_problem(status, &b, StatusCode::FORBIDDEN, "forbidden");

    // Bad fields, each named; unknown fields refused.
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some(&s.customer.token),
            json!({"vehicle_id": s.vehicle_id, "deposit_minor": -1, "term_periods": 0,
                   "occupation": "astronaut", "income": {"declared_minor": 0, "frequency": "hourly"}}),
        )
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let fields = invalid_fields(&b);
    for f in [
        "product_id",
        "deposit_minor",
        "term_periods",
        "occupation",
        "income.declared_minor",
        "income.frequency",
    ] {
        assert!(fields.contains(&f.to_owned()), "{f} not named: {b}");
    }
    let mut extra = good.clone();
    extra["score"] = json!(900);
    let (status, b) = app
        .post("/api/v1/applications", Some(&s.customer.token), extra)
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let mut bad_guarantor = good.clone();
    bad_guarantor["guarantor"] = json!({"name": "Wanjiru", "phone": "12", "national_id": "x"});
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some(&s.customer.token),
            bad_guarantor,
        )
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(
        invalid_fields(&b),
        vec!["guarantor.phone", "guarantor.national_id"]
    );

    // A deposit under the product's minimum: payments' rule, named.
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some(&s.customer.token),
            body(&s, 1_000_00, 52, 45_000_00),
        )
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(invalid_fields(&b), vec!["deposit_minor"]);
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some(&s.customer.token),
            body(&s, 40_000_00, 500, 45_000_00),
        )
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(invalid_fields(&b), vec!["term_periods"]);

    // A customer for someone else; an agent for a customer outside their book.
    let mut other = good.clone();
    other["customer_id"] = json!(s.agent.id);
    let (status, b) = app
        .post("/api/v1/applications", Some(&s.customer.token), other)
        .await;
    assert_problem(status, &b, StatusCode::FORBIDDEN, "forbidden");
    let stranger_agent = app.agent().await;
    let mut for_customer = good.clone();
    for_customer["customer_id"] = json!(s.customer.id);
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some(&stranger_agent.token),
            for_customer.clone(),
        )
        .await;
    assert_problem(status, &b, StatusCode::FORBIDDEN, "forbidden");
    let (status, b) = app
        .post("/api/v1/applications", Some(&s.agent.token), good.clone())
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(invalid_fields(&b), vec!["customer_id"]);

    // KYC not approved.
    let unverified = app.customer_of(&s.agent).await;
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some(&unverified.token),
            good.clone(),
        )
        .await;
    assert_problem(status, &b, StatusCode::FORBIDDEN, "forbidden");
    assert!(b["detail"].as_str().unwrap().contains("KYC"), "{b}");

    // KYC approved but no reservation of this vehicle.
    let other_customer = app.customer_of(&s.agent).await;
    approve(&app, &s.admin, &other_customer).await;
    let db = credit(&app).db.clone();
    let id = other_customer.id;
    app.eventually("credit to learn the KYC", || {
        let db = db.clone();
        async move {
            miliki_events::standing::standing(&db, id)
                .await
                .ok()
                .filter(|s| s.kyc_approved)
        }
    })
    .await;
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some(&other_customer.token),
            good.clone(),
        )
        .await;
    assert_problem(status, &b, StatusCode::CONFLICT, "conflict");
    assert!(b["detail"].as_str().unwrap().contains("reservation"), "{b}");
    assert_eq!(count(&app).await, 0);

    // The one that works (an agent for their customer); then a second on the same reservation.
    let (status, first) = app
        .post(
            "/api/v1/applications",
            Some(&s.agent.token),
            for_customer.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["submitted_by"], s.agent.id.to_string());
    let (status, b) = app
        .post(
            "/api/v1/applications",
            Some(&s.customer.token),
            good.clone(),
        )
        .await;
    assert_problem(status, &b, StatusCode::CONFLICT, "conflict");
    assert!(
        b["detail"].as_str().unwrap().contains("already open"),
        "{b}"
    );
    assert_eq!(count(&app).await, 1);

    // Suspended: the agent applies for a suspended customer.
    let (status, b) = app
        .post(
            &format!("/api/v1/users/{}/suspend", s.customer.id),
            Some(&s.admin.token),
            json!({"reason": "fraud check"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let db = credit(&app).db.clone();
    let id = s.customer.id;
    app.eventually("credit to learn the suspension", || {
        let db = db.clone();
        async move {
            miliki_events::standing::standing(&db, id)
                .await
                .ok()
                .filter(|s| s.suspended)
        }
    })
    .await;
    let (status, b) = app
        .post("/api/v1/applications", Some(&s.agent.token), for_customer)
        .await;
    assert_problem(status, &b, StatusCode::FORBIDDEN, "forbidden");
    assert!(b["detail"].as_str().unwrap().contains("suspended"), "{b}");
    assert_eq!(count(&app).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn applications_are_seen_by_their_customer_agent_and_admins_only() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let (status, a) = app
        .post(
            "/api/v1/applications",
            Some(&s.customer.token),
            body(&s, 40_000_00, 52, 45_000_00),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    let id = a["id"].as_str().unwrap();
    let path = format!("/api/v1/applications/{id}");
    for token in [&s.customer.token, &s.agent.token, &s.admin.token] {
        let (status, got) = app.get(&path, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["id"], a["id"]);
        assert_eq!(got["history"][0]["to"], got["status"]);
    }
    let stranger = app.customer().await;
    let other_agent = app.agent().await;
    for token in [&stranger.token, &other_agent.token] {
        let (status, b) = app.get(&path, Some(token)).await;
        assert_problem(status, &b, StatusCode::NOT_FOUND, "not-found");
        let (_, page) = app.get("/api/v1/applications", Some(token)).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
    }
    let (status, page) = app.get("/api/v1/applications", Some(&s.agent.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (status, b) = app
        .get("/api/v1/applications?status=pending", Some(&s.admin.token))
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let (status, b) = app
        .get(
            &format!("/api/v1/applications?customer_id={}", s.agent.id),
            Some(&s.customer.token),
        )
        .await;
    assert_problem(status, &b, StatusCode::FORBIDDEN, "forbidden");
    let (status, b) = app
        .get("/api/v1/applications/not-a-uuid", Some(&s.admin.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_names_credit_routes_and_keeps_payments_schemas() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/applications",
        "/api/v1/applications/{id}",
        "/api/v1/applications/{id}/accept",
        "/api/v1/applications/{id}/decision",
        "/api/v1/credit/customers/{id}/score",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let schemas = &doc["components"]["schemas"];
    // Credit's own names do not shadow payments' or vehicles' schemas.
    assert!(schemas["OfferQuote"].is_object());
    assert!(schemas["Quote"]["properties"]["installments"]["type"] == "array");
    assert!(schemas["OfferCondition"].is_object());
    app.stop().await;
}

//! Each decision path, with golden scorecard arithmetic, and the offers'
//! conditions met on acceptance.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::payment_support::{contract_body, create_contract, deposit_due, pay};
use crate::support::*;

async fn apply(
    app: &TestApp,
    s: &Setup,
    deposit: i64,
    monthly: i64,
    shape: Option<Shape>,
) -> Value {
    let csv = shape.map(|sh| statement(&sh));
    let (status, a) = apply_multipart(
        app,
        &s.customer.token,
        &body(s, deposit, 52, monthly),
        csv.as_deref(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    a
}

#[tokio::test]
async fn a_steady_rider_is_approved_with_golden_points_and_payments_quote() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = apply(
        &app,
        &s,
        40_000_00,
        50_000_00,
        Some(Shape::steady(50_000_00)),
    )
    .await;
    assert_eq!(a["status"], "approved", "{a}");
    // Golden points, by the shipped model's bins.
    for (feature, points) in [
        ("kyc_age_days", 0),
        ("agent_onboarded", 15),
        ("monthly_inflow_minor", 50),
        ("inflow_regularity_bps", 50),
        ("avg_balance_minor", 30),
        ("distinct_payers", 25),
        ("betting_share_bps", 30),
        ("failed_transactions", 20),
        ("on_time_ratio_bps", 10),
        ("worst_days_past_due", 10),
        ("contracts_completed", 0),
        ("current_arrears_days", 10),
        ("risk_events_per_30_days_x100", 10),
        ("affordability_bps", 25),
        ("guarantor", 0),
    ] {
        assert_eq!(points_of(&a, feature), points, "{feature}: {}", a["score"]);
    }
    assert_eq!(a["score"]["score"], 685);
    assert_eq!(a["score"]["band"], "B");
    assert_eq!(a["score"]["model_version"], "miliki-boda-2026.1");
    // odds = exp((685 − offset) / factor), offset = 600 − (20/ln 2)·ln 30.
    let factor = 20.0 / std::f64::consts::LN_2;
    let odds = ((685.0 - (600.0 - factor * 30f64.ln())) / factor).exp();
    assert!(
        (a["score"]["odds"].as_f64().unwrap() - odds).abs() < 0.01,
        "{}",
        a["score"]
    );
    // The offer carries exactly what payments quotes.
    let (status, q) = app
        .post(
            "/api/v1/quotes",
            Some(&s.customer.token),
            json!({"product_id": s.product_id, "vehicle_id": s.vehicle_id, "deposit_minor": 40_000_00, "term_periods": 52}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!(
        a["offer"]["quote"]["installment_minor"],
        q["installment_minor"]
    );
    assert_eq!(
        a["offer"]["quote"]["total_payable_minor"],
        q["total_payable_minor"]
    );
    assert_eq!(a["offer"]["conditions"], json!([]));
    // The decided transition says why.
    let why = a["history"][0]["reason"].as_str().unwrap();
    assert!(why.contains("score 685"), "{why}");

    // An approved offer takes a larger deposit but not another term.
    let id = a["id"].as_str().unwrap();
    let (status, b) = accept(&app, &s.customer.token, id, json!({"term_periods": 60})).await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let (status, b) = accept(
        &app,
        &s.customer.token,
        id,
        json!({"deposit_minor": 30_000_00}),
    )
    .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let stranger = app.customer().await;
    let (status, b) = accept(&app, &stranger.token, id, json!({})).await;
    assert_problem(status, &b, StatusCode::NOT_FOUND, "not-found");
    let (status, b) = accept(&app, &s.admin.token, id, json!({})).await;
    assert_problem(status, &b, StatusCode::FORBIDDEN, "forbidden");
    app.stop().await;
}

#[tokio::test]
async fn an_unaffordable_plan_is_conditionally_approved_with_a_computed_deposit() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = apply(
        &app,
        &s,
        40_000_00,
        30_000_00,
        Some(Shape::steady(30_000_00)),
    )
    .await;
    assert_eq!(a["status"], "conditionally_approved", "{a}");
    assert_eq!(points_of(&a, "affordability_bps"), -30);
    assert_eq!(a["score"]["score"], 615);
    let conditions = a["offer"]["conditions"].as_array().unwrap();
    let deposit = conditions
        .iter()
        .find(|c| c["kind"] == "higher_deposit")
        .expect("a higher deposit");
    let term = conditions
        .iter()
        .find(|c| c["kind"] == "longer_term")
        .expect("a longer term");
    let need = deposit["deposit_minor"].as_i64().unwrap();
    assert!(need > 40_000_00 && need % 100_00 == 0, "{deposit}");
    let t = term["term_periods"].as_i64().unwrap();
    assert!(t > 52 && t <= 104, "{term}");
    // The computed deposit is affordable, and a hundred shillings less is not.
    let income = a["features"]["income_monthly_minor"].as_i64().unwrap();
    let weekly_cap = income * 3500 / 10_000 * 12 / 52;
    let quote = |d: i64| {
        let app = &app;
        let s = &s;
        async move {
            let (_, q) = app
                .post(
                    "/api/v1/quotes",
                    Some(&s.customer.token),
                    json!({"product_id": s.product_id, "vehicle_id": s.vehicle_id, "deposit_minor": d, "term_periods": 52}),
                )
                .await;
            q["installment_minor"].as_i64().unwrap()
        }
    };
    assert!(quote(need).await <= weekly_cap + 1, "{deposit}");
    assert!(quote(need - 100_00).await * 52 / 12 * 10_000 / income > 3500 - 1);

    // Not meeting any condition is refused, naming them.
    let id = a["id"].as_str().unwrap();
    let (status, b) = accept(
        &app,
        &s.customer.token,
        id,
        json!({"deposit_minor": need - 100_00}),
    )
    .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(invalid_fields(&b), vec!["conditions"]);
    // Meeting one: the higher deposit.
    let (status, done) = accept(&app, &s.customer.token, id, json!({"deposit_minor": need})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "accepted");
    assert_eq!(done["accepted"]["condition_met"], "higher_deposit");
    assert_eq!(done["deposit_minor"], need);
    // Payments writes the contract on the higher deposit.
    let c = app
        .eventually("payments to write the contract", || async {
            let (_, page) = app.get("/api/v1/contracts", Some(&s.customer.token)).await;
            page["items"].as_array().and_then(|i| i.first().cloned())
        })
        .await;
    assert_eq!(c["application_id"], a["id"]);
    assert_eq!(c["deposit_minor"], need);
    assert_eq!(c["status"], "pending_deposit");
    // Accepting twice is a conflict.
    let (status, b) = accept(&app, &s.customer.token, id, json!({"deposit_minor": need})).await;
    assert_problem(status, &b, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn a_middling_score_asks_for_a_guarantor_and_takes_one() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let mut shape = Shape::steady(50_000_00);
    shape.payers = 2;
    shape.betting_per_week_minor = 1_000_00;
    shape.failed = 4;
    let a = apply(&app, &s, 40_000_00, 50_000_00, Some(shape)).await;
    assert_eq!(a["status"], "conditionally_approved", "{a}");
    assert_eq!(a["score"]["score"], 610, "{}", a["score"]);
    let kinds: Vec<&str> = a["offer"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["guarantor", "higher_deposit"]);
    let reasons: Vec<&str> = a["score"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["feature"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 4);
    assert!(reasons.contains(&"betting_share_bps") && reasons.contains(&"distinct_payers"));
    let id = a["id"].as_str().unwrap();
    let (status, b) = accept(
        &app,
        &s.agent.token,
        id,
        json!({"guarantor": {"name": "Grace Akinyi", "phone": "0722 123 456", "national_id": "23456789"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["accepted"]["condition_met"], "guarantor");
    assert_eq!(b["guarantor"]["name"], "Grace Akinyi");
    assert!(
        !b.to_string().contains("23456789"),
        "the ID number never leaves: {b}"
    );
    assert_eq!(b["history"][1]["actor_id"], s.agent.id.to_string());
    app.stop().await;
}

#[tokio::test]
async fn a_shaky_statement_is_declined_below_the_floor() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = apply(&app, &s, 40_000_00, 8_000_00, Some(Shape::shaky())).await;
    assert_eq!(a["status"], "declined", "{a}");
    assert!(a["score"]["score"].as_i64().unwrap() < 560);
    assert!(a["offer"].is_null());
    assert!(a["history"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("below the floor"));
    let (status, b) = accept(
        &app,
        &s.customer.token,
        a["id"].as_str().unwrap(),
        json!({}),
    )
    .await;
    assert_problem(status, &b, StatusCode::CONFLICT, "conflict");
    // A declined application frees the reservation for another try.
    let again = apply(
        &app,
        &s,
        40_000_00,
        50_000_00,
        Some(Shape::steady(50_000_00)),
    )
    .await;
    assert_eq!(again["status"], "approved");
    app.stop().await;
}

#[tokio::test]
async fn conflicting_income_goes_to_review() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = apply(
        &app,
        &s,
        40_000_00,
        100_000_00,
        Some(Shape::steady(30_000_00)),
    )
    .await;
    assert_eq!(a["status"], "manual_review", "{a}");
    let why = a["history"][0]["reason"].as_str().unwrap();
    assert!(
        why.starts_with("conflicting data: declared income KES 100,000 a month"),
        "{why}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_default_on_the_platform_declines_by_hard_rule() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    // An earlier contract of this customer, defaulted.
    let product = serde_json::json!({"id": s.product_id});
    let c = create_contract(
        &app,
        &s.admin,
        contract_body(&product, s.customer.id, 165_000_00, 40_000_00, 52),
    )
    .await;
    let cid = c["id"].as_str().unwrap();
    let (status, r) = pay(&app, &s.admin.token, cid, deposit_due(&c)).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let (status, d) = app
        .post(
            &format!("/api/v1/contracts/{cid}/default"),
            Some(&s.admin.token),
            json!({"reason": "absconded"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    let db = credit(&app).db.clone();
    app.eventually("credit to learn the default", || {
        let db = db.clone();
        let cid = cid.to_owned();
        async move {
            let st: Option<String> =
                sqlx::query_scalar("SELECT status FROM contracts_seen WHERE contract_id = $1")
                    .bind(cid)
                    .fetch_optional(db.reader())
                    .await
                    .ok()
                    .flatten();
            (st.as_deref() == Some("defaulted")).then_some(())
        }
    })
    .await;
    let a = apply(
        &app,
        &s,
        40_000_00,
        50_000_00,
        Some(Shape::steady(50_000_00)),
    )
    .await;
    assert_eq!(a["status"], "declined", "{a}");
    assert!(a["history"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("hard rule"));
    app.stop().await;
}

#[tokio::test]
async fn a_thin_file_is_reviewed_and_an_admin_decides() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let a = apply(&app, &s, 40_000_00, 40_000_00, None).await;
    assert_eq!(a["status"], "manual_review", "{a}");
    assert_eq!(a["features"]["income_source"], "declared");
    assert!(a["history"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("thin file"));
    let id = a["id"].as_str().unwrap();
    // In the queue.
    let (_, queue) = app
        .get(
            "/api/v1/applications?status=manual_review",
            Some(&s.admin.token),
        )
        .await;
    assert!(queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == a["id"]));
    // Nothing to accept yet.
    let (status, b) = accept(&app, &s.customer.token, id, json!({})).await;
    assert_problem(status, &b, StatusCode::CONFLICT, "conflict");
    let path = format!("/api/v1/applications/{id}/decision");
    let (status, b) = app
        .post(
            &path,
            Some(&s.agent.token),
            json!({"decision": "approved", "reason": "ok"}),
        )
        .await;
    assert_problem(status, &b, StatusCode::FORBIDDEN, "forbidden");
    let (status, b) = app
        .post(
            &path,
            Some(&s.admin.token),
            json!({"decision": "accepted", "reason": "ok"}),
        )
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let (status, b) = app
        .post(&path, Some(&s.admin.token), json!({"decision": "approved"}))
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(invalid_fields(&b), vec!["reason"]);
    let (status, b) = app
        .post(&path, Some(&s.admin.token), json!({"decision": "conditionally_approved", "reason": "thin", "conditions": [{"kind": "higher_deposit", "deposit_minor": 10_00, "description": "more"}]}))
        .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(invalid_fields(&b), vec!["conditions[0].deposit_minor"]);
    let (status, b) = app
        .post(&path, Some(&s.admin.token), json!({"decision": "conditionally_approved", "reason": "thin file: a guarantor", "conditions": [{"kind": "guarantor", "description": "a guarantor from the stage"}]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "conditionally_approved");
    assert!(b["offer"]["quote"]["installment_minor"].as_i64().unwrap() > 0);
    let last = b["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor_id"], s.admin.id.to_string());
    assert_eq!(last["reason"], "thin file: a guarantor");
    assert_eq!(last["from"], "manual_review");
    // Decided once only.
    let (status, b) = app
        .post(
            &path,
            Some(&s.admin.token),
            json!({"decision": "declined", "reason": "x"}),
        )
        .await;
    assert_problem(status, &b, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn with_payments_unreachable_an_application_goes_to_review_not_an_error() {
    let app = TestApp::spawn_with(|s| {
        s.extra
            .insert("payments_url".into(), json!("http://127.0.0.1:9"));
        s.extra
            .insert("credit_payments_timeout_ms".into(), json!(500));
    })
    .await;
    let s = setup(&app).await;
    let a = apply(
        &app,
        &s,
        40_000_00,
        50_000_00,
        Some(Shape::steady(50_000_00)),
    )
    .await;
    assert_eq!(a["status"], "manual_review", "{a}");
    assert!(a["offer"]["quote"].is_null());
    assert!(a["history"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("payments service"));
    // An approval needs the quote: refused while payments is down, nothing changed.
    let id = a["id"].as_str().unwrap();
    let (status, b) = app
        .post(
            &format!("/api/v1/applications/{id}/decision"),
            Some(&s.admin.token),
            json!({"decision": "approved", "reason": "fine"}),
        )
        .await;
    assert_problem(
        status,
        &b,
        StatusCode::SERVICE_UNAVAILABLE,
        "service-unavailable",
    );
    let (_, now) = app
        .get(&format!("/api/v1/applications/{id}"), Some(&s.admin.token))
        .await;
    assert_eq!(now["status"], "manual_review");
    // A decline needs no quote.
    let (status, b) = app
        .post(
            &format!("/api/v1/applications/{id}/decision"),
            Some(&s.admin.token),
            json!({"decision": "declined", "reason": "cannot verify"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    app.stop().await;
}

//! Living scores: recomputed from payments events as they arrive, each change
//! with its cause, the same under redelivery, visible to the right people.

use miliki_platform::clock::Clock;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn late_payments_and_arrears_move_the_score_once_each() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let (_, a) = apply_multipart(
        &app,
        &s.customer.token,
        &body(&s, 40_000_00, 52, 50_000_00),
        Some(&statement(&Shape::steady(50_000_00))),
    )
    .await;
    assert_eq!(a["status"], "approved");
    let path = format!("/api/v1/credit/customers/{}/score", s.customer.id);
    let (status, first) = app.get(&path, Some(&s.customer.token)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["score"], a["score"]["score"]);
    assert_eq!(first["history"].as_array().unwrap().len(), 1);
    assert!(!first["improvements"].as_array().unwrap().is_empty());

    // Payments' events, delivered to credit's consumer (twice: a redelivery).
    let contract = uuid::Uuid::now_v7();
    let vehicle: uuid::Uuid = s.vehicle_id.parse().unwrap();
    let arrears = miliki_events::catalogue::payments::ArrearsChanged {
        contract_id: contract,
        customer_id: s.customer.id,
        vehicle_id: vehicle,
        days_past_due: 12,
        bucket: "8-30".into(),
        overdue_minor: 3_125_00,
    };
    let late = miliki_events::catalogue::payments::PaymentReceived {
        payment_id: uuid::Uuid::now_v7(),
        contract_id: contract,
        customer_id: s.customer.id,
        amount_minor: 3_125_00,
        currency: "KES".into(),
        method: "cash".into(),
        days_late: 12,
    };
    let now = app.clock.now();
    let events = [
        miliki_events::Event::new("/miliki/payments", now, &arrears),
        miliki_events::Event::new("/miliki/payments", now, &late),
    ];
    let state = miliki_credit::AppState::new(credit(&app).clone()).unwrap();
    let consumer = miliki_credit::events::Consumer { state };
    use miliki_events::EventHandler;
    for e in events.iter().chain(events.iter()) {
        consumer.handle(e).await.unwrap();
    }
    let (_, after) = app.get(&path, Some(&s.agent.token)).await;
    let causes: Vec<&str> = after["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["cause"].as_str().unwrap())
        .collect();
    assert_eq!(
        causes,
        vec!["application", "arrears_changed", "late_payment"],
        "{after}"
    );
    assert!(after["score"].as_i64().unwrap() < first["score"].as_i64().unwrap());
    let reasons = after["reasons"].to_string();
    assert!(reasons.contains("12 days past due now"), "{reasons}");

    // Who may look.
    let (status, _) = app.get(&path, Some(&s.admin.token)).await;
    assert_eq!(status, StatusCode::OK);
    let stranger = app.customer().await;
    let other_agent = app.agent().await;
    for token in [&stranger.token, &other_agent.token] {
        let (status, b) = app.get(&path, Some(token)).await;
        assert_problem(status, &b, StatusCode::NOT_FOUND, "not-found");
    }
    let (status, b) = app.get(&path, None).await;
    assert_problem(status, &b, StatusCode::UNAUTHORIZED, "unauthenticated");
    let _ = json!({});
    app.stop().await;
}

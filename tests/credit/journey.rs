//! The whole journey in one embedded process: registered by an agent → KYC
//! approved → bike reserved → application with a statement → approved with a
//! quote → accepted → contract in payments → deposit paid by the customer
//! by M-Pesa STK push (through the sandbox) → the bike under contract, the
//! score recording the payment.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::payment_support::{deposit_due, key as idempotency_key, post_idem};
use crate::support::*;

#[tokio::test]
async fn from_registration_to_a_bike_under_contract() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let mut application = body(&s, 40_000_00, 52, 50_000_00);
    application["customer_id"] = json!(s.customer.id);
    let csv = statement(&Shape::steady(50_000_00));
    let (status, a) = apply_multipart(&app, &s.agent.token, &application, Some(&csv)).await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!(a["status"], "approved", "{a}");
    let id = a["id"].as_str().unwrap();

    // The customer accepts; the same Idempotency-Key replays the answer.
    let key = uuid::Uuid::now_v7().to_string();
    let send = || {
        app.client
            .post(app.url(&format!("/api/v1/applications/{id}/accept")))
            .bearer_auth(&s.customer.token)
            .header("Idempotency-Key", &key)
            .json(&json!({}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let accepted: serde_json::Value = first.json().await.unwrap();
    assert_eq!(accepted["status"], "accepted");
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.headers().get("idempotent-replayed").is_some());
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/applications/{id}/accept")))
        .bearer_auth(&s.customer.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "no key, no accept");

    // Payments wrote the contract from credit.application.accepted.v1.
    let c = app
        .eventually("payments to write the contract", || async {
            let (_, page) = app.get("/api/v1/contracts", Some(&s.agent.token)).await;
            page["items"].as_array().and_then(|i| i.first().cloned())
        })
        .await;
    assert_eq!(c["application_id"], a["id"]);
    assert_eq!(c["reservation_id"], s.reservation_id);
    assert_eq!(
        c["total_payable_minor"],
        a["offer"]["quote"]["total_payable_minor"]
    );
    let cid = c["id"].as_str().unwrap();
    let (_, detail) = app
        .get(&format!("/api/v1/contracts/{cid}"), Some(&s.customer.token))
        .await;

    // The customer pays the deposit from the app: an STK push to their phone.
    let (status, prompt, _) = post_idem(
        &app,
        &format!("/api/v1/contracts/{cid}/payments"),
        &s.customer.token,
        Some(&idempotency_key()),
        json!({"amount_minor": deposit_due(&detail), "method": "mpesa", "phone": "+254711000200"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{prompt}");
    let pid = prompt["id"].as_str().unwrap();
    app.eventually("the deposit to be confirmed and credited", || async {
        let (_, p) = app
            .get(&format!("/api/v1/payments/{pid}"), Some(&s.customer.token))
            .await;
        (p["status"] == "succeeded").then_some(())
    })
    .await;
    let (_, detail) = app
        .get(&format!("/api/v1/contracts/{cid}"), Some(&s.customer.token))
        .await;
    assert_eq!(detail["status"], "active");
    app.eventually("the bike to go under contract", || async {
        let (_, v) = app
            .get(
                &format!("/api/v1/vehicles/{}", s.vehicle_id),
                Some(&s.admin.token),
            )
            .await;
        (v["status"] == "under_contract").then_some(())
    })
    .await;

    // The living score heard the activation and the on-time payment.
    let score = app
        .eventually("the score to record the payment", || async {
            let (_, sc) = app
                .get(
                    &format!("/api/v1/credit/customers/{}/score", s.customer.id),
                    Some(&s.customer.token),
                )
                .await;
            let causes: Vec<String> = sc["history"]
                .as_array()?
                .iter()
                .map(|h| h["cause"].as_str().unwrap_or_default().to_owned())
                .collect();
            causes.contains(&"on_time_payment".to_owned()).then_some(sc)
        })
        .await;
    assert_eq!(score["history"][0]["cause"], "application");
    // The offer no longer lapses once accepted.
    let (_, final_app) = app
        .get(
            &format!("/api/v1/applications/{id}"),
            Some(&s.customer.token),
        )
        .await;
    assert_eq!(final_app["status"], "accepted");
    app.stop().await;
}

#[tokio::test]
async fn an_offer_lapses_with_its_reservation() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let (status, a) = apply_multipart(
        &app,
        &s.customer.token,
        &body(&s, 40_000_00, 52, 50_000_00),
        Some(&statement(&Shape::steady(50_000_00))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!(a["status"], "approved");
    let (status, b) = app
        .send(
            reqwest::Method::DELETE,
            &format!(
                "/api/v1/reservations/{}?reason=changed%20my%20mind",
                s.reservation_id
            ),
            Some(&s.customer.token),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {b}");
    let id = a["id"].as_str().unwrap();
    let lapsed = app
        .eventually("the offer to lapse", || async {
            let (_, now) = app
                .get(
                    &format!("/api/v1/applications/{id}"),
                    Some(&s.customer.token),
                )
                .await;
            (now["status"] == "lapsed").then_some(now)
        })
        .await;
    let last = lapsed["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["reason"].as_str().unwrap().contains("cancelled"),
        "{last}"
    );
    assert!(last["actor_id"].is_null());
    let (status, b) = accept(&app, &s.customer.token, id, json!({})).await;
    assert_problem(status, &b, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn an_offer_lapses_when_the_hold_runs_out() {
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
    app.clock.advance(chrono::Duration::hours(49));
    let id = a["id"].as_str().unwrap().to_owned();
    let admin = app.login(&s.admin.phone, PASSWORD).await;
    let token = admin["access_token"].as_str().unwrap().to_owned();
    app.eventually("the offer to lapse", || async {
        let (_, now) = app
            .get(&format!("/api/v1/applications/{id}"), Some(&token))
            .await;
        (now["status"] == "lapsed").then_some(())
    })
    .await;
    app.stop().await;
}

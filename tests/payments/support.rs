//! Helpers for payments tests: products, contracts, idempotent posts.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::*;

/// A weekly flat-rate boda-boda plan in KES.
pub fn boda_product() -> Value {
    json!({
        "name": "Boda weekly",
        "vehicle_types": ["motorcycle"],
        "currency": "KES",
        "frequency": "weekly",
        "term_periods_min": 26,
        "term_periods_max": 104,
        "interest_method": "flat",
        "annual_rate_bps": 3000,
        "min_deposit_bps": 2000,
        "processing_fee_bps": 200,
        "late_fee": {"kind": "fixed", "amount_minor": 500_00, "grace_days": 2}
    })
}

/// A short monthly declining-balance plan, handy for paying off in a test.
pub fn monthly_product() -> Value {
    json!({
        "name": "Car monthly",
        "vehicle_types": ["car"],
        "currency": "KES",
        "frequency": "monthly",
        "term_periods_min": 1,
        "term_periods_max": 60,
        "interest_method": "declining_balance",
        "amortization": "equal_installments",
        "annual_rate_bps": 1800,
        "min_deposit_bps": 1000,
        "processing_fee_bps": 100,
        "late_fee": {"kind": "percent_of_overdue", "rate_bps": 500, "grace_days": 3}
    })
}

pub async fn spawn() -> TestApp {
    TestApp::spawn_with(|s| {
        s.extra.insert("payments_arrears_poll_ms".into(), json!(20));
    })
    .await
}

pub async fn create_product(app: &TestApp, admin: &Account, body: Value) -> Value {
    let (status, product) = app.post("/api/v1/products", Some(&admin.token), body).await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    product
}

/// POST with an `Idempotency-Key`; `None` sends none.
pub async fn post_idem(
    app: &TestApp,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, Value, bool) {
    let mut req = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let replayed = resp.headers().get("idempotent-replayed").is_some();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        replayed,
    )
}

pub fn key() -> String {
    Uuid::now_v7().to_string()
}

/// A contract body for `customer` on a fresh vehicle.
pub fn contract_body(
    product: &Value,
    customer: Uuid,
    price_minor: i64,
    deposit_minor: i64,
    term: i64,
) -> Value {
    json!({
        "customer_id": customer,
        "vehicle_id": Uuid::now_v7(),
        "product_id": product["id"],
        "price_minor": price_minor,
        "currency": "KES",
        "deposit_minor": deposit_minor,
        "term_periods": term,
    })
}

pub async fn create_contract(app: &TestApp, admin: &Account, body: Value) -> Value {
    let (status, contract, _) =
        post_idem(app, "/api/v1/contracts", &admin.token, Some(&key()), body).await;
    assert_eq!(status, StatusCode::CREATED, "{contract}");
    contract
}

pub async fn pay(app: &TestApp, token: &str, contract: &str, amount: i64) -> (StatusCode, Value) {
    let (status, body, _) = post_idem(
        app,
        &format!("/api/v1/contracts/{contract}/payments"),
        token,
        Some(&key()),
        json!({"amount_minor": amount, "method": "cash"}),
    )
    .await;
    (status, body)
}

/// What installment 0 (deposit and processing fee) asks for.
pub fn deposit_due(contract: &Value) -> i64 {
    contract["schedule"][0]["total_minor"]
        .as_i64()
        .expect("deposit line")
}

pub async fn contract(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, c) = app
        .get(&format!("/api/v1/contracts/{id}"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    c
}

/// Waits until the payments service has heard that `agent` onboarded `customer`.
pub async fn wait_for_customer(app: &TestApp, customer: Uuid) {
    let db = app.runtime().deps("payments").expect("payments").db.clone();
    app.eventually("the customer's registration to reach payments", || {
        let db = db.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM customers_seen WHERE user_id = $1")
                    .bind(customer.to_string())
                    .fetch_one(db.reader())
                    .await
                    .ok()?;
            (n == 1).then_some(())
        }
    })
    .await;
}

/// Moves the clock and signs `accounts` in again (access tokens last minutes).
pub async fn advance_days(app: &TestApp, days: i64, accounts: &mut [&mut Account]) {
    app.clock.advance(chrono::Duration::days(days));
    for a in accounts.iter_mut() {
        let tokens = app.login(&a.phone, PASSWORD).await;
        a.token = tokens["access_token"].as_str().unwrap().to_owned();
    }
}

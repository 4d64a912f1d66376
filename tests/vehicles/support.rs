//! Helpers for vehicle tests: unique vehicles, KYC-approved customers.

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn letter(n: u64) -> char {
    (b'A' + (n % 26) as u8) as char
}

/// A fresh (VIN, plate) pair no other vehicle in this test binary has.
pub fn unique_ids() -> (String, String) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + 1000;
    let salt = (uuid::Uuid::now_v7().as_u128() % 1000) as u64;
    let serial = n * 1000 + salt;
    (
        format!("JTDT{:013}", serial),
        format!(
            "KD{}{} {:03}{}",
            letter(serial / 26_000),
            letter(serial / 676_000),
            serial % 1000,
            letter(serial / 1000)
        ),
    )
}

/// A valid car listing body, with unique VIN and plate.
pub fn car() -> Value {
    let (vin, plate) = unique_ids();
    json!({
        "type": "car",
        "make": "Toyota",
        "model": "Fielder",
        "year": 2018,
        "colour": "silver",
        "vin": vin,
        "registration": plate,
        "mileage_km": 84000,
        "condition": "used",
        "fuel": "hybrid",
        "branch": "Nairobi CBD",
        "latitude": -1.2841,
        "longitude": 36.8233,
        "price_minor": 1_450_000_00i64,
        "currency": "KES",
        "cost_price_minor": 1_200_000_00i64,
        "notes": "bought at auction",
        "description": "Clean hybrid, ideal for ride-hailing",
        "seats": 5,
        "transmission": "automatic"
    })
}

pub fn motorcycle() -> Value {
    let (vin, plate) = unique_ids();
    json!({
        "type": "motorcycle",
        "make": "Bajaj",
        "model": "Boxer BM150",
        "year": 2025,
        "colour": "red",
        "vin": vin,
        "registration": plate.replacen("KD", "KMD", 1),
        "mileage_km": 0,
        "condition": "new",
        "fuel": "petrol",
        "branch": "Kisumu",
        "latitude": -0.0917,
        "longitude": 34.7680,
        "price_minor": 165_000_00i64,
        "currency": "KES",
        "description": "Boda boda workhorse",
        "engine_cc": 150
    })
}

/// Merges `changes` into `base`.
pub fn with(mut base: Value, changes: Value) -> Value {
    if let (Some(b), Some(c)) = (base.as_object_mut(), changes.as_object()) {
        for (k, v) in c {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

pub async fn list_vehicle(app: &TestApp, admin: &Account, body: Value) -> Value {
    let (status, v) = app.post("/api/v1/vehicles", Some(&admin.token), body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v
}

pub fn vehicles(app: &TestApp) -> &miliki_events::service::ServiceDeps {
    app.runtime().deps("vehicles").expect("vehicles service")
}

/// Approves `customer`'s KYC through the users API and waits until the
/// vehicles service has learned it from the event.
pub async fn approve_kyc(app: &TestApp, admin: &Account, customer: &Account) {
    let (status, submission) = app
        .submit_kyc(&customer.token, kyc_form("national_id", "2345 6789", None))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{submission}");
    let id = submission["id"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/v1/kyc/submissions/{id}/decision"),
            Some(&admin.token),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let db = vehicles(app).db.clone();
    let who = customer.id;
    app.eventually("vehicles to learn the KYC approval", || {
        let db = db.clone();
        async move {
            miliki_events::standing::standing(&db, who)
                .await
                .ok()
                .filter(|s| s.kyc_approved)
        }
    })
    .await;
}

/// A customer whose KYC is approved.
pub async fn eligible_customer(app: &TestApp, admin: &Account) -> Account {
    let c = app.customer().await;
    approve_kyc(app, admin, &c).await;
    c
}

pub async fn patch(
    app: &TestApp,
    path: &str,
    token: &str,
    if_match: Option<&str>,
    body: Value,
) -> (StatusCode, Value, Option<String>) {
    let mut req = app
        .client
        .patch(app.url(path))
        .bearer_auth(token)
        .json(&body);
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        etag,
    )
}

pub async fn get_with_etag(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value, String) {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, resp.json().await.unwrap_or(Value::Null), etag)
}

pub async fn delete(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    app.send(reqwest::Method::DELETE, path, Some(token), None)
        .await
}

/// How many vehicles the inventory has, straight from the service's database.
pub async fn vehicle_count(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM vehicles")
        .fetch_one(vehicles(app).db.reader())
        .await
        .unwrap()
}

//! Helpers for credit tests: statements, reserved vehicles, applications.

use std::fmt::Write;

use chrono::{Duration, NaiveDate};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::payment_support::{boda_product, create_product};
use crate::vehicle_support::{approve_kyc, list_vehicle, motorcycle};

pub const HEADER: &str =
    "Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn,Balance\n";

/// A statement shape: per week, how many fares of how much come in, and what goes out.
pub struct Shape {
    pub weeks: i64,
    /// Weeks (0 = the first) in which money comes in.
    pub income_weeks: Vec<i64>,
    pub fares_per_week: i64,
    pub fare_minor: i64,
    /// Distinct payers the fares rotate through.
    pub payers: i64,
    pub betting_per_week_minor: i64,
    pub other_out_per_week_minor: i64,
    pub failed: i64,
}

impl Shape {
    /// A busy rider: paid every week by many passengers, no betting.
    pub fn steady(monthly_minor: i64) -> Self {
        let weekly = monthly_minor * 12 / 52;
        Self {
            weeks: 13,
            income_weeks: (0..13).collect(),
            fares_per_week: 20,
            fare_minor: weekly / 20,
            payers: 40,
            betting_per_week_minor: 0,
            other_out_per_week_minor: weekly / 2,
            failed: 0,
        }
    }

    /// Money in 5 weeks out of 13, few payers, heavy betting, failures.
    pub fn shaky() -> Self {
        Self {
            weeks: 13,
            income_weeks: vec![0, 3, 6, 9, 12],
            fares_per_week: 3,
            fare_minor: 1_500_00,
            payers: 2,
            betting_per_week_minor: 1_500_00,
            other_out_per_week_minor: 500_00,
            failed: 4,
        }
    }
}

/// A CSV statement of `shape`, as M-Pesa exports it.
pub fn statement(shape: &Shape) -> String {
    let start = NaiveDate::from_ymd_opt(2025, 12, 1).unwrap();
    let mut out = HEADER.to_owned();
    let mut balance: i64 = 2_000_00;
    let mut n = 0;
    let mut receipt = || {
        n += 1;
        format!("TB{n:08}")
    };
    let amount = |m: i64| format!("{}.{:02}", m / 100, m % 100);
    for w in 0..shape.weeks {
        let day = start + Duration::days(w * 7);
        if shape.income_weeks.contains(&w) {
            for f in 0..shape.fares_per_week {
                balance += shape.fare_minor;
                let payer = (w * shape.fares_per_week + f) % shape.payers.max(1);
                writeln!(
                    out,
                    "{},{} 08:{:02}:00,Funds received from 07120{:05} - PASSENGER {payer},Completed,\"{}\",,\"{}\"",
                    receipt(),
                    day + Duration::days(f % 6),
                    f % 60,
                    payer,
                    amount(shape.fare_minor),
                    amount(balance)
                )
                .unwrap();
            }
        }
        let out_amount = shape.other_out_per_week_minor.min(balance);
        if out_amount > 0 {
            balance -= out_amount;
            writeln!(
                out,
                "{},{} 19:00:00,Merchant Payment to 522533 - FUEL STATION,Completed,,-{},{}",
                receipt(),
                day + Duration::days(6),
                amount(out_amount),
                amount(balance)
            )
            .unwrap();
        }
        let bet = shape.betting_per_week_minor.min(balance);
        if bet > 0 {
            balance -= bet;
            writeln!(
                out,
                "{},{} 21:00:00,Pay Bill Online to 955100 - SportPesa Acc. 2547,Completed,,-{},{}",
                receipt(),
                day + Duration::days(6),
                amount(bet),
                amount(balance)
            )
            .unwrap();
        }
    }
    for f in 0..shape.failed {
        writeln!(
            out,
            "{},{} 12:00:00,Customer Transfer to 0722000111 - JOHN,Failed,,-100.00,{}",
            receipt(),
            start + Duration::days(f + 1),
            amount(balance)
        )
        .unwrap();
    }
    out
}

/// A customer in an agent's book with KYC approved, a listed bike reserved
/// by them, and a boda product.
pub struct Setup {
    pub admin: Account,
    pub agent: Account,
    pub customer: Account,
    pub vehicle_id: String,
    pub reservation_id: String,
    pub product_id: String,
}

pub async fn setup(app: &TestApp) -> Setup {
    let admin = app.admin().await;
    let agent = app.agent().await;
    let product = create_product(app, &admin, boda_product()).await;
    setup_with(app, admin, agent, product["id"].as_str().unwrap()).await
}

/// Another reserved customer on an existing product.
pub async fn setup_with(app: &TestApp, admin: Account, agent: Account, product_id: &str) -> Setup {
    let customer = app.customer_of(&agent).await;
    approve_kyc(app, &admin, &customer).await;
    let bike = list_vehicle(app, &admin, motorcycle()).await;
    let vehicle_id = bike["id"].as_str().unwrap().to_owned();
    let (status, reservation) = app
        .post(
            &format!("/api/v1/vehicles/{vehicle_id}/reservations"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reservation}");
    let s = Setup {
        admin,
        agent,
        customer,
        vehicle_id,
        reservation_id: reservation["id"].as_str().unwrap().to_owned(),
        product_id: product_id.to_owned(),
    };
    wait_for_reservation(app, &s).await;
    s
}

pub fn credit(app: &TestApp) -> &miliki_events::service::ServiceDeps {
    app.runtime().deps("credit").expect("credit service")
}

/// Waits until credit has learned the reservation, the price and the KYC.
pub async fn wait_for_reservation(app: &TestApp, s: &Setup) {
    let db = credit(app).db.clone();
    let (r, v, c) = (
        s.reservation_id.clone(),
        s.vehicle_id.clone(),
        s.customer.id.to_string(),
    );
    app.eventually("credit to learn the reservation", || {
        let (db, r, v, c) = (db.clone(), r.clone(), v.clone(), c.clone());
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM reservations_seen WHERE reservation_id = $1) \
                 + (SELECT COUNT(*) FROM vehicles_seen WHERE vehicle_id = $2) \
                 + (SELECT COUNT(*) FROM user_standing WHERE user_id = $3 AND kyc_approved = 1)",
            )
            .bind(r)
            .bind(v)
            .bind(c)
            .fetch_one(db.reader())
            .await
            .ok()?;
            (n == 3).then_some(())
        }
    })
    .await;
}

/// A JSON application body for `s`.
pub fn body(s: &Setup, deposit: i64, term: i64, monthly_income: i64) -> Value {
    json!({
        "vehicle_id": s.vehicle_id,
        "product_id": s.product_id,
        "deposit_minor": deposit,
        "term_periods": term,
        "occupation": "boda_rider",
        "income": {"declared_minor": monthly_income, "frequency": "monthly"},
    })
}

/// Submits an application as multipart, with an optional statement.
pub async fn apply_multipart(
    app: &TestApp,
    token: &str,
    application: &Value,
    statement: Option<&str>,
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new().part(
        "application",
        reqwest::multipart::Part::text(application.to_string())
            .mime_str("application/json")
            .unwrap(),
    );
    if let Some(s) = statement {
        form = form.part(
            "statement",
            reqwest::multipart::Part::bytes(s.as_bytes().to_vec())
                .file_name("statement.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    }
    let resp = app
        .client
        .post(app.url("/api/v1/applications"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// POST with an Idempotency-Key.
pub async fn accept(app: &TestApp, token: &str, id: &str, body: Value) -> (StatusCode, Value) {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/applications/{id}/accept")))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn points_of(application: &Value, feature: &str) -> i64 {
    application["score"]["points"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["feature"] == feature))
        .and_then(|p| p["points"].as_i64())
        .unwrap_or_else(|| panic!("no points for {feature}: {application}"))
}

pub async fn approve(app: &TestApp, admin: &Account, customer: &Account) {
    approve_kyc(app, admin, customer).await;
}

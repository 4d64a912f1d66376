//! From a reserved vehicle to ownership, with the simulated clock: the
//! contract activates (vehicles puts the bike under contract), installments
//! fall due as the clock moves, the last payment pays it off (vehicles marks
//! it owned), and the handover steps end in `ownership_transferred`.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::support::*;
use crate::vehicle_support::{eligible_customer, list_vehicle, motorcycle, vehicles};

async fn vehicle_status(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM vehicles WHERE id = $1")
        .bind(id)
        .fetch_one(vehicles(app).db.reader())
        .await
        .expect("vehicle")
}

#[tokio::test]
async fn a_contract_runs_from_deposit_to_ownership() {
    let app = TestApp::spawn_with(|s| {
        s.extra.insert("payments_arrears_poll_ms".into(), json!(20));
        s.extra.insert("simulated_clock".into(), json!(true));
    })
    .await;
    let mut admin = app.admin().await;
    let mut customer = eligible_customer(&app, &admin).await;
    let bike = list_vehicle(&app, &admin, motorcycle()).await;
    let vehicle_id = bike["id"].as_str().unwrap().to_owned();
    let (status, reservation) = app
        .post(
            &format!("/api/v1/vehicles/{vehicle_id}/reservations"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reservation}");
    let mut product = boda_product();
    product["frequency"] = json!("monthly");
    product["term_periods_min"] = json!(3);
    product["term_periods_max"] = json!(12);
    let p = create_product(&app, &admin, product).await;

    // Payments learned the bike's price from the listing event: quote by vehicle.
    let q = app
        .eventually("payments to learn the vehicle", || async {
            let (status, q) = app
                .post(
                    "/api/v1/quotes",
                    Some(&customer.token),
                    json!({"product_id": p["id"], "vehicle_id": vehicle_id, "deposit_minor": 40_000_00, "term_periods": 3}),
                )
                .await;
            (status == StatusCode::OK).then_some(q)
        })
        .await;
    assert_eq!(q["principal_minor"], 125_000_00);

    let body = json!({
        "customer_id": customer.id, "vehicle_id": vehicle_id, "reservation_id": reservation["id"],
        "product_id": p["id"], "price_minor": 165_000_00, "currency": "KES",
        "deposit_minor": 40_000_00, "term_periods": 3
    });
    let c = create_contract(&app, &admin, body).await;
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["total_payable_minor"], q["total_payable_minor"]);
    let (_, r) = pay(&app, &admin.token, &id, deposit_due(&c)).await;
    assert_eq!(r["contract"]["status"], "active");
    app.eventually("vehicles to put the bike under contract", || async {
        (vehicle_status(&app, &vehicle_id).await == "under_contract").then_some(())
    })
    .await;

    // Five weeks later (simulated): the first installment is overdue and fined.
    let (status, moved) = app
        .post(
            "/api/v1/simulation/clock",
            Some(&admin.token),
            json!({"advance_days": 35}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["today"], "2026-04-06");
    let tokens = app.login(&admin.phone, PASSWORD).await;
    admin.token = tokens["access_token"].as_str().unwrap().to_owned();
    let tokens = app.login(&customer.phone, PASSWORD).await;
    customer.token = tokens["access_token"].as_str().unwrap().to_owned();
    let d = contract(&app, &customer.token, &id).await;
    assert_eq!(d["days_past_due"], 4);
    assert_eq!(d["schedule"][1]["state"], "overdue");
    assert_eq!(d["balances"]["outstanding_penalties_minor"], 500_00);

    // The payoff quote covers everything; paying it pays the contract off.
    let (_, quote) = app
        .post(
            &format!("/api/v1/contracts/{id}/payoff-quote"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    let (_, r) = pay(
        &app,
        &admin.token,
        &id,
        quote["amount_minor"].as_i64().unwrap(),
    )
    .await;
    assert_eq!(r["contract"]["status"], "paid_off", "{r}");
    app.eventually("vehicles to mark the bike owned", || async {
        (vehicle_status(&app, &vehicle_id).await == "owned").then_some(())
    })
    .await;

    // The handover.
    let path = format!("/api/v1/contracts/{id}/ownership-transfer");
    let (status, h) = app.get(&path, Some(&customer.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["complete"], false);
    let (status, body) = app
        .post(
            &path,
            Some(&customer.token),
            json!({"step": "lien_released"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"step": "logbook_handed_over"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["reference"]);
    let (status, body) = app
        .post(&path, Some(&admin.token), json!({"step": "keys"}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, _) = app
        .post(&path, Some(&admin.token), json!({"step": "lien_released"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post(&path, Some(&admin.token), json!({"step": "lien_released"}))
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    app.post(
        &path,
        Some(&admin.token),
        json!({"step": "logbook_handed_over", "reference": "LB-2026-0042"}),
    )
    .await;
    let (status, h) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"step": "tracker_decommissioned"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert_eq!(h["complete"], true);
    assert_eq!(h["status"], "ownership_transferred");
    assert_eq!(h["steps"][1]["reference"], "LB-2026-0042");
    let d = contract(&app, &customer.token, &id).await;
    assert_eq!(d["status"], "ownership_transferred");
    app.stop().await;
}

#[tokio::test]
async fn the_clock_route_exists_only_with_the_flag_and_only_for_admins() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (status, _) = app
        .post(
            "/api/v1/simulation/clock",
            Some(&admin.token),
            json!({"advance_days": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;

    let app = TestApp::spawn_with(|s| {
        s.extra.insert("simulated_clock".into(), json!(true));
    })
    .await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let (status, body) = app
        .post(
            "/api/v1/simulation/clock",
            Some(&customer.token),
            json!({"advance_days": 1}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            "/api/v1/simulation/clock",
            Some(&admin.token),
            json!({"advance_days": -1}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["advance_days"]);
    let (status, body) = app
        .post("/api/v1/simulation/clock", Some(&admin.token), json!({}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, moved) = app
        .post(
            "/api/v1/simulation/clock",
            Some(&admin.token),
            json!({"advance_secs": 7200}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["now"], "2026-03-02T10:00:00Z");
    app.stop().await;
}

#[tokio::test]
async fn production_refuses_the_simulated_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path()).await;
    settings.extra.insert("simulated_clock".into(), json!(true));
    settings.env = miliki_platform::config::Environment::Production;
    // Production also demands configured secrets and a database URL; give
    // them so only the clock is at issue.
    settings
        .extra
        .entry("payments_database_url".into())
        .or_insert_with(|| {
            json!(format!(
                "sqlite://{}",
                dir.path().join("payments.db").display()
            ))
        });
    settings.jwt_secret = Some("a".repeat(48));
    settings.encryption_keys = Some(format!("k1:{}", base64_key()));
    settings.encryption_active_key = Some("k1".into());
    settings.blind_index_key = Some(base64_key());
    let clock = std::sync::Arc::new(miliki_platform::clock::ManualClock::new(chrono::Utc::now()));
    let kernel = miliki::runtime::Kernel::new(settings, clock)
        .await
        .expect("kernel");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = miliki::runtime::Runtime::start(
        kernel,
        miliki::runtime::Role::Service("payments".into()),
        listener,
    )
    .await;
    let err = started.err().expect("refused");
    assert!(format!("{err:#}").contains("simulated clock"), "{err:#}");
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

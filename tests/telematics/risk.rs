//! Risk events: each kind, raised once per episode, acknowledged by staff, published.

use std::time::Duration;

use chrono::{DateTime, Utc};
use miliki_platform::clock::Clock;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::common::*;
use crate::support::*;

fn secs(t: DateTime<Utc>, s: i64) -> DateTime<Utc> {
    t + chrono::Duration::seconds(s)
}

async fn listed_motorcycle(app: &TestApp, admin: &Account) -> Uuid {
    let (status, v) = app
        .post(
            "/api/v1/vehicles",
            Some(&admin.token),
            json!({"type": "motorcycle", "make": "Bajaj", "model": "Boxer BM150", "year": 2025, "colour": "red",
                "vin": format!("MD2A{:013}", Uuid::now_v7().as_u128() % 10_000_000_000_000),
                "registration": format!("KMD{:03}{}", Uuid::now_v7().as_u128() % 1000, "X"),
                "mileage_km": 0, "condition": "new", "fuel": "petrol", "branch": "Nairobi CBD",
                "latitude": -1.2864, "longitude": 36.8172, "price_minor": 16_500_000, "currency": "KES", "engine_cc": 150}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id: Uuid = v["id"].as_str().unwrap().parse().unwrap();
    let db = telematics(app).db.clone();
    app.eventually("telematics to learn the vehicle type", || {
        let db = db.clone();
        async move {
            let t: Option<Option<String>> =
                sqlx::query_scalar("SELECT vehicle_type FROM vehicles WHERE vehicle_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(db.reader())
                    .await
                    .ok()?;
            (t.flatten().as_deref() == Some("motorcycle")).then_some(())
        }
    })
    .await;
    id
}

async fn wait_kinds(
    app: &TestApp,
    token: &str,
    vehicle: Uuid,
    want: &[&str],
) -> Vec<serde_json::Value> {
    app.eventually("risk events", || async {
        let all = risks(app, token, vehicle).await;
        let k = kinds(&all);
        want.iter().all(|w| k.iter().any(|x| x == w)).then_some(all)
    })
    .await
}

#[tokio::test]
async fn sustained_overspeed_for_the_vehicle_type_and_harsh_driving() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let moto = listed_motorcycle(&app, &admin).await;
    let d = register(&app, &admin, "teltonika", moto).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    let t0 = app.clock.now() - chrono::Duration::minutes(10);
    // 95 km/h for 40 s: over a motorcycle's 80, for longer than 30 s. A car's limit would not trip.
    let fast: Vec<_> = (0..5)
        .map(|i| record(secs(t0, i * 10), -1.28, 36.82, 95, true, &[]))
        .collect();
    assert_eq!(t.report(&fast).await, 5);
    // Then 95 → 20 km/h in 2 s, and 10 → 45 in 2 s later.
    let harsh = vec![
        record(secs(t0, 100), -1.28, 36.82, 60, true, &[]),
        record(secs(t0, 102), -1.28, 36.82, 20, true, &[]),
        record(secs(t0, 200), -1.28, 36.82, 10, true, &[]),
        record(secs(t0, 202), -1.28, 36.82, 45, true, &[]),
    ];
    assert_eq!(t.report(&harsh).await, 4);
    let all = wait_kinds(
        &app,
        &admin.token,
        moto,
        &["overspeed", "harsh_braking", "harsh_acceleration"],
    )
    .await;
    let k = kinds(&all);
    assert_eq!(k.iter().filter(|x| *x == "overspeed").count(), 1, "{k:?}");
    let over = all.iter().find(|e| e["kind"] == "overspeed").unwrap();
    assert_eq!(over["details"]["limit_kmh"], 80.0);
    assert_eq!(over["severity"], "warning");
    // And each went out as telematics.risk.detected.v1.
    let published: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE event_type = 'telematics.risk.detected.v1'",
    )
    .fetch_one(telematics(&app).db.reader())
    .await
    .unwrap();
    assert_eq!(published, 3);
}

#[tokio::test]
async fn tracker_alarms_raise_once_per_episode() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    let t0 = app.clock.now() - chrono::Duration::minutes(30);
    let recs = vec![
        // Power cut twice in a row: one event.
        record(secs(t0, 0), -1.28, 36.82, 0, false, &[(252, 1)]),
        record(secs(t0, 10), -1.28, 36.82, 0, false, &[(252, 1)]),
        record(secs(t0, 20), -1.28, 36.82, 0, false, &[(249, 1)]),
        record(secs(t0, 30), -1.28, 36.82, 0, false, &[(246, 1)]),
        record(secs(t0, 40), -1.28, 36.82, 30, true, &[(247, 1)]),
        record(secs(t0, 50), -1.28, 36.82, 30, true, &[(32, 120)]),
        record(secs(t0, 60), -1.28, 36.82, 30, true, &[]),
    ];
    assert_eq!(t.report(&recs).await, 7);
    // A low battery (external 11.0 V) at the end.
    let mut low = record(secs(t0, 70), -1.28, 36.82, 30, true, &[]);
    low.io.retain(|(k, _)| *k != 66);
    low.io.push((
        66,
        miliki_telematics::protocol::teltonika::IoValue::Int(11_000),
    ));
    assert_eq!(t.report(&[low]).await, 1);
    let all = wait_kinds(
        &app,
        &admin.token,
        vehicle,
        &[
            "power_cut",
            "jamming",
            "tamper",
            "crash",
            "engine_fault",
            "low_battery",
        ],
    )
    .await;
    let k = kinds(&all);
    assert_eq!(k.iter().filter(|x| *x == "power_cut").count(), 1, "{k:?}");
    assert_eq!(
        all.iter().find(|e| e["kind"] == "crash").unwrap()["severity"],
        "critical"
    );
}

#[tokio::test]
async fn geofence_exit_and_entry_with_confirmation() {
    let app = spawn().await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let (status, body) = app
        .post("/api/v1/telematics/geofences", Some(&admin.token), json!({"name": "Nairobi CBD", "shape": {"type": "circle", "lat": -1.2864, "lon": 36.8172, "radius_m": 2000}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post("/api/v1/telematics/geofences", Some(&admin.token), json!({"name": "", "shape": {"type": "polygon", "points": [[0, 0]]}, "vehicle_id": "x"}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body).len(), 3, "{body}");
    let customer = app.customer().await;
    let (status, body) = app
        .post(
            "/api/v1/telematics/geofences",
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .get("/api/v1/telematics/geofences", Some(&customer.token))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, spare) = app
        .post("/api/v1/telematics/geofences", Some(&admin.token), json!({"name": "Depot", "shape": {"type": "polygon", "points": [[-1.30, 36.84], [-1.30, 36.86], [-1.32, 36.86]]}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{spare}");
    let gone = format!(
        "/api/v1/telematics/geofences/{}",
        spare["id"].as_str().unwrap()
    );
    let (status, body) = app
        .send(reqwest::Method::DELETE, &gone, Some(&customer.token), None)
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, _) = app
        .send(reqwest::Method::DELETE, &gone, Some(&admin.token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .send(reqwest::Method::DELETE, &gone, Some(&admin.token), None)
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    let (status, fences) = app
        .get("/api/v1/telematics/geofences", Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fences.as_array().unwrap().len(), 1);

    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    let t0 = app.clock.now() - chrono::Duration::minutes(30);
    let path = [
        (-1.2864, 0),
        (-1.40, 10),
        (-1.41, 20),
        (-1.2870, 30),
        (-1.2871, 40),
    ];
    let recs: Vec<_> = path
        .iter()
        .map(|(lat, s)| record(secs(t0, *s), *lat, 36.8172, 20, true, &[]))
        .collect();
    assert_eq!(t.report(&recs).await, 5);
    let all = wait_kinds(
        &app,
        &admin.token,
        vehicle,
        &["geofence_exit", "geofence_entry"],
    )
    .await;
    let exit = all.iter().find(|e| e["kind"] == "geofence_exit").unwrap();
    assert_eq!(exit["details"]["geofence"], "Nairobi CBD");
    assert_eq!(kinds(&all).len(), 2);
}

#[tokio::test]
async fn movement_in_the_curfew_window_and_devices_gone_silent() {
    let app = TestApp::spawn_with(|s| {
        s.extra.insert("telematics_job_poll_ms".into(), "20".into());
        s.extra
            .insert("telematics_curfew".into(), "22:00-05:00".into());
        s.extra
            .insert("telematics_offline_after_secs".into(), "600".into());
    })
    .await;
    let admin = app.admin().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    // The test clock is 08:00 UTC (11:00 in Nairobi): 20:00 UTC the day before is 23:00 there.
    let night = app.clock.now() - chrono::Duration::hours(12);
    let recs = vec![
        record(night, -1.28, 36.82, 40, true, &[]),
        record(secs(night, 10), -1.281, 36.82, 40, true, &[]),
        record(
            app.clock.now() - chrono::Duration::minutes(1),
            -1.282,
            36.82,
            40,
            true,
            &[],
        ),
    ];
    assert_eq!(t.report(&recs).await, 3);
    let all = wait_kinds(&app, &admin.token, vehicle, &["curfew"]).await;
    assert_eq!(kinds(&all), vec!["curfew"]);
    drop(t);

    // Ten minutes of silence by the service's clock.
    app.clock.advance(chrono::Duration::seconds(601));
    wait_kinds(&app, &admin.token, vehicle, &["device_offline"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = risks(&app, &admin.token, vehicle).await;
    assert_eq!(
        kinds(&all)
            .iter()
            .filter(|k| *k == "device_offline")
            .count(),
        1
    );
}

#[tokio::test]
async fn staff_acknowledge_risk_events() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    let other_agent = app.agent().await;
    let l = listeners(&app, &admin).await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    hold(&app, vehicle, &customer).await;
    let mut t = Tracker::online(l.teltonika, &d.imei).await;
    let t0 = app.clock.now() - chrono::Duration::minutes(1);
    assert_eq!(
        t.report(&[record(t0, -1.28, 36.82, 30, true, &[(247, 1)])])
            .await,
        1
    );
    let all = wait_kinds(&app, &customer.token, vehicle, &["crash"]).await;
    let id = all[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/telematics/events/{id}/acknowledge");

    let (status, body) = app.post(&path, Some(&customer.token), json!({})).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app.post(&path, Some(&other_agent.token), json!({})).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    let (status, body) = app
        .post(&path, Some(&agent.token), json!({"note": "x".repeat(1001)}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, body) = app
        .post(
            &path,
            Some(&agent.token),
            json!({"note": "called the rider; minor fall"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged_by"], agent.id.to_string());
    let (status, body) = app.post(&path, Some(&admin.token), json!({})).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (_, open) = app
        .get(
            &format!("/api/v1/telematics/events?acknowledged=false&vehicle_id={vehicle}"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(open["items"].as_array().unwrap().len(), 0);
    let (status, body) = app
        .get("/api/v1/telematics/events?kind=meteor", Some(&admin.token))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["kind"]);
    let (_, seen) = app
        .get("/api/v1/telematics/events", Some(&other_agent.token))
        .await;
    assert_eq!(seen["items"].as_array().unwrap().len(), 0);
}

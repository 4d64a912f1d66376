//! Reservations: KYC gating, one per vehicle and per customer under races,
//! cancellation and release, expiry by the clock, owners and roles.

use chrono::Duration;
use miliki_events::Event;
use miliki_platform::auth::Role;
use miliki_platform::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::*;
use crate::support::*;

async fn reserve(app: &TestApp, token: &str, vehicle: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/vehicles/{vehicle}/reservations"),
        Some(token),
        json!({}),
    )
    .await
}

async fn outbox_count(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(vehicles(app).db.reader())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_kyc_approved_customer_reserves_then_cancels() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let v1 = list_vehicle(&app, &admin, car()).await;
    let v2 = list_vehicle(&app, &admin, motorcycle()).await;
    let (id1, id2) = (v1["id"].as_str().unwrap(), v2["id"].as_str().unwrap());

    // Not yet verified: refused, and nothing changes.
    let (status, body) = reserve(&app, &customer.token, id1).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(body["detail"].as_str().unwrap().contains("KYC"));

    approve_kyc(&app, &admin, &customer).await;
    let (status, r) = reserve(&app, &customer.token, id1).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"], "active");
    assert_eq!(r["vehicle_id"], id1);
    let expires = chrono::DateTime::parse_from_rfc3339(r["expires_at"].as_str().unwrap()).unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(r["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, Duration::hours(48));
    let (_, seen) = app
        .get(&format!("/api/v1/vehicles/{id1}"), Some(&customer.token))
        .await;
    assert_eq!(
        (seen["status"].as_str(), seen["held_by_you"].as_bool()),
        (Some("reserved"), Some(true))
    );

    // One per customer, one per vehicle.
    let (status, body) = reserve(&app, &customer.token, id2).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let other = eligible_customer(&app, &admin).await;
    let (status, body) = reserve(&app, &other.token, id1).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (_, v2_now) = app
        .get(&format!("/api/v1/vehicles/{id2}"), Some(&admin.token))
        .await;
    assert_eq!(v2_now["status"], "available");

    // The customer's own list, then cancel.
    let (_, mine) = app.get("/api/v1/reservations", Some(&customer.token)).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let rid = r["id"].as_str().unwrap();
    let (status, cancelled) = delete(
        &app,
        &format!("/api/v1/reservations/{rid}?reason=changed%20my%20mind"),
        &customer.token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["end_reason"], "changed my mind");
    let (status, body) = delete(
        &app,
        &format!("/api/v1/reservations/{rid}"),
        &customer.token,
    )
    .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (_, seen) = app
        .get(&format!("/api/v1/vehicles/{id1}"), Some(&customer.token))
        .await;
    assert_eq!(seen["status"], "available");
    // Now free to reserve another.
    let (status, _) = reserve(&app, &customer.token, id2).await;
    assert_eq!(status, StatusCode::CREATED);

    assert_eq!(
        outbox_count(&app, "vehicles.reservation.created.v1").await,
        2
    );
    assert_eq!(
        outbox_count(&app, "vehicles.reservation.cancelled.v1").await,
        1
    );
    assert_eq!(
        outbox_count(&app, "vehicles.vehicle.status_changed.v1").await,
        3
    );
    app.stop().await;
}

#[tokio::test]
async fn fifty_customers_racing_for_one_vehicle_produce_one_winner() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let v = list_vehicle(&app, &admin, car()).await;
    let id = v["id"].as_str().unwrap().to_owned();
    // Fifty verified customers: tokens minted for new ids and their KYC
    // approval fed to the projection as the users service's event would be.
    let deps = vehicles(&app).clone();
    let mut tokens = Vec::new();
    for _ in 0..50 {
        let user = Uuid::now_v7();
        let event = Event::new(
            "/miliki/users",
            app.clock.now(),
            &miliki_events::catalogue::users::KycApproved {
                submission_id: Uuid::now_v7(),
                user_id: user,
                reviewed_by: admin.id,
            },
        );
        let mut tx = deps.db.begin().await.unwrap();
        miliki_events::standing::apply(&mut tx, &event)
            .await
            .unwrap();
        // And their credentials, as users.user.credentials_changed.v1 would.
        miliki_platform::credentials::Credentials::record(
            &mut tx,
            user,
            miliki_platform::credentials::Credential {
                role: Role::Customer,
                version: 0,
                active: true,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        tokens.push(
            app.runtime()
                .kernel
                .tokens
                .issue(user, Role::Customer, 0)
                .unwrap()
                .token,
        );
    }
    let attempts = tokens.iter().map(|t| {
        let (app, id) = (&app, id.clone());
        async move { reserve(app, t, &id).await }
    });
    let results = futures::future::join_all(attempts).await;
    let won = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let lost: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s != StatusCode::CREATED)
        .collect();
    assert_eq!(won, 1, "{results:?}");
    assert_eq!(lost.len(), 49);
    for (status, body) in lost {
        assert_problem(*status, body, StatusCode::CONFLICT, "conflict");
    }
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM reservations WHERE status = 'active'")
            .fetch_one(deps.db.reader())
            .await
            .unwrap();
    assert_eq!(active, 1);
    app.stop().await;
}

#[tokio::test]
async fn reservations_expire_by_the_clock() {
    let app = TestApp::spawn_with(|s| {
        s.extra.insert("vehicles_expiry_poll_ms".into(), 50.into());
    })
    .await;
    let admin = app.admin().await;
    let customer = eligible_customer(&app, &admin).await;
    let v = list_vehicle(&app, &admin, car()).await;
    let id = v["id"].as_str().unwrap();
    let (_, r) = reserve(&app, &customer.token, id).await;
    let rid = r["id"].as_str().unwrap().to_owned();

    app.clock.advance(Duration::hours(47));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Access tokens last minutes; two days later the customer logs in again.
    let token = app.login(&customer.phone, PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, still) = app
        .get(&format!("/api/v1/reservations/{rid}"), Some(&token))
        .await;
    assert_eq!(still["status"], "active");

    app.clock.advance(Duration::hours(1) + Duration::seconds(1));
    let token = app.login(&customer.phone, PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/reservations/{rid}");
    let expired = app
        .eventually("the reservation to expire", || async {
            let (_, r) = app.get(&path, Some(&token)).await;
            (r["status"] == "expired").then_some(r)
        })
        .await;
    assert!(expired["ended_by"].is_null());
    let (_, seen) = app
        .get(&format!("/api/v1/vehicles/{id}"), Some(&token))
        .await;
    assert_eq!(seen["status"], "available");
    assert_eq!(
        outbox_count(&app, "vehicles.reservation.expired.v1").await,
        1
    );
    // The vehicle can be reserved again.
    let (status, _) = reserve(&app, &token, id).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test]
async fn owners_and_roles_are_enforced() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let owner = eligible_customer(&app, &admin).await;
    let stranger = eligible_customer(&app, &admin).await;
    let v = list_vehicle(&app, &admin, car()).await;
    let id = v["id"].as_str().unwrap();

    for staff in [&admin, &agent] {
        let (status, body) = reserve(&app, &staff.token, id).await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    let (status, r) = reserve(&app, &owner.token, id).await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!("/api/v1/reservations/{}", r["id"].as_str().unwrap());

    // A stranger can neither see nor cancel it; an agent cannot release it.
    let (status, _) = app.get(&path, Some(&stranger.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = delete(&app, &path, &stranger.token).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    let (status, body) = delete(&app, &path, &agent.token).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (_, list) = app.get("/api/v1/reservations", Some(&stranger.token)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (_, still) = app.get(&path, Some(&owner.token)).await;
    assert_eq!(still["status"], "active");
    // An agent outside the owner's book sees none of it.
    let (_, list) = app.get("/api/v1/reservations", Some(&agent.token)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    // An admin releases anyone's.
    let (status, released) = delete(
        &app,
        &format!("{path}?reason=customer%20called"),
        &admin.token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["status"], "released");
    assert_eq!(released["ended_by"], admin.id.to_string());

    // Unknown vehicles and ids.
    let (status, _) = reserve(&app, &owner.token, &Uuid::now_v7().to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get("/api/v1/reservations?cursor=nope", Some(&owner.token))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn a_suspended_customer_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = eligible_customer(&app, &admin).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/users/{}/suspend", customer.id),
            Some(&admin.token),
            json!({"reason": "fraud check"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let db = vehicles(&app).db.clone();
    app.eventually("vehicles to learn the suspension", || {
        let db = db.clone();
        async move {
            miliki_events::standing::standing(&db, customer.id)
                .await
                .ok()
                .filter(|s| s.suspended)
        }
    })
    .await;
    let v = list_vehicle(&app, &admin, car()).await;
    let (status, body) = reserve(&app, &customer.token, v["id"].as_str().unwrap()).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    app.stop().await;
}

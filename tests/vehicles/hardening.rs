//! The attacks users and vehicles were tried with, as tests: stale and forged
//! tokens on the vehicles service, agents reaching past their book, and text
//! fields carrying control characters.

use miliki_platform::auth::Role as UserRole;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn a_suspended_then_reinstated_admins_old_token_is_dead_on_vehicles() {
    let app = TestApp::spawn().await;
    let boss = app.admin().await;
    let other = app.admin().await;
    let v = list_vehicle(&app, &other, car()).await;
    let path = format!("/api/v1/vehicles/{}/status", v["id"].as_str().unwrap());
    for action in ["suspend", "reinstate"] {
        let (status, body) = app
            .post(
                &format!("/api/v1/users/{}/{action}", other.id),
                Some(&boss.token),
                json!({"reason": "access review"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Within a second the old token no longer works on another service.
    let mut refused = false;
    for _ in 0..20 {
        let (status, _) = app
            .post(
                &path,
                Some(&other.token),
                json!({"status": "in_maintenance", "reason": "x"}),
            )
            .await;
        if status == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the pre-suspension token still works on vehicles");
    // A fresh login works again. (Until the suspension reached vehicles the
    // old token may have moved the bike already: move it on from wherever it is.)
    let fresh = app.login(&other.phone, PASSWORD).await;
    let token = fresh["access_token"].as_str();
    let (_, bike) = app.get(path.trim_end_matches("/status"), token).await;
    let next = if bike["status"] == "in_maintenance" {
        "available"
    } else {
        "in_maintenance"
    };
    let (status, body) = app
        .post(&path, token, json!({"status": next, "reason": "x"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_validly_signed_token_for_nobody_is_refused() {
    let app = TestApp::spawn().await;
    let forged = app
        .runtime()
        .kernel
        .tokens
        .issue(Uuid::now_v7(), UserRole::Admin, 0)
        .unwrap();
    let (status, body) = app.get("/api/v1/vehicles", Some(&forged.token)).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, body) = app
        .post("/api/v1/vehicles", Some(&forged.token), car())
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(vehicle_count(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn agents_see_only_the_reservations_of_their_own_book() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (mine, theirs) = (app.agent().await, app.agent().await);
    let customer = app.customer_of(&mine).await;
    approve_kyc(&app, &admin, &customer).await;
    let v = list_vehicle(&app, &admin, car()).await;
    let (status, r) = app
        .post(
            &format!(
                "/api/v1/vehicles/{}/reservations",
                v["id"].as_str().unwrap()
            ),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap();
    let (_, page) = app.get("/api/v1/reservations", Some(&mine.token)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let (_, page) = app.get("/api/v1/reservations", Some(&theirs.token)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
    let (status, _) = app
        .get(&format!("/api/v1/reservations/{id}"), Some(&theirs.token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get(&format!("/api/v1/reservations/{id}"), Some(&mine.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = app.get("/api/v1/reservations", Some(&admin.token)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn control_characters_in_vehicle_fields_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for (field, value) in [
        ("make", "Hon\u{0}da"),
        ("model", "Fielder\u{1b}[31m"),
        ("description", "fine\u{7}"),
    ] {
        let body = with(car(), json!({ field: value }));
        let (status, problem) = app.post("/api/v1/vehicles", Some(&admin.token), body).await;
        assert_problem(
            status,
            &problem,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert_eq!(invalid_fields(&problem), vec![field], "{problem}");
    }
    // Line breaks in free text are fine.
    let body = with(car(), json!({"description": "Serviced.\nNew tyres."}));
    let (status, _) = app.post("/api/v1/vehicles", Some(&admin.token), body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(vehicle_count(&app).await, 1);
    app.stop().await;
}

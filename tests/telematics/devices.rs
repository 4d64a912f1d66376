//! Registering, reading, re-binding and decommissioning trackers.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn admins_register_devices_with_a_checked_imei_and_get_a_token_for_http_protocols() {
    let app = spawn().await;
    let admin = app.admin().await;
    let vehicle = Uuid::now_v7();
    let imei = imei();
    let (status, body) = app
        .post(
            "/api/v1/devices",
            Some(&admin.token),
            json!({"imei": imei, "protocol": "websocket", "vehicle_id": vehicle, "sim_phone": "+254712345678"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["imei"], imei);
    assert_eq!(body["status"], "active");
    assert!(body["token"].as_str().unwrap().starts_with("mdt_"));
    // A TCP tracker authenticates by IMEI and gets no token.
    let d = register(&app, &admin, "teltonika", vehicle).await;
    assert!(d.token.is_none());

    // The same IMEI cannot be active twice.
    let (status, body) = app
        .post(
            "/api/v1/devices",
            Some(&admin.token),
            json!({"imei": imei, "protocol": "teltonika", "vehicle_id": vehicle}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    // The token is never shown again, nor stored in the clear.
    let id = d.id.clone();
    let (status, got) = app
        .get(&format!("/api/v1/devices/{id}"), Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert!(got.get("token").is_none());
    let stored: Vec<Option<String>> = sqlx::query_scalar("SELECT token_hash FROM devices")
        .fetch_all(telematics(&app).db.reader())
        .await
        .unwrap();
    let token = body_token(&app, &admin).await;
    assert!(stored.iter().flatten().all(|h| !h.contains(&token)));
}

async fn body_token(app: &TestApp, admin: &Account) -> String {
    register(app, admin, "osmand", Uuid::now_v7())
        .await
        .token
        .unwrap()
}

#[tokio::test]
async fn bad_registrations_name_each_field_and_store_nothing() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (status, body) = app
        .post(
            "/api/v1/devices",
            Some(&admin.token),
            json!({"imei": "356307042441014", "protocol": "carrier-pigeon", "vehicle_id": "nope", "sim_phone": "call me"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let mut fields = invalid_fields(&body);
    fields.sort();
    assert_eq!(
        fields,
        vec!["imei", "protocol", "sim_phone", "vehicle_id"],
        "{body}"
    );
    let (status, body) = app
        .post("/api/v1/devices", Some(&admin.token), json!({}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body).len(), 3, "{body}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
        .fetch_one(telematics(&app).db.reader())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn only_admins_manage_devices_and_people_see_only_their_vehicles_trackers() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    let stranger = app.customer().await;
    let other_agent = app.agent().await;
    let vehicle = Uuid::now_v7();
    let d = register(&app, &admin, "teltonika", vehicle).await;
    let _elsewhere = register(&app, &admin, "teltonika", Uuid::now_v7()).await;
    hold(&app, vehicle, &customer).await;

    for who in [&agent, &customer] {
        let (status, body) = app
            .post(
                "/api/v1/devices",
                Some(&who.token),
                json!({"imei": imei(), "protocol": "gt06", "vehicle_id": vehicle}),
            )
            .await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
        let (status, body) = app
            .post(
                &format!("/api/v1/devices/{}/decommission", d.id),
                Some(&who.token),
                json!({"reason": "x"}),
            )
            .await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    let (status, body) = app.post("/api/v1/devices", None, json!({})).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    let count = |body: &serde_json::Value| body["items"].as_array().unwrap().len();
    let (_, all) = app.get("/api/v1/devices", Some(&admin.token)).await;
    assert_eq!(count(&all), 2);
    for who in [&customer, &agent] {
        let (status, mine) = app.get("/api/v1/devices", Some(&who.token)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(count(&mine), 1, "{mine}");
        assert_eq!(mine["items"][0]["id"], d.id.as_str());
        let (status, _) = app
            .get(&format!("/api/v1/devices/{}", d.id), Some(&who.token))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // The customer does not see the SIM number; nobody else sees the device at all.
    for who in [&stranger, &other_agent] {
        let (_, none) = app.get("/api/v1/devices", Some(&who.token)).await;
        assert_eq!(count(&none), 0);
        let (status, body) = app
            .get(&format!("/api/v1/devices/{}", d.id), Some(&who.token))
            .await;
        assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    }
    let (status, body) = app
        .get(
            "/api/v1/devices?status=lost&vehicle_id=1",
            Some(&admin.token),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body).len(), 2);
}

#[tokio::test]
async fn rebinding_and_decommissioning() {
    let app = spawn().await;
    let admin = app.admin().await;
    let d = register(&app, &admin, "teltonika", Uuid::now_v7()).await;
    let other = Uuid::now_v7();
    let path = format!("/api/v1/devices/{}", d.id);
    let (status, body) = app
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(&admin.token),
            Some(json!({"vehicle_id": other})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["vehicle_id"], other.to_string());
    let (status, body) = app
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(&admin.token),
            Some(json!({"vehicle_id": "x"})),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["vehicle_id"]);

    let (status, body) = app
        .post(
            &format!("{path}/decommission"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["reason"]);
    let (status, body) = app
        .post(
            &format!("{path}/decommission"),
            Some(&admin.token),
            json!({"reason": "tracker damaged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "decommissioned");
    let (status, body) = app
        .post(
            &format!("{path}/decommission"),
            Some(&admin.token),
            json!({"reason": "again"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = app
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(&admin.token),
            Some(json!({"model": "FMB120"})),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    // Its IMEI is refused at the handshake now, and may be registered afresh.
    let l = listeners(&app, &admin).await;
    let (_t, answer) = Tracker::connect(l.teltonika, &d.imei).await;
    assert_eq!(answer, 0);
    let (status, body) = app
        .post(
            "/api/v1/devices",
            Some(&admin.token),
            json!({"imei": d.imei, "protocol": "teltonika", "vehicle_id": other}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/v1/devices/{}/decommission", Uuid::now_v7()),
            Some(&admin.token),
            json!({"reason": "x"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn the_gateway_routes_both_areas_and_documents_them() {
    let app = spawn().await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/devices",
        "/api/v1/devices/{id}/decommission",
        "/api/v1/telematics/vehicles/{id}/immobilization",
        "/api/v1/telematics/events/{id}/acknowledge",
        "/api/v1/telematics/live",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let (status, body) = app.get("/api/v1/telematics/nowhere", None).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
}

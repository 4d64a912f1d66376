//! Listing, reading and editing vehicles; validation; roles; lifecycle; photos.

use miliki_vehicles::events::{convert_reservation, ContractActivated};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn admin_lists_reads_and_edits_a_vehicle_with_etags() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;

    let created = list_vehicle(&app, &admin, car()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["type"], "car");
    assert_eq!(created["status"], "available");
    // Money comes back under the names it went in with.
    assert_eq!(created["price_minor"], 1_450_000_00i64);
    assert_eq!(created["currency"], "KES");
    assert_eq!(created["cost_price_minor"], 1_200_000_00i64);
    assert!(
        created.get("price").is_none() && created.get("cost_price").is_none(),
        "{created}"
    );
    assert_eq!(created["seats"], 5);
    assert!(created.get("engine_cc").is_none());
    let path = format!("/api/v1/vehicles/{id}");

    // Everyone logged in reads; customers never see internal fields.
    let (status, seen, tag) = get_with_etag(&app, &path, &customer.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tag, "\"v1\"");
    assert!(
        seen.get("cost_price_minor").is_none() && seen.get("notes").is_none(),
        "{seen}"
    );
    assert_eq!(seen["make"], "Toyota");
    let (status, _) = app.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, staff_view, _) = get_with_etag(&app, &path, &admin.token).await;
    assert_eq!(staff_view["notes"], "bought at auction");

    // Without If-Match: 428. With a stale tag: 412 and nothing changes.
    let (status, body, _) = patch(
        &app,
        &path,
        &admin.token,
        None,
        json!({"price_minor": 1_400_000_00i64}),
    )
    .await;
    assert_eq!(status.as_u16(), 428, "{body}");
    let (status, body, _) = patch(
        &app,
        &path,
        &admin.token,
        Some("\"v7\""),
        json!({"price_minor": 1_400_000_00i64}),
    )
    .await;
    assert_problem(
        status,
        &body,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    );

    // The current tag wins; the old one is then stale.
    let (status, body, new_tag) = patch(
        &app,
        &path,
        &admin.token,
        Some(&tag),
        json!({"price_minor": 1_400_000_00i64, "colour": "white", "mileage_km": 85000}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(new_tag.as_deref(), Some("\"v2\""));
    assert_eq!(body["price_minor"], 1_400_000_00i64);
    assert_eq!(body["colour"], "white");
    let (status, body, _) = patch(
        &app,
        &path,
        &admin.token,
        Some(&tag),
        json!({"colour": "black"}),
    )
    .await;
    assert_problem(
        status,
        &body,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    );
    let (_, now, _) = get_with_etag(&app, &path, &admin.token).await;
    assert_eq!(now["colour"], "white");

    // Bad edits are named and change nothing.
    let (status, body, _) = patch(
        &app,
        &path,
        &admin.token,
        new_tag.as_deref(),
        json!({"mileage_km": 10, "vin": "NOPE", "type": "truck"}),
    )
    .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let fields = invalid_fields(&body);
    for f in ["mileage_km", "vin", "type"] {
        assert!(fields.contains(&f.to_owned()), "{f} not in {fields:?}");
    }
    let (_, after, tag_after) = get_with_etag(&app, &path, &admin.token).await;
    assert_eq!(tag_after, "\"v2\"");
    assert_eq!(after["mileage_km"], 85000);

    // The edit was published.
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE event_type = 'vehicles.vehicle.updated.v1'",
    )
    .fetch_one(vehicles(&app).db.reader())
    .await
    .unwrap();
    assert_eq!(n, 1);
    app.stop().await;
}

#[tokio::test]
async fn every_invalid_field_is_named_and_nothing_is_listed() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let cases: Vec<(Value, &str)> = vec![
        (with(car(), json!({"vin": "JTDBR32E72O123456"})), "vin"),
        (with(car(), json!({"vin": "!!"})), "vin"),
        (with(car(), json!({"type": "plane"})), "type"),
        (with(car(), json!({"price_minor": -100})), "price_minor"),
        (with(car(), json!({"year": 2031})), "year"),
        (with(car(), json!({"latitude": 91.5})), "latitude"),
        (with(car(), json!({"longitude": -200})), "longitude"),
        (with(car(), json!({"currency": "XYZ"})), "currency"),
        (
            with(car(), json!({"registration": "ABCDEFG"})),
            "registration",
        ),
        (with(car(), json!({"seats": null})), "seats"),
        (with(car(), json!({"engine_cc": 150})), "engine_cc"),
        (with(motorcycle(), json!({"engine_cc": null})), "engine_cc"),
        (with(car(), json!({"mileage_km": -1})), "mileage_km"),
        (with(car(), json!({"condition": "shiny"})), "condition"),
        (with(car(), json!({"year": "2019"})), "year"),
        (with(car(), json!({"wheels": 4})), "wheels"),
    ];
    for (body, field) in cases {
        let (status, problem) = app
            .post("/api/v1/vehicles", Some(&admin.token), body.clone())
            .await;
        assert_problem(
            status,
            &problem,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert!(
            invalid_fields(&problem).iter().any(|f| f.contains(field)),
            "{field} not named for {body}: {problem}"
        );
    }
    // Several problems at once are all named.
    let (_, problem) = app
        .post(
            "/api/v1/vehicles",
            Some(&admin.token),
            with(
                car(),
                json!({"vin": "x", "price_minor": 0, "latitude": -95}),
            ),
        )
        .await;
    assert_eq!(invalid_fields(&problem).len(), 3, "{problem}");
    // Broken JSON and the wrong content type.
    let resp = app
        .client
        .post(app.url("/api/v1/vehicles"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{\"type\":")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app
        .client
        .post(app.url("/api/v1/vehicles"))
        .bearer_auth(&admin.token)
        .body("type=car")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(vehicle_count(&app).await, 0);

    // VIN and plate are unique, whatever their spelling.
    let first = car();
    list_vehicle(&app, &admin, first.clone()).await;
    let same_vin = with(
        car(),
        json!({"vin": first["vin"].as_str().unwrap().to_lowercase()}),
    );
    let (status, body) = app
        .post("/api/v1/vehicles", Some(&admin.token), same_vin)
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let spaced_plate = first["registration"]
        .as_str()
        .unwrap()
        .replace(' ', "  ")
        .to_lowercase();
    let same_plate = with(car(), json!({"registration": spaced_plate}));
    let (status, body) = app
        .post("/api/v1/vehicles", Some(&admin.token), same_plate)
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    assert_eq!(vehicle_count(&app).await, 1);

    // Unknown ids and malformed ids.
    let (status, _) = app
        .get(
            &format!("/api/v1/vehicles/{}", uuid::Uuid::now_v7()),
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get("/api/v1/vehicles/not-an-id", Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn only_admins_write_and_agents_only_service_vehicles() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer().await;
    for who in [&customer, &agent] {
        let (status, body) = app.post("/api/v1/vehicles", Some(&who.token), car()).await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(vehicle_count(&app).await, 0);
    let v = list_vehicle(&app, &admin, car()).await;
    let path = format!("/api/v1/vehicles/{}", v["id"].as_str().unwrap());
    for who in [&customer, &agent] {
        let (status, body, _) = patch(
            &app,
            &path,
            &who.token,
            Some("\"v1\""),
            json!({"price_minor": 1}),
        )
        .await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    let status_path = format!("{path}/status");
    // An agent cannot retire; a customer cannot touch the lifecycle at all.
    let (status, body) = app
        .post(
            &status_path,
            Some(&agent.token),
            json!({"status": "retired", "reason": "old"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            &status_path,
            Some(&customer.token),
            json!({"status": "in_maintenance", "reason": "x"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (_, now) = app.get(&path, Some(&admin.token)).await;
    assert_eq!(now["status"], "available");
    assert_eq!(now["version"], 1);
    // Agents take vehicles into and out of maintenance.
    let (status, body) = app
        .post(
            &status_path,
            Some(&agent.token),
            json!({"status": "in_maintenance", "reason": "clutch slipping"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "in_maintenance");
    app.stop().await;
}

#[tokio::test]
async fn lifecycle_moves_are_checked_and_recorded() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let v = list_vehicle(&app, &admin, motorcycle()).await;
    let path = format!("/api/v1/vehicles/{}", v["id"].as_str().unwrap());
    let status_path = format!("{path}/status");

    let (status, body) = app
        .post(
            &status_path,
            Some(&admin.token),
            json!({"status": "owned", "reason": "gift"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = app
        .post(
            &status_path,
            Some(&admin.token),
            json!({"status": "reserved", "reason": "friend"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            &status_path,
            Some(&admin.token),
            json!({"status": "flying", "reason": ""}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["status", "reason"]);

    for (to, why) in [
        ("in_maintenance", "service due"),
        ("available", "serviced"),
        ("retired", "written off"),
    ] {
        let (status, body) = app
            .post(
                &status_path,
                Some(&admin.token),
                json!({"status": to, "reason": why}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], to);
    }
    let (status, body) = app
        .post(
            &status_path,
            Some(&admin.token),
            json!({"status": "available", "reason": "oops"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    let (status, history) = app
        .get(&format!("{path}/history"), Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let moves: Vec<(String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["to"].as_str().unwrap().to_owned(),
                h["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            ("in_maintenance".to_owned(), "service due".to_owned()),
            ("available".to_owned(), "serviced".to_owned()),
            ("retired".to_owned(), "written off".to_owned()),
        ]
    );
    assert_eq!(history[0]["actor_id"], admin.id.to_string());
    let (status, _) = app
        .get(&format!("{path}/history"), Some(&customer.token))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Retired vehicles are gone for customers.
    let (status, _) = app.get(&path, Some(&customer.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_contract_freezes_price_and_vin_but_not_the_rest() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let customer = eligible_customer(&app, &admin).await;
    let v = list_vehicle(&app, &admin, car()).await;
    let id = v["id"].as_str().unwrap();
    let (status, reservation) = app
        .post(
            &format!("/api/v1/vehicles/{id}/reservations"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reservation}");

    // What the payments service's contract-activated event will trigger.
    let state = miliki_vehicles::AppState::new(vehicles(&app).clone());
    let contract = uuid::Uuid::now_v7();
    let done = convert_reservation(
        &state,
        None,
        &ContractActivated {
            contract_id: contract,
            customer_id: customer.id,
            vehicle_id: id.parse().unwrap(),
        },
    )
    .await
    .unwrap();
    assert_eq!(done, miliki_vehicles::events::Conversion::Converted);

    let path = format!("/api/v1/vehicles/{id}");
    let (_, seen, tag) = get_with_etag(&app, &path, &customer.token).await;
    assert_eq!(seen["status"], "under_contract");
    assert_eq!(seen["held_by_you"], true);
    let (_, r) = app
        .get(
            &format!(
                "/api/v1/reservations/{}",
                reservation["id"].as_str().unwrap()
            ),
            Some(&customer.token),
        )
        .await;
    assert_eq!(r["status"], "converted");
    assert_eq!(r["contract_id"], contract.to_string());

    for change in [
        json!({"price_minor": 1}),
        json!({"vin": "JTDBR32E720999999"}),
        json!({"currency": "UGX"}),
    ] {
        let (status, body, _) = patch(&app, &path, &admin.token, Some(&tag), change).await;
        assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    }
    let (status, body, _) = patch(
        &app,
        &path,
        &admin.token,
        Some(&tag),
        json!({"mileage_km": 90000, "branch": "Thika"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

fn real_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(
    app: &TestApp,
    token: &str,
    vehicle: &str,
    bytes: Vec<u8>,
    name: &str,
) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new().part(
        "photo",
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
    );
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/vehicles/{vehicle}/photos")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn photos_are_sniffed_capped_and_thumbnailed() {
    let app = TestApp::spawn_with(|s| s.max_upload_bytes = 200_000).await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let v = list_vehicle(&app, &admin, car()).await;
    let id = v["id"].as_str().unwrap();

    let (status, photo) = upload(&app, &admin.token, id, real_png(640, 480), "side.png").await;
    assert_eq!(status, StatusCode::CREATED, "{photo}");
    assert_eq!(photo["content_type"], "image/png");
    assert_eq!(
        (photo["width"].as_i64(), photo["height"].as_i64()),
        (Some(640), Some(480))
    );

    let resp = app
        .client
        .get(app.url(photo["thumbnail_url"].as_str().unwrap()))
        .bearer_auth(&customer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let thumb = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));
    let resp = app
        .client
        .get(app.url(photo["url"].as_str().unwrap()))
        .bearer_auth(&customer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.bytes().await.unwrap().len() as i64,
        photo["size_bytes"].as_i64().unwrap()
    );
    let (_, seen) = app
        .get(&format!("/api/v1/vehicles/{id}"), Some(&customer.token))
        .await;
    assert_eq!(seen["photos"].as_array().unwrap().len(), 1);

    // A PDF named .jpg is refused by its bytes; a broken JPEG is unreadable; too big is 413.
    let (status, body) = upload(&app, &admin.token, id, pdf(), "fake.jpg").await;
    assert_problem(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    let (status, body) = upload(&app, &admin.token, id, jpeg(), "broken.jpg").await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let mut big = png();
    big.extend(std::iter::repeat_n(0u8, 250_000));
    let (status, body) = upload(&app, &admin.token, id, big, "big.png").await;
    assert_problem(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
    );
    // Customers cannot upload.
    let (status, body) = upload(&app, &customer.token, id, real_png(10, 10), "x.png").await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vehicle_photos")
        .fetch_one(vehicles(&app).db.reader())
        .await
        .unwrap();
    assert_eq!(n, 1);
    app.stop().await;
}

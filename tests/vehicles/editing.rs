//! Clearing fields with PATCH, and managing a vehicle's photos (delete, reorder).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn patch_null_clears_optional_fields_and_absent_keeps_them() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let created = list_vehicle(&app, &admin, car()).await;
    let path = format!("/api/v1/vehicles/{}", created["id"].as_str().unwrap());
    assert_eq!(created["notes"], "bought at auction");

    // Absent keeps: a change of colour leaves notes, cost price and description alone.
    let (status, body, tag) = patch(
        &app,
        &path,
        &admin.token,
        Some("\"v1\""),
        json!({"colour": "white"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["colour"], "white");
    assert_eq!(body["notes"], "bought at auction");
    assert_eq!(body["cost_price_minor"], 1_200_000_00i64);
    assert_eq!(body["description"], "Clean hybrid, ideal for ride-hailing");

    // null clears: notes, cost price and description go; the rest stays.
    let (status, body, tag) = patch(
        &app,
        &path,
        &admin.token,
        tag.as_deref(),
        json!({"notes": null, "cost_price_minor": null, "description": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(tag.as_deref(), Some("\"v3\""));
    assert!(
        body.get("notes").is_none() && body.get("cost_price_minor").is_none(),
        "{body}"
    );
    assert_eq!(body["description"], "");
    assert_eq!(body["colour"], "white");
    assert_eq!(body["price_minor"], 1_450_000_00i64);
    let (_, stored, _) = get_with_etag(&app, &path, &admin.token).await;
    assert!(stored.get("notes").is_none(), "{stored}");

    // A field every vehicle has cannot be cleared: 422 naming each, nothing changed.
    let (status, body, _) = patch(
        &app,
        &path,
        &admin.token,
        tag.as_deref(),
        json!({"make": null, "price_minor": null, "colour": "black"}),
    )
    .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let fields = invalid_fields(&body);
    assert!(
        fields.contains(&"make".into()) && fields.contains(&"price_minor".into()),
        "{body}"
    );
    // A spec the type needs (a car's seats) cannot be cleared either.
    let (status, body, _) = patch(
        &app,
        &path,
        &admin.token,
        tag.as_deref(),
        json!({"seats": null}),
    )
    .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(invalid_fields(&body).contains(&"seats".into()), "{body}");
    let (_, stored, stored_tag) = get_with_etag(&app, &path, &admin.token).await;
    assert_eq!(Some(stored_tag), tag);
    assert_eq!(
        (
            &stored["make"],
            &stored["colour"],
            &stored["seats"],
            &stored["price_minor"]
        ),
        (
            &json!("Toyota"),
            &json!("white"),
            &json!(5),
            &json!(1_450_000_00i64)
        )
    );

    // An optional field can be set again after clearing.
    let (status, body, _) = patch(
        &app,
        &path,
        &admin.token,
        tag.as_deref(),
        json!({"notes": "re-inspected"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["notes"], "re-inspected");
    app.stop().await;
}

fn real_png(side: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, token: &str, vehicle: &str, side: u32) -> String {
    let form = reqwest::multipart::Form::new().part(
        "photo",
        reqwest::multipart::Part::bytes(real_png(side)).file_name("p.png"),
    );
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/vehicles/{vehicle}/photos")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

fn ids(list: &[&String]) -> Vec<String> {
    list.iter().map(|s| (*s).clone()).collect()
}

async fn photo_order(app: &TestApp, token: &str, vehicle: &str) -> Vec<String> {
    let (status, body) = app
        .get(&format!("/api/v1/vehicles/{vehicle}"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn reorder(app: &TestApp, token: &str, vehicle: &str, ids: Value) -> (StatusCode, Value) {
    app.send(
        reqwest::Method::PUT,
        &format!("/api/v1/vehicles/{vehicle}/photos/order"),
        Some(token),
        Some(json!({"photo_ids": ids})),
    )
    .await
}

#[tokio::test]
async fn admins_reorder_and_delete_photos() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer().await;
    let v = list_vehicle(&app, &admin, car()).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let other = list_vehicle(&app, &admin, car()).await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    let a = upload(&app, &admin.token, &id, 20).await;
    let b = upload(&app, &admin.token, &id, 30).await;
    let c = upload(&app, &admin.token, &id, 40).await;
    let foreign = upload(&app, &admin.token, &other_id, 20).await;
    assert_eq!(
        photo_order(&app, &customer.token, &id).await,
        ids(&[&a, &b, &c])
    );

    // A permutation is the new order, as everyone then sees it.
    let (status, body) = reorder(&app, &admin.token, &id, json!([c, a, b])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answered: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(answered, ids(&[&c, &a, &b]));
    assert_eq!(
        photo_order(&app, &customer.token, &id).await,
        ids(&[&c, &a, &b])
    );
    // A photo uploaded afterwards goes to the end.
    let d = upload(&app, &admin.token, &id, 50).await;
    assert_eq!(
        photo_order(&app, &admin.token, &id).await,
        ids(&[&c, &a, &b, &d])
    );

    // Lists that are not a permutation are refused and change nothing.
    let unknown = uuid::Uuid::now_v7().to_string();
    for bad in [
        json!([c, a, b]),          // d missing
        json!([c, a, b, d, d]),    // d twice
        json!([c, a, b, unknown]), // not a photo at all
        json!([c, a, b, foreign]), // another vehicle's photo
        json!([]),
        json!(["not-a-uuid", a, b, c]),
    ] {
        let (status, body) = reorder(&app, &admin.token, &id, bad.clone()).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{bad}: {status} {body}"
        );
        assert_eq!(body["status"], status.as_u16(), "{body}");
    }
    let (status, body) = app
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/vehicles/{id}/photos/order"),
            Some(&admin.token),
            Some(json!({})),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(
        photo_order(&app, &admin.token, &id).await,
        ids(&[&c, &a, &b, &d])
    );

    // Only admins manage photos.
    for token in [&agent.token, &customer.token] {
        let (status, body) = reorder(&app, token, &id, json!([d, c, b, a])).await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
        let (status, body) =
            delete(&app, &format!("/api/v1/vehicles/{id}/photos/{a}"), token).await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    let (status, _) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/vehicles/{id}/photos/{a}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        photo_order(&app, &admin.token, &id).await,
        ids(&[&c, &a, &b, &d])
    );

    // Deleting: the photo and its bytes go, the rest keep their order.
    let (status, body) = delete(
        &app,
        &format!("/api/v1/vehicles/{id}/photos/{a}"),
        &admin.token,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        photo_order(&app, &customer.token, &id).await,
        ids(&[&c, &b, &d])
    );
    let (status, _) = app
        .get(
            &format!("/api/v1/vehicles/{id}/photos/{a}"),
            Some(&customer.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Again, through the wrong vehicle, or on no vehicle: 404, nothing else deleted.
    for path in [
        format!("/api/v1/vehicles/{id}/photos/{a}"),
        format!("/api/v1/vehicles/{id}/photos/{foreign}"),
        format!("/api/v1/vehicles/{unknown}/photos/{b}"),
    ] {
        let (status, body) = delete(&app, &path, &admin.token).await;
        assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    }
    let (status, body) = reorder(&app, &admin.token, &unknown, json!([b])).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    assert_eq!(
        photo_order(&app, &admin.token, &other_id).await,
        ids(&[&foreign])
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vehicle_photos")
        .fetch_one(vehicles(&app).db.reader())
        .await
        .unwrap();
    assert_eq!(n, 4);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_matches_the_vehicle_answers() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let view = &doc["components"]["schemas"]["VehicleView"]["properties"];
    for name in ["price_minor", "currency", "cost_price_minor"] {
        assert!(view.get(name).is_some(), "VehicleView lacks {name}: {view}");
    }
    assert!(
        view.get("price").is_none() && view.get("cost_price").is_none(),
        "{view}"
    );
    let patch = &doc["paths"]["/api/v1/vehicles/{id}"]["patch"];
    assert!(
        patch["requestBody"].to_string().contains("VehiclePatch"),
        "{patch}"
    );
    let notes = doc["components"]["schemas"]["VehiclePatch"]["properties"]["notes"].to_string();
    assert!(notes.contains("null"), "notes can be cleared: {notes}");
    let photo = &doc["paths"]["/api/v1/vehicles/{id}/photos/{photo_id}"];
    assert!(photo["delete"]["responses"].get("204").is_some(), "{photo}");
    let order = &doc["paths"]["/api/v1/vehicles/{id}/photos/order"]["put"]["responses"];
    for code in ["200", "403", "404", "422"] {
        assert!(order.get(code).is_some(), "reorder lacks {code}: {order}");
    }
    app.stop().await;
}

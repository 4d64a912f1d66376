//! Financing products: admins write them, everyone signed in reads them.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn admins_create_list_read_and_retire_products() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let p = create_product(&app, &admin, boda_product()).await;
    assert_eq!(p["status"], "active");
    // KES products default to whole shillings and the standard allocation order.
    assert_eq!(p["rounding_minor"], 100);
    assert_eq!(
        p["allocation"],
        json!(["penalties", "fees", "interest", "principal"])
    );
    assert_eq!(p["amortization"], "equal_installments");
    assert_eq!(
        p["late_fee"],
        json!({"kind": "fixed", "amount_minor": 500_00, "grace_days": 2})
    );
    let id = p["id"].as_str().unwrap();

    let (status, got) = app
        .get(&format!("/api/v1/products/{id}"), Some(&customer.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["name"], "Boda weekly");

    let second = create_product(&app, &admin, monthly_product()).await;
    let (_, page) = app
        .get("/api/v1/products?limit=1", Some(&customer.token))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = app
        .get(
            &format!("/api/v1/products?limit=1&cursor={cursor}"),
            Some(&customer.token),
        )
        .await;
    assert_eq!(next["items"][0]["id"], second["id"]);
    assert!(next["next_cursor"].is_null());

    let (status, retired) = app
        .post(
            &format!("/api/v1/products/{id}/retire"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retired}");
    assert_eq!(retired["status"], "retired");
    let (status, body) = app
        .post(
            &format!("/api/v1/products/{id}/retire"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (_, active) = app.get("/api/v1/products", Some(&customer.token)).await;
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    let (_, retired_list) = app
        .get("/api/v1/products?status=retired", Some(&customer.token))
        .await;
    assert_eq!(retired_list["items"][0]["id"], p["id"]);
    let (status, body) = app
        .get("/api/v1/products?status=gone", Some(&customer.token))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["status"]);
    app.stop().await;
}

#[tokio::test]
async fn every_invalid_product_field_is_named_and_nothing_is_created() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (status, body) = app
        .post(
            "/api/v1/products",
            Some(&admin.token),
            json!({
                "name": " ",
                "vehicle_types": ["boat"],
                "currency": "XXX",
                "frequency": "hourly",
                "term_periods_min": 10,
                "term_periods_max": 5,
                "interest_method": "flat",
                "amortization": "equal_principal",
                "annual_rate_bps": -1,
                "min_deposit_bps": 10000,
                "late_fee": {"kind": "sometimes"},
                "rounding_minor": 0,
                "allocation": ["principal", "principal", "fees", "interest"]
            }),
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
        vec![
            "allocation",
            "amortization",
            "annual_rate_bps",
            "currency",
            "frequency",
            "late_fee.kind",
            "min_deposit_bps",
            "name",
            "rounding_minor",
            "term_periods_max",
            "vehicle_types[0]"
        ]
    );
    let (status, body) = app
        .post(
            "/api/v1/products",
            Some(&admin.token),
            json!({"name": "x", "surprise": 1}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, body) = app
        .post("/api/v1/products", Some(&admin.token), json!({"name": "x"}))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(invalid_fields(&body).contains(&"currency".to_owned()));
    let (_, list) = app
        .get("/api/v1/products?status=all", Some(&admin.token))
        .await;
    assert_eq!(list["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn only_admins_write_products() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer().await;
    for who in [&agent, &customer] {
        let (status, body) = app
            .post("/api/v1/products", Some(&who.token), boda_product())
            .await;
        assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    }
    let (status, body) = app.post("/api/v1/products", None, boda_product()).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, body) = app.get("/api/v1/products", None).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let p = create_product(&app, &admin, boda_product()).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/products/{}/retire", p["id"].as_str().unwrap()),
            Some(&agent.token),
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .get(
            &format!("/api/v1/products/{}", uuid::Uuid::now_v7()),
            Some(&agent.token),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    let (status, body) = app
        .get("/api/v1/products/not-an-id", Some(&agent.token))
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "bad-request");
    app.stop().await;
}

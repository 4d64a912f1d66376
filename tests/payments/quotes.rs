//! Quotes through HTTP: the same figures as the golden schedules.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn a_quote_is_the_schedule_worked_by_hand() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let p = create_product(&app, &admin, boda_product()).await;
    let (status, q) = app
        .post(
            "/api/v1/quotes",
            Some(&customer.token),
            json!({
                "product_id": p["id"], "price_minor": 165_000_00, "currency": "KES",
                "deposit_minor": 33_000_00, "term_periods": 78, "start_date": "2026-03-02"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!(q["principal_minor"], 132_000_00);
    assert_eq!(q["total_interest_minor"], 59_400_00);
    assert_eq!(q["installment_minor"], 2_454_00);
    // 2% of the principal, due with the deposit.
    assert_eq!(q["processing_fee_minor"], 2_640_00);
    assert_eq!(
        q["total_payable_minor"],
        33_000_00 + 2_640_00 + 132_000_00 + 59_400_00
    );
    let first = &q["installments"][0];
    assert_eq!(first["due_date"], "2026-03-09");
    assert_eq!(first["principal_minor"], 169_246);
    assert_eq!(first["interest_minor"], 76_154);
    let last = &q["installments"][77];
    assert_eq!(last["total_minor"], 244_200);
    assert_eq!(last["balance_after_minor"], 0);
    // Without a start date, today in Nairobi (the test clock says 2026-03-02 11:00 there).
    let (_, q) = app
        .post(
            "/api/v1/quotes",
            Some(&customer.token),
            json!({"product_id": p["id"], "price_minor": 165_000_00, "currency": "KES", "deposit_minor": 33_000_00, "term_periods": 26}),
        )
        .await;
    assert_eq!(q["installments"][0]["due_date"], "2026-03-09");
    app.stop().await;
}

#[tokio::test]
async fn quotes_name_what_is_wrong() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let p = create_product(&app, &admin, boda_product()).await;
    // 20% of 165,000.01 rounds up to 33,000.01.
    let (status, body) = app
        .post(
            "/api/v1/quotes",
            Some(&customer.token),
            json!({"product_id": p["id"], "price_minor": 165_000_01, "currency": "KES", "deposit_minor": 33_000_00, "term_periods": 200}),
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
    assert_eq!(fields, vec!["deposit_minor", "term_periods"]);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("3300001"),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/api/v1/quotes",
            Some(&customer.token),
            json!({"product_id": p["id"], "price_minor": 1000, "currency": "UGX", "deposit_minor": 500, "term_periods": 30}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["currency"]);
    let (status, body) = app
        .post(
            "/api/v1/quotes",
            Some(&customer.token),
            json!({"vehicle_id": uuid::Uuid::now_v7(), "price_minor": 5}),
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
        vec!["deposit_minor", "product_id", "term_periods", "vehicle_id"]
    );
    let (status, body) = app
        .post(
            "/api/v1/quotes",
            Some(&customer.token),
            json!({"product_id": uuid::Uuid::now_v7(), "price_minor": 1000, "currency": "KES", "deposit_minor": 500, "term_periods": 30}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["product_id"]);
    let (status, body) = app.post("/api/v1/quotes", None, json!({})).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    app.stop().await;
}

//! Admin reports: portfolio at risk and collections per day.

use reqwest::StatusCode;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn portfolio_and_collections_reflect_the_book() {
    let app = spawn().await;
    let mut admin = app.admin().await;
    let mut agent = app.agent().await;
    let p = create_product(&app, &admin, boda_product()).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let customer = app.customer().await;
        let c = create_contract(
            &app,
            &admin,
            contract_body(&p, customer.id, 165_000_00, 33_000_00, 78),
        )
        .await;
        let id = c["id"].as_str().unwrap().to_owned();
        pay(&app, &admin.token, &id, deposit_due(&c)).await;
        ids.push(id);
    }
    // Eight days on, one pays its first installment and one does not.
    advance_days(&app, 8, &mut [&mut admin, &mut agent]).await;
    pay(&app, &admin.token, &ids[0], 2_454_00).await;

    let (status, r) = app
        .get(
            "/api/v1/reports/portfolio?as_of=2026-03-10",
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let kes = &r["currencies"][0];
    assert_eq!(kes["currency"], "KES");
    assert_eq!(kes["active_contracts"], 2);
    let paid_principal = 169_246;
    assert_eq!(
        kes["outstanding_principal_minor"],
        2 * 132_000_00 - paid_principal
    );
    // PAR1: the unpaid contract's principal; nothing is a week late yet.
    assert_eq!(kes["par"][0]["days"], 1);
    assert_eq!(kes["par"][0]["amount_minor"], 132_000_00);
    assert_eq!(kes["par"][1]["amount_minor"], 0);
    let ratio: f64 = kes["par"][0]["ratio"].as_str().unwrap().parse().unwrap();
    assert!((ratio - 0.5032).abs() < 0.0001, "{ratio}");
    assert_eq!(kes["buckets"][0]["bucket"], "current");
    assert_eq!(kes["buckets"][0]["contracts"], 1);
    assert_eq!(kes["buckets"][1]["bucket"], "1-7");
    assert_eq!(kes["buckets"][1]["contracts"], 1);
    // Aged to a later date the same arrears fall in later buckets.
    let (_, r) = app
        .get(
            "/api/v1/reports/portfolio?as_of=2026-04-20",
            Some(&admin.token),
        )
        .await;
    assert_eq!(r["currencies"][0]["par"][2]["days"], 30);
    assert!(
        r["currencies"][0]["par"][2]["amount_minor"]
            .as_i64()
            .unwrap()
            > 0
    );

    let (status, c) = app
        .get(
            "/api/v1/reports/collections?from=2026-03-02&to=2026-03-10",
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let days = c["days"].as_array().unwrap();
    let day = |d: &str| days.iter().find(|x| x["date"] == d).cloned().unwrap();
    assert_eq!(
        day("2026-03-02")["collected_minor"],
        2 * (33_000_00 + 2_640_00)
    );
    assert_eq!(day("2026-03-02")["collection_rate"], "1");
    assert_eq!(day("2026-03-09")["due_minor"], 2 * 2_454_00);
    assert_eq!(day("2026-03-10")["collected_minor"], 2_454_00);

    for (path, field) in [
        ("/api/v1/reports/portfolio?as_of=yesterday", "as_of"),
        ("/api/v1/reports/collections", "from"),
        (
            "/api/v1/reports/collections?from=2026-03-10&to=2026-03-01",
            "to",
        ),
        (
            "/api/v1/reports/collections?from=2024-01-01&to=2026-03-01",
            "to",
        ),
    ] {
        let (status, body) = app.get(path, Some(&admin.token)).await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert_eq!(invalid_fields(&body), vec![field], "{path}");
    }
    let (status, body) = app
        .get("/api/v1/reports/portfolio", Some(&agent.token))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .get(
            "/api/v1/reports/collections?from=2026-03-01",
            Some(&agent.token),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    app.stop().await;
}

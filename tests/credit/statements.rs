//! M-Pesa statements: a realistic one is read into features; broken ones are
//! refused with the line and column of each fault, and nothing is created.

use reqwest::StatusCode;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn a_realistic_statement_becomes_features() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let csv = statement(&Shape::shaky());
    let (status, a) = apply_multipart(
        &app,
        &s.customer.token,
        &body(&s, 40_000_00, 52, 30_000_00),
        Some(&csv),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    let st = &a["statement"];
    assert_eq!(st["weeks"], 13, "{a}");
    assert_eq!(st["weeks_with_income"], 5);
    assert_eq!(st["distinct_payers"], 2);
    assert_eq!(st["failed_transactions"], 4);
    // 5 weeks × 3 fares × KES 1,500 in.
    assert_eq!(st["inflow_minor"], 22_500_00);
    let f = &a["features"]["values"];
    assert_eq!(f["inflow_regularity_bps"], 5 * 10_000 / 13);
    assert_eq!(a["features"]["income_source"], "statement");
    let reasons: Vec<&str> = a["score"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"irregular income: money came in during 5 of the last 13 weeks"),
        "{reasons:?}"
    );
    assert!(reasons.len() <= 4);
    app.stop().await;
}

async fn refused(app: &TestApp, s: &Setup, csv: &str) -> Vec<String> {
    let (status, b) = apply_multipart(
        app,
        &s.customer.token,
        &body(s, 40_000_00, 52, 30_000_00),
        Some(csv),
    )
    .await;
    assert_problem(status, &b, StatusCode::UNPROCESSABLE_ENTITY, "validation");
    b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["field"], "statement");
            e["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn broken_statements_are_refused_with_line_and_column() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let good_row = "RB12345678,2026-02-01 08:00:00,Funds received from 0712000001 - ANNE,Completed,500.00,,1500.00\n";

    let bad_amount = format!(
        "{HEADER}{good_row}RB12345679,2026-02-01 09:00:00,Funds received from 0712000002 - BEN,Completed,five hundred,,2000.00\n"
    );
    let errors = refused(&app, &s, &bad_amount).await;
    assert_eq!(
        errors,
        vec!["line 3, column 5 (Paid In): \"five hundred\" is not an amount"]
    );

    let bad_time = format!(
        "{HEADER}{good_row}RB22345679,31/13/2026 09:00,Funds received from 0712000002 - BEN,Completed,100.00,,2000.00\n"
    );
    let errors = refused(&app, &s, &bad_time).await;
    assert!(
        errors[0].starts_with("line 3, column 2 (Completion Time)"),
        "{errors:?}"
    );

    let short_row = format!("{HEADER}{good_row}RB32345679,2026-02-01 09:00:00,Completed\n");
    let errors = refused(&app, &s, &short_row).await;
    assert_eq!(errors, vec!["line 3: 3 cells where the header has 7"]);

    let duplicate = format!("{HEADER}{good_row}{good_row}");
    let errors = refused(&app, &s, &duplicate).await;
    assert_eq!(
        errors,
        vec!["line 3, column 1 (Receipt No.): receipt RB12345678 appears twice"]
    );

    let bad_status =
        format!("{HEADER}RB42345679,2026-02-01 09:00:00,Funds received,Pending,100.00,,2000.00\n");
    let errors = refused(&app, &s, &bad_status).await;
    assert!(
        errors[0].starts_with("line 2, column 4 (Transaction Status)"),
        "{errors:?}"
    );

    let no_balance_column = "Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn\nRB1,2026-02-01 09:00:00,x,Completed,1.00,\n";
    let errors = refused(&app, &s, no_balance_column).await;
    assert!(
        errors[0].starts_with("line 1:") && errors[0].contains("\"Balance\""),
        "{errors:?}"
    );

    let errors = refused(&app, &s, HEADER).await;
    assert_eq!(errors, vec!["the statement has no transactions"]);
    let errors = refused(&app, &s, "").await;
    assert_eq!(errors, vec!["the statement is empty"]);

    let binary = format!("{HEADER}RB1,2026-02-01 09:00:00,\u{1}\u{2},Completed,1.00,,1.00\n");
    let errors = refused(&app, &s, &binary).await;
    assert!(
        errors[0].starts_with("line 2, column 3 (Details)"),
        "{errors:?}"
    );

    // Several faults at once are all listed.
    let many = format!(
        "{HEADER}RB1,yesterday,x,Completed,1.00,,1.00\nRB2,2026-02-01 09:00:00,x,Completed,1.001,,1.00\n"
    );
    let errors = refused(&app, &s, &many).await;
    assert_eq!(errors.len(), 2, "{errors:?}");

    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM applications")
        .fetch_one(credit(&app).db.reader())
        .await
        .unwrap();
    assert_eq!(n, 0);

    // A multipart body without the JSON part, or with a stray part.
    let form = reqwest::multipart::Form::new().text("statement", good_row.to_owned());
    let resp = app
        .client
        .post(app.url("/api/v1/applications"))
        .bearer_auth(&s.customer.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let form = reqwest::multipart::Form::new().text("photo", "x");
    let resp = app
        .client
        .post(app.url("/api/v1/applications"))
        .bearer_auth(&s.customer.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

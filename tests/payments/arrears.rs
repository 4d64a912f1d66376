//! The daily job on the injected clock: days past due, buckets, one late fee
//! per overdue installment after the grace days; pauses, default, write-off.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::support::*;

async fn active_contract(app: &TestApp, admin: &Account, customer: &Account) -> String {
    let p = create_product(app, admin, boda_product()).await;
    let c = create_contract(
        app,
        admin,
        contract_body(&p, customer.id, 165_000_00, 33_000_00, 78),
    )
    .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let (_, r) = pay(app, &admin.token, &id, deposit_due(&c)).await;
    assert_eq!(r["contract"]["status"], "active");
    id
}

#[tokio::test]
async fn missed_installments_age_into_buckets_with_one_late_fee_each() {
    let app = spawn().await;
    let mut admin = app.admin().await;
    let customer = app.customer().await;
    let id = active_contract(&app, &admin, &customer).await;
    // First installment due 2026-03-09; grace 2 days; on 03-12 it is 3 days late.
    advance_days(&app, 10, &mut [&mut admin]).await;
    let d = app
        .eventually("the job to age the contract", || async {
            let d = contract(&app, &admin.token, &id).await;
            (d["days_past_due"] == 3).then_some(d)
        })
        .await;
    assert_eq!(d["bucket"], "1-7");
    assert_eq!(d["schedule"][1]["state"], "overdue");
    assert_eq!(d["schedule"][1]["due"]["penalties_minor"], 500_00);
    assert_eq!(d["balances"]["overdue_minor"], 2_454_00 + 500_00);
    assert_eq!(d["balances"]["outstanding_penalties_minor"], 500_00);
    // Later days charge the next installment its own fee, never the first again.
    advance_days(&app, 7, &mut [&mut admin]).await;
    let d = app
        .eventually("the next day's ageing", || async {
            let d = contract(&app, &admin.token, &id).await;
            (d["days_past_due"] == 10).then_some(d)
        })
        .await;
    assert_eq!(d["bucket"], "8-30");
    assert_eq!(d["balances"]["outstanding_penalties_minor"], 1_000_00);
    assert_eq!(d["schedule"][1]["due"]["penalties_minor"], 500_00);
    let (_, list) = app
        .get("/api/v1/contracts?bucket=8-30", Some(&admin.token))
        .await;
    assert_eq!(list["items"][0]["id"], id.as_str());
    // Paying penalties first, then the oldest installment, brings it current.
    let owed = d["balances"]["overdue_minor"].as_i64().unwrap();
    let (_, r) = pay(&app, &admin.token, &id, owed).await;
    assert_eq!(r["contract"]["bucket"], "current");
    assert_eq!(r["contract"]["days_past_due"], 0);
    assert_eq!(r["contract"]["balances"]["outstanding_penalties_minor"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_pause_stops_fees_and_moves_the_remaining_due_dates() {
    let app = spawn().await;
    let mut admin = app.admin().await;
    let customer = app.customer().await;
    let id = active_contract(&app, &admin, &customer).await;
    let (status, d) = app
        .post(
            &format!("/api/v1/contracts/{id}/pause"),
            Some(&admin.token),
            json!({"days": 14, "reason": "in hospital"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["status"], "paused");
    let (status, body) = app
        .post(
            &format!("/api/v1/contracts/{id}/pause"),
            Some(&admin.token),
            json!({"days": 14, "reason": "again"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    // Ten days on: the first installment's date has passed, but no fee and no arrears.
    advance_days(&app, 10, &mut [&mut admin]).await;
    app.eventually("the job to pass over the paused contract", || async {
        let db = app.runtime().deps("payments").unwrap().db.clone();
        let aged: String = sqlx::query_scalar("SELECT aged_through FROM contracts WHERE id = $1")
            .bind(&id)
            .fetch_one(db.reader())
            .await
            .ok()?;
        (aged == "2026-03-12").then_some(())
    })
    .await;
    let d = contract(&app, &admin.token, &id).await;
    assert_eq!(d["days_past_due"], 0);
    assert_eq!(d["balances"]["outstanding_penalties_minor"], 0);
    let (status, d) = app
        .post(
            &format!("/api/v1/contracts/{id}/resume"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["status"], "active");
    // Paused on 03-02, resumed on 03-12: the remaining dates moved ten days.
    assert_eq!(d["schedule"][1]["due_date"], "2026-03-19");
    assert_eq!(d["days_past_due"], 0);
    app.stop().await;
}

#[tokio::test]
async fn default_then_write_off_clears_the_receivables() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let id = active_contract(&app, &admin, &customer).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/contracts/{id}/write-off"),
            Some(&admin.token),
            json!({"reason": "lost"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, d) = app
        .post(
            &format!("/api/v1/contracts/{id}/default"),
            Some(&admin.token),
            json!({"reason": "absconded"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["status"], "defaulted");
    let (status, d) = app
        .post(
            &format!("/api/v1/contracts/{id}/write-off"),
            Some(&admin.token),
            json!({"reason": "vehicle not recovered"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["status"], "written_off");
    assert_eq!(d["balances"]["outstanding_total_minor"], 0);
    let (status, body) = pay(&app, &admin.token, &id, 100).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn the_payments_database_runs_with_full_synchronous_commits() {
    let app = spawn().await;
    let db = &app.runtime().deps("payments").expect("payments").db;
    if let Some(level) = db.sqlite_synchronous().await.unwrap() {
        assert_eq!(level, 2, "payments must run synchronous = FULL");
    }
    let users = &app.users().db;
    if let Some(level) = users.sqlite_synchronous().await.unwrap() {
        assert_eq!(level, 1, "other services keep NORMAL");
    }
    app.stop().await;
}

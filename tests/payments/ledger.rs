//! Payments into the ledger: activation, allocation, overpayment, reversal,
//! statements, payoff, and who may do what.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn the_deposit_activates_and_payments_are_allocated_oldest_first() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let mut customer = app.customer_of(&agent).await;
    wait_for_customer(&app, customer.id).await;
    let p = create_product(&app, &admin, boda_product()).await;
    let c = create_contract(
        &app,
        &admin,
        contract_body(&p, customer.id, 165_000_00, 33_000_00, 78),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let deposit = deposit_due(&c);
    assert_eq!(deposit, 33_000_00 + 2_640_00);

    // A part of the deposit: still pending.
    let (status, r) = pay(&app, &agent.token, id, 10_000_00).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["contract"]["status"], "pending_deposit");
    assert_eq!(r["payment"]["status"], "succeeded");
    // Fees come first in the allocation order, then the deposit.
    assert_eq!(r["contract"]["schedule"][0]["paid"]["fees_minor"], 2_640_00);
    assert_eq!(
        r["contract"]["schedule"][0]["paid"]["principal_minor"],
        10_000_00 - 2_640_00
    );
    assert_eq!(r["contract"]["schedule"][0]["state"], "partially_paid");

    // The rest, plus 3,000 more: active from today, the extra waits as credit.
    let (status, r) = pay(&app, &agent.token, id, deposit - 10_000_00 + 3_000_00).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let c = &r["contract"];
    assert_eq!(c["status"], "active");
    assert_eq!(c["start_date"], "2026-03-02");
    assert_eq!(c["schedule"][1]["due_date"], "2026-03-09");
    assert_eq!(c["schedule"][1]["state"], "upcoming");
    assert_eq!(c["balances"]["credit_minor"], 3_000_00);
    assert_eq!(c["balances"]["next_due_date"], "2026-03-09");
    assert_eq!(c["balances"]["next_due_minor"], 2_454_00);
    assert_eq!(c["balances"]["paid_to_date_minor"], deposit);

    // A week on, the daily job applies the waiting credit to what fell due.
    advance_days(&app, 7, &mut [&mut customer]).await;
    let detail = app
        .eventually("the credit to be applied", || async {
            let d = contract(&app, &customer.token, id).await;
            (d["schedule"][1]["state"] == "paid").then_some(d)
        })
        .await;
    assert_eq!(detail["schedule"][1]["paid_minor"], 2_454_00);
    assert_eq!(detail["balances"]["credit_minor"], 3_000_00 - 2_454_00);
    assert_eq!(detail["schedule"][2]["paid_minor"], 0);

    // The statement: charges and payments with a running balance, in JSON and CSV.
    let (status, s) = app
        .get(
            &format!("/api/v1/contracts/{id}/statement"),
            Some(&customer.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let lines = s["lines"].as_array().unwrap();
    assert_eq!(lines[0]["kind"], "origination");
    assert_eq!(lines[0]["debit_minor"], c["total_payable_minor"]);
    assert_eq!(lines[1]["credit_minor"], 10_000_00);
    let last = lines.last().unwrap();
    assert_eq!(
        last["balance_minor"].as_i64().unwrap(),
        c["total_payable_minor"].as_i64().unwrap() - deposit - 3_000_00
    );
    assert_eq!(s["balance_minor"], last["balance_minor"]);
    let csv = app
        .client
        .get(app.url(&format!("/api/v1/contracts/{id}/statement")))
        .bearer_auth(&customer.token)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].starts_with("date,posted_at,kind,description"));
    assert_eq!(rows.len(), lines.len() + 1);

    // The payment itself, for those who may see it.
    let pid = r["payment"]["id"].as_str().unwrap();
    let (status, got) = app
        .get(&format!("/api/v1/payments/{pid}"), Some(&customer.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["method"], "cash");
    let stranger = app.customer().await;
    let _ = &admin;
    let (status, _) = app
        .get(&format!("/api/v1/payments/{pid}"), Some(&stranger.token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn payments_are_refused_clearly_and_change_nothing() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let other_agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    wait_for_customer(&app, customer.id).await;
    let p = create_product(&app, &admin, boda_product()).await;
    let c = create_contract(
        &app,
        &admin,
        contract_body(&p, customer.id, 165_000_00, 33_000_00, 78),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let path = format!("/api/v1/contracts/{id}/payments");
    let (status, body) = pay(&app, &customer.token, id, 100).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = pay(&app, &other_agent.token, id, 100).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    for (payload, field) in [
        (json!({"amount_minor": 0, "method": "cash"}), "amount_minor"),
        (
            json!({"amount_minor": -5, "method": "cash"}),
            "amount_minor",
        ),
        (json!({"method": "cash"}), "amount_minor"),
        (json!({"amount_minor": 100, "method": "cheque"}), "method"),
        (
            json!({"amount_minor": "100", "method": "cash"}),
            "amount_minor",
        ),
    ] {
        let (status, body, _) = post_idem(&app, &path, &agent.token, Some(&key()), payload).await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert_eq!(invalid_fields(&body), vec![field], "{body}");
    }
    let (status, body, _) = post_idem(
        &app,
        &path,
        &agent.token,
        None,
        json!({"amount_minor": 100, "method": "cash"}),
    )
    .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "bad-request");
    let (status, body) = pay(&app, &agent.token, &uuid::Uuid::now_v7().to_string(), 100).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    // Nothing moved.
    let d = contract(&app, &admin.token, id).await;
    assert_eq!(d["balances"]["paid_to_date_minor"], 0);
    assert_eq!(d["balances"]["credit_minor"], 0);
    let (_, s) = app
        .get(
            &format!("/api/v1/contracts/{id}/statement"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(s["lines"].as_array().unwrap().len(), 1);

    // A retried payment is taken once.
    let k = key();
    let body = json!({"amount_minor": 5_000_00, "method": "cash"});
    let (s1, first, _) = post_idem(&app, &path, &agent.token, Some(&k), body.clone()).await;
    let (s2, second, replayed) = post_idem(&app, &path, &agent.token, Some(&k), body).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert!(replayed);
    assert_eq!(first["payment"]["id"], second["payment"]["id"]);
    let d = contract(&app, &admin.token, id).await;
    assert_eq!(d["balances"]["paid_to_date_minor"], 5_000_00);
    app.stop().await;
}

#[tokio::test]
async fn reversals_take_money_back_out_of_the_ledger() {
    let app = spawn().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    wait_for_customer(&app, customer.id).await;
    let p = create_product(&app, &admin, boda_product()).await;
    let c = create_contract(
        &app,
        &admin,
        contract_body(&p, customer.id, 165_000_00, 33_000_00, 78),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let (_, r) = pay(&app, &admin.token, id, deposit_due(&c)).await;
    assert_eq!(r["contract"]["status"], "active");
    let pid = r["payment"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/payments/{pid}/reverse");
    let (status, body, _) = post_idem(
        &app,
        &path,
        &agent.token,
        Some(&key()),
        json!({"reason": "counterfeit notes"}),
    )
    .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body, _) = post_idem(&app, &path, &admin.token, Some(&key()), json!({})).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert_eq!(invalid_fields(&body), vec!["reason"]);
    let (status, reversed, _) = post_idem(
        &app,
        &path,
        &admin.token,
        Some(&key()),
        json!({"reason": "counterfeit notes"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reversed}");
    assert_eq!(reversed["status"], "reversed");
    assert_eq!(reversed["reversal_reason"], "counterfeit notes");
    let (status, body, _) = post_idem(
        &app,
        &path,
        &admin.token,
        Some(&key()),
        json!({"reason": "again"}),
    )
    .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let d = contract(&app, &admin.token, id).await;
    assert_eq!(d["balances"]["paid_to_date_minor"], 0);
    assert_eq!(
        d["balances"]["outstanding_total_minor"],
        d["total_payable_minor"]
    );
    let (_, s) = app
        .get(
            &format!("/api/v1/contracts/{id}/statement"),
            Some(&admin.token),
        )
        .await;
    let kinds: Vec<&str> = s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["origination", "payment", "reversal"]);
    assert_eq!(s["balance_minor"], d["total_payable_minor"]);
    app.stop().await;
}

#[tokio::test]
async fn paying_the_total_payable_pays_the_contract_off() {
    let app = spawn().await;
    let admin = app.admin().await;
    let customer = app.customer().await;
    let p = create_product(&app, &admin, monthly_product()).await;
    let c = create_contract(
        &app,
        &admin,
        contract_body(&p, customer.id, 1_000_000_00, 200_000_00, 6),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let (status, q) = app
        .post(
            &format!("/api/v1/contracts/{id}/payoff-quote"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{q}");
    assert_eq!(q["amount_minor"], c["total_payable_minor"]);
    assert_eq!(q["breakdown"]["principal_minor"], 1_000_000_00);
    assert!(
        q["valid_until"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-02T21:00:00"),
        "{q}"
    );
    let (status, r) = pay(
        &app,
        &admin.token,
        id,
        c["total_payable_minor"].as_i64().unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["contract"]["status"], "paid_off");
    assert_eq!(r["contract"]["balances"]["outstanding_total_minor"], 0);
    assert_eq!(r["contract"]["balances"]["credit_minor"], 0);
    assert!(r["contract"]["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["state"] == "paid"));
    let (status, body) = pay(&app, &admin.token, id, 100).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    app.stop().await;
}

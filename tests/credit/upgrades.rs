//! Upgrade requests across support, payments, credit and vehicles: a
//! customer in good standing asks for a bigger bike, an admin approves, the
//! equity becomes the deposit of a credit application for it, and when the
//! new contract activates the old one closes as `upgraded` and its bike goes
//! back to the workshop.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::payment_support::{advance_days, contract, deposit_due, pay};
use crate::support::*;
use crate::vehicle_support::{list_vehicle, motorcycle, with};

/// A steady rider's monthly income, and their statement.
const INCOME: i64 = 150_000_00;

/// `s`'s application accepted and its deposit paid in cash by the agent:
/// the contract is active. Returns its id.
async fn active_contract(app: &TestApp, s: &Setup) -> String {
    let mut application = body(s, 40_000_00, 52, INCOME);
    application["customer_id"] = json!(s.customer.id);
    let csv = statement(&Shape::steady(INCOME));
    let (status, a) = apply_multipart(app, &s.agent.token, &application, Some(&csv)).await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    assert_eq!(a["status"], "approved", "{a}");
    let (status, accepted) =
        accept(app, &s.customer.token, a["id"].as_str().unwrap(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let id = contract_of(
        app,
        &s.agent.token,
        &a["id"],
        "payments to write the contract",
    )
    .await;
    let detail = contract(app, &s.agent.token, &id).await;
    let (status, paid) = pay(app, &s.agent.token, &id, deposit_due(&detail)).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    assert_eq!(contract(app, &s.agent.token, &id).await["status"], "active");
    id
}

/// Waits until support knows the customer's credit band.
async fn wait_for_band(app: &TestApp, customer: &Account) {
    let db = app.runtime().deps("support").expect("support").db.clone();
    let id = customer.id.to_string();
    app.eventually("support to hear the credit score", || {
        let (db, id) = (db.clone(), id.clone());
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM credit_bands WHERE customer_id = $1")
                    .bind(id)
                    .fetch_one(db.reader())
                    .await
                    .ok()?;
            (n == 1).then_some(())
        }
    })
    .await;
}

fn check<'a>(request: &'a Value, code: &str) -> &'a Value {
    request["assessment"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["code"] == code))
        .unwrap_or_else(|| panic!("no check {code}: {request}"))
}

async fn request_upgrade(
    app: &TestApp,
    token: &str,
    contract_id: &str,
    vehicle: &str,
) -> (StatusCode, Value) {
    app.post(
        "/api/v1/upgrade-requests",
        Some(token),
        json!({"contract_id": contract_id, "desired_vehicle_id": vehicle}),
    )
    .await
}

/// Waits for the contract payments writes from `application`; returns its id.
async fn contract_of(app: &TestApp, token: &str, application: &Value, what: &str) -> String {
    let c = app
        .eventually(what, || async {
            let (_, page) = app.get("/api/v1/contracts", Some(token)).await;
            page["items"]
                .as_array()?
                .iter()
                .find(|c| c["application_id"] == *application)
                .cloned()
        })
        .await;
    c["id"].as_str().unwrap().to_owned()
}

async fn decide(app: &TestApp, token: &str, request: &str, body: Value) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/upgrade-requests/{request}/decision"),
        Some(token),
        body,
    )
    .await
}

async fn reserve(app: &TestApp, token: &str, vehicle: &str) {
    let (status, reservation) = app
        .post(
            &format!("/api/v1/vehicles/{vehicle}/reservations"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reservation}");
}

/// An application for `vehicle` carrying upgrade `request` (the deposit left to default).
fn upgrade_application(s: &Setup, vehicle: &str, request: &str) -> Value {
    json!({
        "vehicle_id": vehicle,
        "product_id": s.product_id,
        "term_periods": 52,
        "occupation": "boda_rider",
        "income": {"declared_minor": INCOME, "frequency": "monthly"},
        "upgrade_request_id": request,
    })
}

fn bigger_bike() -> Value {
    with(
        motorcycle(),
        json!({"make": "TVS", "model": "Apache RTR 200", "price_minor": 250_000_00i64, "engine_cc": 200}),
    )
}

#[tokio::test]
async fn an_upgrade_goes_from_eligibility_to_the_old_contract_closing() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let old = active_contract(&app, &s).await;
    wait_for_band(&app, &s.customer).await;
    let bigger = list_vehicle(&app, &s.admin, bigger_bike()).await;
    let bigger_id = bigger["id"].as_str().unwrap().to_owned();

    // Only the deposit is paid: too little of the contract to upgrade yet.
    let (status, early) = request_upgrade(&app, &s.customer.token, &old, &bigger_id).await;
    assert_eq!(status, StatusCode::CREATED, "{early}");
    assert_eq!(early["status"], "ineligible", "{early}");
    assert_eq!(check(&early, "paid_share")["met"], false, "{early}");
    for met in [
        "contract_active",
        "days_past_due",
        "credit_band",
        "vehicle_available",
        "bigger_vehicle",
    ] {
        assert_eq!(check(&early, met)["met"], true, "{met}: {early}");
    }
    assert_eq!(early["history"][0]["to"], "ineligible");
    let (status, body) = decide(
        &app,
        &s.admin.token,
        early["id"].as_str().unwrap(),
        json!({"decision": "approve", "reason": "looks fine"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an ineligible request is not decided: {body}"
    );

    // A lump paid ahead (held as credit) brings the paid share over 30%.
    let (status, paid) = pay(&app, &s.agent.token, &old, 40_000_00).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    let before = contract(&app, &s.agent.token, &old).await;

    // The agent asks for the customer; a second open request is refused.
    let (status, r) = request_upgrade(&app, &s.agent.token, &old, &bigger_id).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"], "pending_review", "{r}");
    assert_eq!(r["assessment"]["eligible"], true, "{r}");
    let a = &r["assessment"];
    // The same day: no depreciation; interest not yet due is not owed.
    assert_eq!(a["trade_in_value_minor"], 165_000_00i64);
    let owed = before["balances"]["outstanding_principal_minor"]
        .as_i64()
        .unwrap()
        + before["balances"]["outstanding_fees_minor"]
            .as_i64()
            .unwrap()
        + before["balances"]["outstanding_penalties_minor"]
            .as_i64()
            .unwrap();
    let credit = before["balances"]["credit_minor"].as_i64().unwrap();
    assert_eq!(credit, 40_000_00);
    let equity = 165_000_00 - owed + credit;
    assert_eq!(a["equity_minor"], equity, "{r}");
    let (status, again) = request_upgrade(&app, &s.customer.token, &old, &bigger_id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let rid = r["id"].as_str().unwrap().to_owned();

    // Customers and agents do not decide; a decision needs a reason.
    for token in [&s.customer.token, &s.agent.token] {
        let (status, body) = decide(
            &app,
            token,
            &rid,
            json!({"decision": "approve", "reason": "self-approved"}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = decide(&app, &s.admin.token, &rid, json!({"decision": "approve"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(invalid_fields(&body), vec!["reason"]);
    let (status, approved) = decide(
        &app,
        &s.admin.token,
        &rid,
        json!({"decision": "approve", "reason": "two years of clean payments"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], json!(s.admin.id));
    let (status, body) = app
        .post(
            &format!("/api/v1/upgrade-requests/{rid}/cancel"),
            Some(&s.customer.token),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an approved request stands: {body}"
    );

    // The customer reserves the bigger bike and applies with the upgrade:
    // the deposit defaults to the equity.
    reserve(&app, &s.customer.token, &bigger_id).await;
    let mut application = upgrade_application(&s, &bigger_id, &rid);
    let csv = statement(&Shape::steady(INCOME));
    let a = app
        .eventually(
            "credit to hear the approval and the reservation",
            || async {
                let (status, a) =
                    apply_multipart(&app, &s.customer.token, &application, Some(&csv)).await;
                (status == StatusCode::CREATED).then_some(a)
            },
        )
        .await;
    assert_eq!(a["status"], "approved", "{a}");
    assert_eq!(a["deposit_minor"], equity, "{a}");
    assert_eq!(a["upgrade"]["upgrade_request_id"], rid);
    // The upgrade is the customer's own and is taken once.
    application["upgrade_request_id"] = json!(uuid::Uuid::now_v7());
    let (status, body) = apply_multipart(&app, &s.customer.token, &application, Some(&csv)).await;
    assert!(status.is_client_error(), "{status} {body}");

    let (status, accepted) = accept(
        &app,
        &s.customer.token,
        a["id"].as_str().unwrap(),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let new_id = contract_of(
        &app,
        &s.customer.token,
        &a["id"],
        "payments to write the new contract",
    )
    .await;
    let detail = contract(&app, &s.customer.token, &new_id).await;
    // The equity covers the deposit; the processing fee is still to pay.
    assert_eq!(detail["status"], "pending_deposit", "{detail}");
    assert_eq!(
        contract(&app, &s.customer.token, &old).await["status"],
        "active"
    );
    let fee = deposit_due(&detail) - equity;
    assert!(fee > 0, "{detail}");
    let (status, paid) = pay(&app, &s.agent.token, &new_id, fee).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");

    // One commit: the old contract traded in, the new one active on its equity.
    let new_detail = contract(&app, &s.customer.token, &new_id).await;
    assert_eq!(new_detail["status"], "active", "{new_detail}");
    let old_detail = contract(&app, &s.customer.token, &old).await;
    assert_eq!(old_detail["status"], "upgraded", "{old_detail}");
    assert_eq!(old_detail["balances"]["outstanding_total_minor"], 0);
    assert_eq!(old_detail["balances"]["credit_minor"], 0);
    // The equity came in as a payment whose id is the upgrade request's.
    let (status, trade_in) = app
        .get(&format!("/api/v1/payments/{rid}"), Some(&s.customer.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{trade_in}");
    assert_eq!(trade_in["method"], "trade_in");
    assert_eq!(trade_in["contract_id"], json!(new_id));
    assert_eq!(trade_in["amount_minor"], equity);
    let report = miliki_payments::verify::verify(&app.runtime().deps("payments").unwrap().db)
        .await
        .unwrap();
    assert_eq!(report.difference, None);

    // The old bike goes to the workshop, the new one is under contract, and
    // the request is completed.
    let old_vehicle = s.vehicle_id.clone();
    app.eventually("the traded-in bike to go to maintenance", || async {
        let (_, v) = app
            .get(
                &format!("/api/v1/vehicles/{old_vehicle}"),
                Some(&s.admin.token),
            )
            .await;
        (v["status"] == "in_maintenance").then_some(())
    })
    .await;
    app.eventually("the bigger bike to go under contract", || async {
        let (_, v) = app
            .get(
                &format!("/api/v1/vehicles/{bigger_id}"),
                Some(&s.admin.token),
            )
            .await;
        (v["status"] == "under_contract").then_some(())
    })
    .await;
    let done = app
        .eventually("the request to complete", || async {
            let (_, r) = app
                .get(
                    &format!("/api/v1/upgrade-requests/{rid}"),
                    Some(&s.customer.token),
                )
                .await;
            (r["status"] == "completed").then_some(r)
        })
        .await;
    assert_eq!(done["new_contract_id"], json!(new_id));
    let states: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending_review", "approved", "completed"]);
    assert_eq!(done["history"][0]["actor_id"], json!(s.agent.id));
    assert_eq!(done["history"][1]["actor_id"], json!(s.admin.id));
    assert_eq!(done["history"][2]["actor_id"], Value::Null);

    // The customer was told of the approval and the completion.
    app.eventually("the upgrade notifications", || async {
        let (_, page) = app
            .get("/api/v1/notifications?limit=100", Some(&s.customer.token))
            .await;
        let templates: Vec<&str> = page["items"]
            .as_array()?
            .iter()
            .filter_map(|n| n["template"].as_str())
            .collect();
        (templates.contains(&"upgrade_approved") && templates.contains(&"upgrade_completed"))
            .then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn upgrade_requests_refuse_other_owners_wrong_roles_and_bad_input() {
    let app = TestApp::spawn().await;
    let mut s = setup(&app).await;
    let old = active_contract(&app, &s).await;
    let bigger = list_vehicle(&app, &s.admin, bigger_bike()).await;
    let bigger_id = bigger["id"].as_str().unwrap().to_owned();

    // Another customer, another agent: the contract is not theirs to see.
    let stranger = app.customer().await;
    let other_agent = app.agent().await;
    for token in [&stranger.token, &other_agent.token] {
        let (status, body) = request_upgrade(&app, token, &old, &bigger_id).await;
        assert_problem(status, &body, StatusCode::NOT_FOUND, "not-found");
    }
    // Admins decide requests; they do not make them.
    let (status, body) = request_upgrade(&app, &s.admin.token, &old, &bigger_id).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Missing, malformed and unknown fields.
    let (status, body) = app
        .post(
            "/api/v1/upgrade-requests",
            Some(&s.customer.token),
            json!({"contract_id": old}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(invalid_fields(&body), vec!["desired_vehicle_id"]);
    let (status, body) = app
        .post(
            "/api/v1/upgrade-requests",
            Some(&s.customer.token),
            json!({"contract_id": old, "desired_vehicle_id": bigger_id, "equity_minor": 1}),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) = app
        .post(
            "/api/v1/upgrade-requests",
            Some(&s.customer.token),
            json!({"contract_id": "not-a-uuid", "desired_vehicle_id": bigger_id}),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) = app
        .post(
            "/api/v1/upgrade-requests",
            None,
            json!({"contract_id": old, "desired_vehicle_id": bigger_id}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (_, page) = app
        .get("/api/v1/upgrade-requests", Some(&s.admin.token))
        .await;
    assert_eq!(page["items"], json!([]), "nothing was recorded: {page}");

    // The same bike, or one that is not bigger, is not an upgrade.
    let (status, same) = request_upgrade(&app, &s.customer.token, &old, &s.vehicle_id).await;
    assert_eq!(status, StatusCode::CREATED, "{same}");
    assert_eq!(same["status"], "ineligible");
    assert_eq!(check(&same, "bigger_vehicle")["met"], false, "{same}");
    assert_eq!(check(&same, "vehicle_available")["met"], false, "{same}");

    // Requests are seen by their customer, the customer's agent and admins only.
    let id = same["id"].as_str().unwrap();
    for (token, seen) in [
        (&s.customer.token, true),
        (&s.agent.token, true),
        (&s.admin.token, true),
        (&stranger.token, false),
        (&other_agent.token, false),
    ] {
        let (status, _) = app
            .get(&format!("/api/v1/upgrade-requests/{id}"), Some(token))
            .await;
        assert_eq!(status == StatusCode::OK, seen, "{status}");
        let (_, page) = app.get("/api/v1/upgrade-requests", Some(token)).await;
        assert_eq!(page["items"].as_array().unwrap().len(), usize::from(seen));
    }

    // A pending request is declined with a reason the customer is told, or
    // withdrawn by them; neither can then be decided again.
    let (status, paid) = pay(&app, &s.agent.token, &old, 40_000_00).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    wait_for_band(&app, &s.customer).await;
    let (status, r) = request_upgrade(&app, &s.customer.token, &old, &bigger_id).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"], "pending_review", "{r}");
    let rid = r["id"].as_str().unwrap().to_owned();
    // Control characters in the reason are refused, and nothing is decided.
    let (status, body) = decide(
        &app,
        &s.admin.token,
        &rid,
        json!({"decision": "decline", "reason": "no\u{7}bikes"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(invalid_fields(&body), vec!["reason"]);
    let (status, declined) = decide(
        &app,
        &s.admin.token,
        &rid,
        json!({"decision": "decline", "reason": "the branch has no 200cc bikes to service"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{declined}");
    assert_eq!(declined["status"], "declined");
    assert_eq!(
        declined["decision_reason"],
        "the branch has no 200cc bikes to service"
    );
    let (status, body) = decide(
        &app,
        &s.admin.token,
        &rid,
        json!({"decision": "approve", "reason": "changed my mind"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, r) = request_upgrade(&app, &s.customer.token, &old, &bigger_id).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let rid = r["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            &format!("/api/v1/upgrade-requests/{rid}/cancel"),
            Some(&stranger.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, cancelled) = app
        .post(
            &format!("/api/v1/upgrade-requests/{rid}/cancel"),
            Some(&s.customer.token),
            json!({"reason": "I will keep my bike"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");

    // An approval not taken up within 30 days lapses: the request expires,
    // credit refuses to carry it, and the contract may be asked for again.
    let (status, r) = request_upgrade(&app, &s.customer.token, &old, &bigger_id).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let rid = r["id"].as_str().unwrap().to_owned();
    let (status, approved) = decide(
        &app,
        &s.admin.token,
        &rid,
        json!({"decision": "approve", "reason": "fine"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert!(approved["valid_until"].is_string(), "{approved}");
    // Credit has the approval before the clock moves.
    let credit_db = credit(&app).db.clone();
    app.eventually("credit to hear the approval", || async {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM upgrade_grants WHERE upgrade_request_id = $1")
                .bind(&rid)
                .fetch_one(credit_db.reader())
                .await
                .ok()?;
        (n == 1).then_some(())
    })
    .await;
    advance_days(&app, 31, &mut [&mut s.customer, &mut s.admin]).await;
    app.eventually("the approval to expire", || async {
        let (_, r) = app
            .get(
                &format!("/api/v1/upgrade-requests/{rid}"),
                Some(&s.customer.token),
            )
            .await;
        (r["status"] == "expired").then_some(())
    })
    .await;
    reserve(&app, &s.customer.token, &bigger_id).await;
    let csv = statement(&Shape::steady(INCOME));
    let application = upgrade_application(&s, &bigger_id, &rid);
    let (status, body) = apply_multipart(&app, &s.customer.token, &application, Some(&csv)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("ran out"),
        "{body}"
    );
    app.eventually("the decline notification", || async {
        let (_, page) = app
            .get("/api/v1/notifications?limit=100", Some(&s.customer.token))
            .await;
        page["items"]
            .as_array()?
            .iter()
            .any(|n| n["template"] == "upgrade_declined")
            .then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_upgrade_waits_while_the_old_contract_is_paused_and_trades_in_after_it_resumes() {
    let app = TestApp::spawn().await;
    let mut s = setup(&app).await;
    let old = active_contract(&app, &s).await;
    wait_for_band(&app, &s.customer).await;
    let bigger = list_vehicle(&app, &s.admin, bigger_bike()).await;
    let bigger_id = bigger["id"].as_str().unwrap().to_owned();
    let (status, paid) = pay(&app, &s.agent.token, &old, 40_000_00).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    let (status, r) = request_upgrade(&app, &s.customer.token, &old, &bigger_id).await;
    assert_eq!(r["status"], "pending_review", "{status} {r}");
    let rid = r["id"].as_str().unwrap().to_owned();
    let (status, approved) = decide(
        &app,
        &s.admin.token,
        &rid,
        json!({"decision": "approve", "reason": "a good year"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    reserve(&app, &s.customer.token, &bigger_id).await;
    let application = upgrade_application(&s, &bigger_id, &rid);
    let csv = statement(&Shape::steady(INCOME));
    let a = app
        .eventually("credit to hear the approval", || async {
            let (status, a) =
                apply_multipart(&app, &s.customer.token, &application, Some(&csv)).await;
            (status == StatusCode::CREATED).then_some(a)
        })
        .await;
    assert_eq!(a["status"], "approved", "{a}");

    // The old contract is paused (hardship) before the new one is accepted and paid.
    let (status, paused) = app
        .post(
            &format!("/api/v1/contracts/{old}/pause"),
            Some(&s.admin.token),
            json!({"days": 14, "reason": "in hospital"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    let (status, accepted) = accept(
        &app,
        &s.customer.token,
        a["id"].as_str().unwrap(),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let new_id = contract_of(
        &app,
        &s.customer.token,
        &a["id"],
        "payments to write the new contract though the old is paused",
    )
    .await;
    let detail = contract(&app, &s.customer.token, &new_id).await;
    let fee = deposit_due(&detail) - a["deposit_minor"].as_i64().unwrap();
    let (status, paid) = pay(&app, &s.agent.token, &new_id, fee).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    // A paused contract is not traded in: the new one waits, the fee held as credit.
    let waiting = contract(&app, &s.customer.token, &new_id).await;
    assert_eq!(waiting["status"], "pending_deposit", "{waiting}");
    assert_eq!(
        contract(&app, &s.customer.token, &old).await["status"],
        "paused"
    );

    // Resumed, the old contract is traded in by the next day's run.
    let (status, resumed) = app
        .post(
            &format!("/api/v1/contracts/{old}/resume"),
            Some(&s.admin.token),
            json!({"reason": "back at work"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    advance_days(&app, 1, &mut [&mut s.customer]).await;
    let token = s.customer.token.clone();
    app.eventually("the daily run to trade the old contract in", || async {
        let (_, c) = app
            .get(&format!("/api/v1/contracts/{new_id}"), Some(&token))
            .await;
        (c["status"] == "active").then_some(())
    })
    .await;
    assert_eq!(contract(&app, &token, &old).await["status"], "upgraded");
    let report = miliki_payments::verify::verify(&app.runtime().deps("payments").unwrap().db)
        .await
        .unwrap();
    assert_eq!(report.difference, None);
    app.stop().await;
}

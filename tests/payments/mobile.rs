//! Mobile money through the in-process sandboxes, which speak Daraja's and
//! MoMo's wire formats and call back over HTTP: STK push deposits, every
//! outcome the payer's number chooses, callbacks twice or never, forged
//! callbacks, paybill payments and suspense, scheduled collection with its
//! retry rules, and who may do what.

use miliki_platform::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;
use crate::vehicle_support::{eligible_customer, list_vehicle, motorcycle, vehicles};

const SECRET: &str = "test-callback-secret-0123456789";

async fn spawn_mobile(configure: impl FnOnce(&mut miliki_platform::config::Settings)) -> TestApp {
    TestApp::spawn_with(|s| {
        s.extra.insert("payments_arrears_poll_ms".into(), json!(20));
        s.extra.insert("payments_collect_poll_ms".into(), json!(20));
        s.extra.insert("sandbox_answer_ms".into(), json!(20));
        s.extra.insert("callback_secret".into(), json!(SECRET));
        configure(s);
    })
    .await
}

/// A contract of a fresh customer (of a fresh agent), pending its deposit.
struct Fixture {
    admin: Account,
    agent: Account,
    customer: Account,
    contract: Value,
}

impl Fixture {
    fn id(&self) -> &str {
        self.contract["id"].as_str().unwrap()
    }
    fn account(&self) -> &str {
        self.contract["account_number"].as_str().unwrap()
    }
}

async fn fixture(app: &TestApp) -> Fixture {
    let admin = app.admin().await;
    let agent = app.agent().await;
    let customer = app.customer_of(&agent).await;
    wait_for_customer(app, customer.id).await;
    let p = create_product(app, &admin, boda_product()).await;
    let contract = create_contract(
        app,
        &admin,
        contract_body(&p, customer.id, 165_000_00, 33_000_00, 78),
    )
    .await;
    Fixture {
        admin,
        agent,
        customer,
        contract,
    }
}

async fn pay_by(
    app: &TestApp,
    token: &str,
    contract: &str,
    amount: i64,
    method: &str,
    phone: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"amount_minor": amount, "method": method});
    if let Some(p) = phone {
        body["phone"] = json!(p);
    }
    let (status, body, _) = post_idem(
        app,
        &format!("/api/v1/contracts/{contract}/payments"),
        token,
        Some(&key()),
        body,
    )
    .await;
    (status, body)
}

/// Waits until the payment is no longer pending.
async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    app.eventually("the payment to settle", || async {
        let (status, p) = app
            .get(&format!("/api/v1/payments/{id}"), Some(token))
            .await;
        (status == StatusCode::OK && p["status"] != "pending").then_some(p)
    })
    .await
}

async fn statement(app: &TestApp, rail: &str, phone: &str) -> Vec<Value> {
    let (status, body) = app
        .get(
            &format!(
                "/sandbox/{rail}/transactions?phone={}",
                phone.trim_start_matches('+')
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

async fn ledger_payments(app: &TestApp, contract: &str) -> i64 {
    let db = app.runtime().deps("payments").expect("payments").db.clone();
    sqlx::query_scalar("SELECT COUNT(*) FROM payments WHERE contract_id = $1")
        .bind(contract)
        .fetch_one(db.reader())
        .await
        .expect("count")
}

#[tokio::test]
async fn a_deposit_paid_by_stk_push_activates_the_contract_and_the_vehicle() {
    let app = spawn_mobile(|_| {}).await;
    let admin = app.admin().await;
    let customer = eligible_customer(&app, &admin).await;
    let bike = list_vehicle(&app, &admin, motorcycle()).await;
    let vehicle_id = bike["id"].as_str().unwrap().to_owned();
    let (status, reservation) = app
        .post(
            &format!("/api/v1/vehicles/{vehicle_id}/reservations"),
            Some(&customer.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reservation}");
    let p = create_product(&app, &admin, boda_product()).await;
    let c = create_contract(
        &app,
        &admin,
        json!({
            "customer_id": customer.id, "vehicle_id": vehicle_id, "reservation_id": reservation["id"],
            "product_id": p["id"], "price_minor": 165_000_00, "currency": "KES",
            "deposit_minor": 33_000_00, "term_periods": 78
        }),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    let phone = "+254711000010";

    // The customer pays their own deposit from the app: 202, pending.
    let (status, p) = pay_by(
        &app,
        &customer.token,
        id,
        deposit_due(&c),
        "mpesa",
        Some(phone),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{p}");
    assert_eq!(p["status"], "pending");
    assert_eq!(p["method"], "mpesa");
    let pid = p["id"].as_str().unwrap();

    let p = settled(&app, &customer.token, pid).await;
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(p["rail_code"], "0");
    assert_eq!(p["receipt"].as_str().map(str::len), Some(10), "{p}");
    let d = contract(&app, &customer.token, id).await;
    assert_eq!(d["status"], "active");
    assert_eq!(ledger_payments(&app, id).await, 1);
    app.eventually("vehicles to put the bike under contract", || async {
        let status: String = sqlx::query_scalar("SELECT status FROM vehicles WHERE id = $1")
            .bind(&vehicle_id)
            .fetch_one(vehicles(&app).db.reader())
            .await
            .ok()?;
        (status == "under_contract").then_some(())
    })
    .await;

    // The prompt the sandbox saw: Daraja's fields, the account number as reference.
    let sent = statement(&app, "mpesa", phone).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["account"], c["account_number"]);
    assert_eq!(sent[0]["amount"], deposit_due(&c) / 100);

    // The deposit chose how the contract is collected from now on.
    let (status, how) = app
        .get(
            &format!("/api/v1/contracts/{id}/collection"),
            Some(&customer.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{how}");
    assert_eq!(how["rail"], "mpesa");
    assert_eq!(how["collect_at"], "07:00");
    assert!(
        !how["phone"].as_str().unwrap().contains("711000010"),
        "masked: {how}"
    );
    let (_, attempts) = app
        .get(
            &format!("/api/v1/contracts/{id}/collection-attempts"),
            Some(&customer.token),
        )
        .await;
    assert_eq!(attempts.as_array().unwrap().len(), 1);
    assert_eq!(attempts[0]["origin"], "request");
    assert_eq!(attempts[0]["status"], "succeeded");
}

#[tokio::test]
async fn each_payer_outcome_is_reported_with_the_rails_code_and_nothing_is_credited() {
    let app = spawn_mobile(|_| {}).await;
    let f = fixture(&app).await;
    for (phone, code) in [
        ("+254711000021", "1"),
        ("+254711000022", "1032"),
        ("+254711000023", "1037"),
        ("+254711000024", "2001"),
    ] {
        let (status, p) =
            pay_by(&app, &f.agent.token, f.id(), 1_000_00, "mpesa", Some(phone)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{p}");
        let p = settled(&app, &f.agent.token, p["id"].as_str().unwrap()).await;
        assert_eq!(p["status"], "failed", "{p}");
        assert_eq!(p["rail_code"], code, "{p}");
        assert!(p["rail_message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(ledger_payments(&app, f.id()).await, 0);
    assert_eq!(
        contract(&app, &f.agent.token, f.id()).await["status"],
        "pending_deposit"
    );
}

#[tokio::test]
async fn a_callback_delivered_twice_credits_once_and_a_missing_one_is_found_by_the_query() {
    let app = spawn_mobile(|_| {}).await;
    let f = fixture(&app).await;

    // Digit 6: success, the callback arrives twice.
    let twice = "+254711000036";
    let (_, p) = pay_by(
        &app,
        &f.customer.token,
        f.id(),
        10_000_00,
        "mpesa",
        Some(twice),
    )
    .await;
    let p = settled(&app, &f.customer.token, p["id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "succeeded");
    app.eventually("the second delivery", || async {
        let s = statement(&app, "mpesa", twice).await;
        (s[0]["callbacks_delivered"] == 2).then_some(())
    })
    .await;
    // Give the second delivery's check every chance to credit again.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(ledger_payments(&app, f.id()).await, 1);

    // Digit 5: success, no callback ever. Pending until the query a minute on.
    let silent = "+254711000045";
    let (_, p) = pay_by(
        &app,
        &f.customer.token,
        f.id(),
        5_000_00,
        "mpesa",
        Some(silent),
    )
    .await;
    let pid = p["id"].as_str().unwrap().to_owned();
    app.eventually("the silent payer to have paid at the rail", || async {
        let s = statement(&app, "mpesa", silent).await;
        (s.first()?["status"] == "succeeded").then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (_, still) = app
        .get(&format!("/api/v1/payments/{pid}"), Some(&f.customer.token))
        .await;
    assert_eq!(
        still["status"], "pending",
        "no callback, no credit yet: {still}"
    );
    app.clock.advance(chrono::Duration::seconds(61));
    let p = settled(&app, &f.customer.token, &pid).await;
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(ledger_payments(&app, f.id()).await, 2);
    let d = contract(&app, &f.customer.token, f.id()).await;
    assert_eq!(d["balances"]["paid_to_date_minor"], 15_000_00);
}

#[tokio::test]
async fn a_forged_callback_credits_nothing_and_is_kept_for_review() {
    let app = spawn_mobile(|_| {}).await;
    let f = fixture(&app).await;
    let forged = json!({"Body": {"stkCallback": {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": "ws_CO_191220191020363925",
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": 1000},
            {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
            {"Name": "Balance"},
            {"Name": "TransactionDate", "Value": 20191219102115_i64},
            {"Name": "PhoneNumber", "Value": 254711000050_i64}
        ]}
    }}});
    // Without the secret the URL does not exist.
    let (status, _) = app
        .post(
            "/api/v1/callbacks/mpesa/not-the-secret/stk",
            None,
            forged.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // With it, a success for a request nobody made credits nothing.
    let (status, answer) = app
        .post(
            &format!("/api/v1/callbacks/mpesa/{SECRET}/stk"),
            None,
            forged.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ResultCode"], 0);

    // A forged success for a real prompt the payer is about to cancel: the
    // service asks the rail, which says cancelled.
    let phone = "+254711000052";
    let (_, p) = pay_by(&app, &f.agent.token, f.id(), 1_000_00, "mpesa", Some(phone)).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let checkout = app
        .eventually("the prompt at the rail", || async {
            let s = statement(&app, "mpesa", phone).await;
            s.first()?["id"].as_str().map(str::to_owned)
        })
        .await;
    let mut lie = forged.clone();
    lie["Body"]["stkCallback"]["CheckoutRequestID"] = json!(checkout);
    lie["Body"]["stkCallback"]["CallbackMetadata"]["Item"][4]["Value"] = json!(254711000052_i64);
    let (status, _) = app
        .post(&format!("/api/v1/callbacks/mpesa/{SECRET}/stk"), None, lie)
        .await;
    assert_eq!(status, StatusCode::OK);
    let p = settled(&app, &f.agent.token, &pid).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["rail_code"], "1032");
    assert_eq!(ledger_payments(&app, f.id()).await, 0);

    // Malformed bodies are refused; the reviews list is for admins only.
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/callbacks/mpesa/{SECRET}/stk")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (status, _) = app
        .get("/api/v1/callbacks/reviews", Some(&f.agent.token))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, reviews) = app
        .get("/api/v1/callbacks/reviews", Some(&f.admin.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        reviews
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reference"] == "ws_CO_191220191020363925"),
        "{reviews}"
    );
}

#[tokio::test]
async fn paybill_payments_are_credited_by_account_number_or_refused() {
    let app = spawn_mobile(|_| {}).await;
    let f = fixture(&app).await;
    let deposit = deposit_due(&f.contract);
    let (status, r) = app
        .post(
            "/sandbox/mpesa/c2b/simulate",
            None,
            json!({"phone": "254711000060", "amount": deposit / 100, "account": f.account().to_lowercase()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["accepted"], true, "{r}");
    app.eventually("the paybill payment to be credited", || async {
        let d = contract(&app, &f.customer.token, f.id()).await;
        (d["status"] == "active").then_some(())
    })
    .await;
    assert_eq!(ledger_payments(&app, f.id()).await, 1);

    // Validation refuses an account number no contract has: nothing is paid.
    let (status, r) = app
        .post(
            "/sandbox/mpesa/c2b/simulate",
            None,
            json!({"phone": "254711000061", "amount": 500, "account": "MLKNOSUCH"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["accepted"], false, "{r}");
    let (_, suspense) = app
        .get("/api/v1/payments/suspense", Some(&f.admin.token))
        .await;
    assert_eq!(suspense.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn paybill_money_for_an_unknown_account_waits_in_suspense_until_an_admin_assigns_it() {
    let app = spawn_mobile(|s| {
        s.extra
            .insert("mpesa_c2b_validate_accounts".into(), json!("false"));
    })
    .await;
    let f = fixture(&app).await;
    let deposit = deposit_due(&f.contract);
    let (status, r) = app
        .post(
            "/sandbox/mpesa/c2b/simulate",
            None,
            json!({"phone": "254711000070", "amount": deposit / 100, "account": "MY BIKE"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let held = app
        .eventually("the payment to land in suspense", || async {
            let (_, s) = app
                .get("/api/v1/payments/suspense", Some(&f.admin.token))
                .await;
            s.as_array()?.first().cloned()
        })
        .await;
    assert_eq!(held["status"], "suspense");
    assert_eq!(held["amount_minor"], deposit);
    assert!(held["contract_id"].is_null());
    let pid = held["id"].as_str().unwrap();

    // Only admins assign; agents and customers are refused.
    for who in [&f.agent, &f.customer] {
        let (status, _, _) = post_idem(
            &app,
            &format!("/api/v1/payments/{pid}/assign"),
            &who.token,
            Some(&key()),
            json!({"contract_id": f.id()}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, body, _) = post_idem(
        &app,
        &format!("/api/v1/payments/{pid}/assign"),
        &f.admin.token,
        Some(&key()),
        json!({"contract_id": f.id(), "extra": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, view, _) = post_idem(
        &app,
        &format!("/api/v1/payments/{pid}/assign"),
        &f.admin.token,
        Some(&key()),
        json!({"contract_id": f.id()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "succeeded");
    assert_eq!(
        contract(&app, &f.customer.token, f.id()).await["status"],
        "active"
    );
    let (status, again, _) = post_idem(
        &app,
        &format!("/api/v1/payments/{pid}/assign"),
        &f.admin.token,
        Some(&key()),
        json!({"contract_id": f.id()}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(ledger_payments(&app, f.id()).await, 1);
}

#[tokio::test]
async fn mtn_momo_requests_to_pay_succeed_or_fail_by_the_sandbox_numbers() {
    let app = spawn_mobile(|_| {}).await;
    let f = fixture(&app).await;
    let (status, p) = pay_by(
        &app,
        &f.customer.token,
        f.id(),
        2_000_00,
        "mtn_momo",
        Some("+256772000001"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{p}");
    let p = settled(&app, &f.customer.token, p["id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "succeeded", "{p}");
    assert!(p["receipt"].as_str().is_some(), "{p}");
    assert_eq!(ledger_payments(&app, f.id()).await, 1);

    // MTN's sandbox number for a failed payment.
    let (_, p) = pay_by(
        &app,
        &f.customer.token,
        f.id(),
        2_000_00,
        "mtn_momo",
        Some("+46733123450"),
    )
    .await;
    let p = settled(&app, &f.customer.token, p["id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert!(
        p["rail_code"].as_str().is_some_and(|c| !c.is_empty()),
        "{p}"
    );
    assert_eq!(ledger_payments(&app, f.id()).await, 1);
    assert_eq!(statement(&app, "momo", "+46733123450").await.len(), 1);
}

#[tokio::test]
async fn paying_refuses_bad_input_other_owners_and_a_second_prompt_in_flight() {
    let app = spawn_mobile(|_| {}).await;
    let f = fixture(&app).await;
    let path = format!("/api/v1/contracts/{}/payments", f.id());
    for (body, field) in [
        (
            json!({"amount_minor": 1_000_00, "method": "mpesa", "phone": "not a phone"}),
            "phone",
        ),
        (
            json!({"amount_minor": 1_000_50, "method": "mpesa", "phone": "+254711000080"}),
            "amount_minor",
        ),
        (
            json!({"amount_minor": 1_000_00, "method": "cash", "phone": "+254711000080"}),
            "phone",
        ),
        (
            json!({"amount_minor": 1_000_00, "method": "mpesa"}),
            "phone",
        ),
        (
            json!({"amount_minor": 1_000_00, "method": "paypal"}),
            "method",
        ),
    ] {
        let (status, problem, _) = post_idem(&app, &path, &f.agent.token, Some(&key()), body).await;
        assert_problem(
            status,
            &problem,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert!(
            invalid_fields(&problem).contains(&field.to_owned()),
            "{problem}"
        );
    }
    // No Idempotency-Key.
    let (status, _, _) = post_idem(
        &app,
        &path,
        &f.customer.token,
        None,
        json!({"amount_minor": 1_000_00, "method": "mpesa", "phone": "+254711000080"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Customers do not record cash; another customer does not see the contract.
    let (status, _) = pay_by(&app, &f.customer.token, f.id(), 1_000_00, "cash", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let stranger = app.customer().await;
    let (status, _) = pay_by(
        &app,
        &stranger.token,
        f.id(),
        1_000_00,
        "mpesa",
        Some("+254711000080"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other_agent = app.agent().await;
    let (status, _) = pay_by(
        &app,
        &other_agent.token,
        f.id(),
        1_000_00,
        "mpesa",
        Some("+254711000080"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        statement(&app, "mpesa", "+254711000080").await.len(),
        0,
        "nothing refused reached the rail"
    );

    // One prompt in flight per contract: the second is a 409 until it ends.
    let (status, first) = pay_by(
        &app,
        &f.customer.token,
        f.id(),
        1_000_00,
        "mpesa",
        Some("+254711000045"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = pay_by(
        &app,
        &f.customer.token,
        f.id(),
        1_000_00,
        "mpesa",
        Some("+254711000088"),
    )
    .await;
    assert_problem(status, &second, StatusCode::CONFLICT, "conflict");
    // Others may not read the payment.
    let (status, _) = app
        .get(
            &format!("/api/v1/payments/{}", first["id"].as_str().unwrap()),
            Some(&stranger.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Moves the clock to a local (Nairobi) time on a date and signs in again.
async fn set_local(app: &TestApp, date: &str, hhmm: &str, accounts: &mut [&mut Account]) {
    let local =
        chrono::NaiveDateTime::parse_from_str(&format!("{date} {hhmm}"), "%Y-%m-%d %H:%M").unwrap();
    let target = local - chrono::Duration::hours(3);
    let now = app.clock.now().naive_utc();
    assert!(target >= now, "the clock only moves forward");
    app.clock.advance(target - now);
    for a in accounts.iter_mut() {
        let tokens = app.login(&a.phone, PASSWORD).await;
        a.token = tokens["access_token"].as_str().unwrap().to_owned();
    }
}

async fn attempts(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let (status, list) = app
        .get(
            &format!("/api/v1/contracts/{id}/collection-attempts"),
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array().cloned().unwrap_or_default()
}

async fn activate_with_collection(app: &TestApp, f: &Fixture, phone: &str) {
    let (status, _) = pay(app, &f.agent.token, f.id(), deposit_due(&f.contract)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, how) = app
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/contracts/{}/collection", f.id()),
            Some(&f.customer.token),
            Some(json!({"rail": "mpesa", "phone": phone, "collect_at": "07:00"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{how}");
}

#[tokio::test]
async fn the_scheduler_collects_an_installment_on_its_due_date() {
    let app = spawn_mobile(|_| {}).await;
    let mut f = fixture(&app).await;
    activate_with_collection(&app, &f, "+254711000090").await;
    // Before the due date, nothing is prompted.
    set_local(&app, "2026-03-08", "08:00", &mut [&mut f.customer]).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert!(attempts(&app, &f.customer.token, f.id()).await.is_empty());
    // The first installment falls due on 2026-03-09; collection starts at 07:00.
    set_local(&app, "2026-03-09", "07:00", &mut [&mut f.customer]).await;
    let list = app
        .eventually("the scheduled collection to succeed", || async {
            let list = attempts(&app, &f.customer.token, f.id()).await;
            (list.first()?["status"] == "succeeded").then_some(list)
        })
        .await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["origin"], "schedule");
    assert_eq!(list[0]["day"], "2026-03-09");
    assert_eq!(list[0]["amount_minor"], 2_454_00);
    let d = contract(&app, &f.customer.token, f.id()).await;
    assert_eq!(d["schedule"][1]["state"], "paid", "{d}");
    // Paid: later passes that day prompt nothing more.
    set_local(&app, "2026-03-09", "12:30", &mut [&mut f.customer]).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(attempts(&app, &f.customer.token, f.id()).await.len(), 1);
    assert_eq!(statement(&app, "mpesa", "+254711000090").await.len(), 1);
}

async fn failed_attempts(app: &TestApp, f: &Fixture, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} failed attempts"), || async {
        let list = attempts(app, &f.customer.token, f.id()).await;
        (list.len() == n && list.iter().all(|a| a["status"] == "failed")).then_some(list)
    })
    .await
}

#[tokio::test]
async fn insufficient_funds_retries_at_noon_and_five_then_the_contract_falls_into_arrears() {
    let app = spawn_mobile(|_| {}).await;
    let mut f = fixture(&app).await;
    activate_with_collection(&app, &f, "+254711000091").await;
    set_local(&app, "2026-03-09", "07:00", &mut [&mut f.customer]).await;
    let list = failed_attempts(&app, &f, 1).await;
    assert_eq!(list[0]["rail_code"], "1");
    // Not again before noon.
    set_local(&app, "2026-03-09", "11:59", &mut [&mut f.customer]).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(attempts(&app, &f.customer.token, f.id()).await.len(), 1);
    set_local(&app, "2026-03-09", "12:00", &mut [&mut f.customer]).await;
    failed_attempts(&app, &f, 2).await;
    set_local(&app, "2026-03-09", "17:00", &mut [&mut f.customer]).await;
    failed_attempts(&app, &f, 3).await;
    // Three a day, no more.
    set_local(&app, "2026-03-09", "23:00", &mut [&mut f.customer]).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(attempts(&app, &f.customer.token, f.id()).await.len(), 3);
    // The day ended unpaid: the customer is told (support's in-app notification).
    app.eventually("the collection-failed notification", || async {
        let (_, list) = app
            .get("/api/v1/notifications?limit=100", Some(&f.customer.token))
            .await;
        list["items"]
            .as_array()
            .or(list.as_array())?
            .iter()
            .any(|n| n["template"] == "collection_failed")
            .then_some(())
    })
    .await;
    // The next day the installment is overdue, and collection tries again.
    set_local(&app, "2026-03-10", "07:00", &mut [&mut f.customer]).await;
    let list = failed_attempts(&app, &f, 4).await;
    assert_eq!(list[0]["day"], "2026-03-10");
    let d = app
        .eventually("the arrears to show", || async {
            let d = contract(&app, &f.customer.token, f.id()).await;
            (d["days_past_due"] == 1).then_some(d)
        })
        .await;
    assert_eq!(d["bucket"], "1-7");
    assert_eq!(
        ledger_payments(&app, f.id()).await,
        1,
        "only the cash deposit"
    );
    assert_eq!(statement(&app, "mpesa", "+254711000091").await.len(), 4);
}

#[tokio::test]
async fn a_rail_that_keeps_failing_opens_its_circuit_and_readiness_says_so() {
    let app = spawn_mobile(|_| {}).await;
    let f = fixture(&app).await;
    let (status, ready) = app.get("/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["mpesa"], "ok", "{ready}");
    // M-Pesa goes down: every call answers 503.
    let (status, _) = app
        .post("/sandbox/mpesa/outage", None, json!({"failures": 1000}))
        .await;
    assert!(status.is_success());
    for i in 0..5 {
        let (status, p) = pay_by(
            &app,
            &f.customer.token,
            f.id(),
            1_000_00,
            "mpesa",
            Some(&format!("+25471100050{i}")),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{p}");
        let p = settled(&app, &f.customer.token, p["id"].as_str().unwrap()).await;
        assert_eq!(p["status"], "failed");
        assert_eq!(p["rail_code"], "unavailable", "{p}");
    }
    // Open: readiness reports the rail degraded (still ready: cash works),
    // and prompts are refused at once rather than sent into the outage.
    let (status, ready) = app.get("/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_ne!(ready["checks"]["mpesa"], "ok", "{ready}");
    assert_eq!(ready["checks"]["mtn_momo"], "ok", "{ready}");
    let (status, problem) = pay_by(
        &app,
        &f.customer.token,
        f.id(),
        1_000_00,
        "mpesa",
        Some("+254711000509"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    let (status, r) = pay(&app, &f.agent.token, f.id(), 1_000_00).await;
    assert_eq!(status, StatusCode::CREATED, "cash still works: {r}");
}

#[tokio::test]
async fn no_money_prompt_goes_to_a_customer_whose_phone_is_unverified() {
    let app = spawn_mobile(|_| {}).await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    // Onboarded through the API, so a code is sent and the phone waits for it.
    let phone = unique_phone();
    let (s, user) = app
        .post(
            "/api/v1/users",
            Some(&agent.token),
            json!({"name": "Njeri Mwangi", "phone": phone, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let id: uuid::Uuid = user["id"].as_str().unwrap().parse().unwrap();
    wait_for_customer(&app, id).await;
    let tokens = app.login(&phone, PASSWORD).await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let p = create_product(&app, &admin, boda_product()).await;
    let contract = create_contract(
        &app,
        &admin,
        contract_body(&p, id, 165_000_00, 33_000_00, 78),
    )
    .await;
    let contract = contract["id"].as_str().unwrap().to_owned();

    let code = app.phone_code(&phone, 1).await;
    let (s, b) = pay_by(&app, &token, &contract, 33_000_00, "mpesa", Some(&phone)).await;
    assert_problem(s, &b, StatusCode::CONFLICT, "conflict");
    assert!(b.to_string().contains("not verified"), "{b}");
    assert!(statement(&app, "mpesa", &phone).await.is_empty());

    // The agent verifies the phone on the spot; prompts may go out then.
    let (s, b) = app
        .post(
            &format!("/api/v1/users/{id}/verify-phone"),
            Some(&agent.token),
            json!({"code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.eventually("the verification to reach payments", || async {
        let (s, _) = pay_by(&app, &token, &contract, 33_000_00, "mpesa", Some(&phone)).await;
        (s == StatusCode::ACCEPTED).then_some(())
    })
    .await;
    app.stop().await;
}

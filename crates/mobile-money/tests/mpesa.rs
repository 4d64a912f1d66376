//! The Daraja client against the M-Pesa sandbox, callbacks caught by a receiver.

mod common;

use std::time::Duration;

use common::{dead_port, silent_server, Env, ANSWER_AFTER};
use miliki_mobile_money::daraja::{
    C2bPayment, Daraja, DarajaConfig, StkCallback, StkPush, StkQuery, TransactionStatusResult,
};
use miliki_mobile_money::RailError;
use serde_json::json;

fn push(phone: &str, amount: i64) -> StkPush {
    StkPush {
        phone: phone.into(),
        amount,
        account_reference: "MLK-000123-TOO-LONG".into(),
        description: "Weekly instalment for the boda".into(),
    }
}

/// The STK callbacks received for one checkout.
async fn callbacks_for(env: &Env, checkout: &str, n: usize) -> Vec<StkCallback> {
    for _ in 0..300 {
        let found: Vec<StkCallback> = env
            .recorded
            .at("/stk")
            .into_iter()
            .map(|c| serde_json::from_value::<StkCallback>(c.body).unwrap())
            .filter(|c| c.body.stk_callback.checkout_request_id == checkout)
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {n} callbacks for {checkout}");
}

async fn query_until_done(daraja: &Daraja, checkout: &str) -> (String, String) {
    for _ in 0..300 {
        match daraja.stk_query(checkout).await.unwrap() {
            StkQuery::Done {
                result_code,
                result_desc,
            } => return (result_code, result_desc),
            StkQuery::Pending => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("{checkout} never finished");
}

#[tokio::test]
async fn stk_success_calls_back_with_metadata_and_query_agrees() {
    let env = Env::new().await;
    let daraja = env.daraja();
    let accepted = daraja.stk_push(&push("254708374149", 1500)).await.unwrap();
    assert!(accepted.checkout_request_id.starts_with("ws_CO_"));
    assert!(!accepted.merchant_request_id.is_empty());
    assert_eq!(
        daraja
            .stk_query(&accepted.checkout_request_id)
            .await
            .unwrap(),
        StkQuery::Pending
    );

    let cb = callbacks_for(&env, &accepted.checkout_request_id, 1).await;
    let result = &cb[0].body.stk_callback;
    assert_eq!(result.result_code, 0);
    assert_eq!(result.merchant_request_id, accepted.merchant_request_id);
    assert_eq!(result.amount(), Some(1500));
    assert_eq!(result.phone().as_deref(), Some("254708374149"));
    // 08:00 UTC is 11:00 in Nairobi.
    assert_eq!(result.transaction_date(), Some(20261203110000));
    let receipt = result.receipt().unwrap();
    assert_eq!(receipt.len(), 10);
    assert!(receipt
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    // The Balance item, with no Value, is on the wire and parsed.
    let raw = &env.recorded.at("/stk")[0].body;
    let items = raw["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
        .as_array()
        .unwrap();
    assert!(items
        .iter()
        .any(|i| i["Name"] == "Balance" && i.get("Value").is_none()));

    let (code, _) = query_until_done(&daraja, &accepted.checkout_request_id).await;
    assert_eq!(code, "0");

    let statement = env
        .get("/sandbox/mpesa/transactions?phone=254708374149")
        .await;
    let line = &statement.as_array().unwrap()[0];
    assert_eq!(line["kind"], "stk");
    assert_eq!(line["status"], "succeeded");
    assert_eq!(line["receipt"], receipt.as_str());
    // The client cut AccountReference to 12 characters.
    assert_eq!(line["account"], "MLK-000123-T");
    assert_eq!(line["callbacks_delivered"], 1);
}

#[tokio::test]
async fn each_failure_digit_calls_back_its_result_code() {
    let env = Env::new().await;
    let daraja = env.daraja();
    for (phone, expected) in [
        ("254700000001", 1),
        ("254700000002", 1032),
        ("254700000003", 1037),
        ("254700000004", 2001),
    ] {
        let accepted = daraja.stk_push(&push(phone, 100)).await.unwrap();
        let cb = callbacks_for(&env, &accepted.checkout_request_id, 1).await;
        let result = &cb[0].body.stk_callback;
        assert_eq!(result.result_code, expected, "{phone}");
        assert!(result.callback_metadata.is_none(), "{phone}");
        assert_eq!(result.receipt(), None);
        let (code, desc) = query_until_done(&daraja, &accepted.checkout_request_id).await;
        assert_eq!(code, expected.to_string());
        assert_eq!(desc, result.result_desc);
    }
    let statement = env.get("/sandbox/mpesa/transactions").await;
    assert_eq!(statement.as_array().unwrap().len(), 4);
    assert!(statement
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["status"] == "failed"));
}

#[tokio::test]
async fn digit_five_succeeds_without_a_callback() {
    let env = Env::new().await;
    let daraja = env.daraja();
    let accepted = daraja.stk_push(&push("254711111115", 200)).await.unwrap();
    let (code, _) = query_until_done(&daraja, &accepted.checkout_request_id).await;
    assert_eq!(code, "0");
    // Give a callback every chance to arrive: it must not.
    tokio::time::sleep(ANSWER_AFTER).await;
    assert!(env.recorded.at("/stk").is_empty());
    let statement = env.get("/sandbox/mpesa/transactions").await;
    assert_eq!(statement[0]["status"], "succeeded");
    assert_eq!(statement[0]["callbacks_delivered"], 0);
}

#[tokio::test]
async fn digit_six_calls_back_twice_with_the_same_receipt() {
    let env = Env::new().await;
    let daraja = env.daraja();
    let accepted = daraja.stk_push(&push("254722222226", 300)).await.unwrap();
    let cb = callbacks_for(&env, &accepted.checkout_request_id, 2).await;
    assert_eq!(cb.len(), 2);
    assert_eq!(cb[0].body.stk_callback.result_code, 0);
    assert_eq!(
        cb[0].body.stk_callback.receipt(),
        cb[1].body.stk_callback.receipt()
    );
}

#[tokio::test]
async fn second_push_while_pending_is_refused_as_locked() {
    let env = Env::new().await;
    let daraja = env.daraja();
    let first = daraja.stk_push(&push("254733333339", 400)).await.unwrap();
    match daraja.stk_push(&push("254733333339", 401)).await {
        Err(RailError::Refused { code, message }) => {
            assert_eq!(code, "500.001.1001");
            assert!(message.contains("Unable to lock subscriber"), "{message}");
        }
        other => panic!("expected a lock refusal, got {other:?}"),
    }
    callbacks_for(&env, &first.checkout_request_id, 1).await;
    // Once the first is answered, the phone takes prompts again.
    daraja.stk_push(&push("254733333339", 401)).await.unwrap();
}

#[tokio::test]
async fn same_amount_within_two_minutes_is_rule_limited() {
    let env = Env::new().await;
    let daraja = env.daraja();
    let first = daraja.stk_push(&push("254744444449", 500)).await.unwrap();
    callbacks_for(&env, &first.checkout_request_id, 1).await;

    env.clock.advance(chrono::Duration::seconds(90));
    let second = daraja.stk_push(&push("254744444449", 500)).await.unwrap();
    let cb = callbacks_for(&env, &second.checkout_request_id, 1).await;
    assert_eq!(cb[0].body.stk_callback.result_code, 17);
    assert!(cb[0].body.stk_callback.callback_metadata.is_none());

    env.clock.advance(chrono::Duration::seconds(121));
    let third = daraja.stk_push(&push("254744444449", 500)).await.unwrap();
    let cb = callbacks_for(&env, &third.checkout_request_id, 1).await;
    assert_eq!(cb[0].body.stk_callback.result_code, 0);
}

#[tokio::test]
async fn token_is_cached_until_a_minute_before_expiry() {
    let env = Env::new().await;
    let daraja = env.daraja();
    daraja.stk_push(&push("254755555559", 10)).await.unwrap();
    daraja.stk_push(&push("254755555569", 10)).await.unwrap();
    daraja.clone().register_urls().await.unwrap();
    assert_eq!(env.get("/sandbox/mpesa/stats").await["tokens_issued"], 1);

    // expires_in is 3599 s; the client refreshes from 3539 s on.
    env.clock.advance(chrono::Duration::seconds(3540));
    daraja.stk_push(&push("254755555579", 10)).await.unwrap();
    assert_eq!(env.get("/sandbox/mpesa/stats").await["tokens_issued"], 2);
}

#[tokio::test]
async fn wrong_consumer_secret_is_refused() {
    let env = Env::new().await;
    let daraja = Daraja::new(
        DarajaConfig {
            consumer_secret: "wrong".into(),
            ..env.daraja_config()
        },
        env.clock.clone(),
    );
    match daraja.stk_push(&push("254700000009", 10)).await {
        Err(RailError::Refused { code, .. }) => assert_eq!(code, "400.008.01"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_passkey_is_refused_by_the_password_check() {
    let env = Env::new().await;
    let daraja = Daraja::new(
        DarajaConfig {
            passkey: "not-the-passkey".into(),
            ..env.daraja_config()
        },
        env.clock.clone(),
    );
    match daraja.stk_push(&push("254700000009", 10)).await {
        Err(RailError::Refused { code, message }) => {
            assert_eq!(code, "400.002.02");
            assert!(message.contains("Password"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn c2b_validation_decides_and_confirmation_follows_acceptance() {
    let env = Env::new().await;
    let daraja = env.daraja();
    daraja.register_urls().await.unwrap();

    let (status, ok) = env
        .post(
            "/sandbox/mpesa/c2b/simulate",
            json!({"phone": "254708374149", "amount": 1500, "account": "MLK-1"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ok["accepted"], true);
    let trans_id = ok["trans_id"].as_str().unwrap().to_string();

    let validation: C2bPayment =
        serde_json::from_value(env.calls("/validation", 1).await[0].body.clone()).unwrap();
    assert_eq!(validation.trans_id, trans_id);
    assert_eq!(validation.trans_amount, "1500.00");
    assert_eq!(validation.bill_ref_number, "MLK-1");
    assert_eq!(validation.business_short_code, "174379");
    let confirmation: C2bPayment =
        serde_json::from_value(env.calls("/confirmation", 1).await[0].body.clone()).unwrap();
    assert_eq!(confirmation.trans_id, trans_id);
    assert_eq!(confirmation.amount_minor(), Some(150_000));
    assert_eq!(confirmation.msisdn, "254708374149");

    let (_, refused) = env
        .post(
            "/sandbox/mpesa/c2b/simulate",
            json!({"phone": "254708374149", "amount": 700, "account": "NOSUCH"}),
        )
        .await;
    assert_eq!(refused["accepted"], false);
    env.calls("/validation", 2).await;
    // Refused at validation: never confirmed.
    assert_eq!(env.recorded.at("/confirmation").len(), 1);

    let statement = env
        .get("/sandbox/mpesa/transactions?phone=254708374149")
        .await;
    let lines = statement.as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["kind"], "c2b");
    assert_eq!(lines[0]["status"], "succeeded");
    assert_eq!(lines[0]["callbacks_delivered"], 2);
    assert_eq!(lines[1]["status"], "refused");
    assert_eq!(lines[1]["result_code"], "C2B00012");
}

#[tokio::test]
async fn transaction_status_posts_the_result_later() {
    let env = Env::new().await;
    let daraja = env.daraja();
    let accepted = daraja.stk_push(&push("254766666669", 1000)).await.unwrap();
    let cb = callbacks_for(&env, &accepted.checkout_request_id, 1).await;
    let receipt = cb[0].body.stk_callback.receipt().unwrap();

    let conversation = daraja.transaction_status(&receipt, "orig-1").await.unwrap();
    assert!(conversation.starts_with("AG_"), "{conversation}");
    daraja
        .transaction_status("NOSUCHRCPT", "orig-2")
        .await
        .unwrap();

    let calls = env.calls("/status-result", 2).await;
    let results: Vec<TransactionStatusResult> = calls
        .iter()
        .map(|c| serde_json::from_value(c.body.clone()).unwrap())
        .collect();
    let found = results
        .iter()
        .find(|r| r.result.originator_conversation_id == "orig-1")
        .unwrap();
    assert!(found.result.completed());
    assert_eq!(found.result.conversation_id, conversation);
    assert_eq!(found.result.receipt(), Some(receipt.clone()));
    assert_eq!(found.result.amount_minor(), Some(100_000));
    assert_eq!(
        found.result.parameter("DebitPartyName").unwrap(),
        "254766666669 - Sandbox Customer"
    );
    let missing = results
        .iter()
        .find(|r| r.result.originator_conversation_id == "orig-2")
        .unwrap();
    assert_ne!(missing.result.result_code, 0);
    assert!(!missing.result.completed());
}

#[tokio::test]
async fn transaction_status_finds_a_c2b_payment() {
    let env = Env::new().await;
    let daraja = env.daraja();
    let (_, paid) = env
        .post(
            "/sandbox/mpesa/c2b/simulate",
            json!({"phone": "254777777779", "amount": 250, "account": "MLK-9"}),
        )
        .await;
    let trans_id = paid["trans_id"].as_str().unwrap();
    daraja
        .transaction_status(trans_id, "orig-c2b")
        .await
        .unwrap();
    let calls = env.calls("/status-result", 1).await;
    let result: TransactionStatusResult = serde_json::from_value(calls[0].body.clone()).unwrap();
    assert!(result.result.completed());
    assert_eq!(result.result.amount_minor(), Some(25_000));
    assert_eq!(result.result.receipt().as_deref(), Some(trans_id));
}

#[tokio::test]
async fn outage_is_unavailable_for_the_next_n_calls() {
    let env = Env::new().await;
    let (status, _) = env
        .post("/sandbox/mpesa/outage", json!({"failures": 2}))
        .await;
    assert_eq!(status, 200);
    let daraja = env.daraja();
    for _ in 0..2 {
        match daraja.stk_push(&push("254788888889", 20)).await {
            Err(RailError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    daraja.stk_push(&push("254788888889", 20)).await.unwrap();
}

#[tokio::test]
async fn dead_port_is_unavailable() {
    let env = Env::new().await;
    let addr = dead_port().await;
    let daraja = Daraja::new(
        DarajaConfig {
            base_url: format!("http://{addr}/sandbox/mpesa"),
            ..env.daraja_config()
        },
        env.clock.clone(),
    );
    assert!(matches!(
        daraja.stk_push(&push("254700000009", 10)).await,
        Err(RailError::Unavailable(_))
    ));
}

#[tokio::test]
async fn silent_server_is_no_answer() {
    let env = Env::new().await;
    let addr = silent_server().await;
    let daraja = Daraja::new(
        DarajaConfig {
            base_url: format!("http://{addr}"),
            timeout: Duration::from_millis(300),
            ..env.daraja_config()
        },
        env.clock.clone(),
    );
    assert!(matches!(
        daraja.stk_query("ws_CO_1").await,
        Err(RailError::NoAnswer(_))
    ));
}

#[tokio::test]
async fn unknown_checkout_is_refused() {
    let env = Env::new().await;
    match env.daraja().stk_query("ws_CO_nothing").await {
        Err(RailError::Refused { code, .. }) => assert_eq!(code, "400.002.02"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

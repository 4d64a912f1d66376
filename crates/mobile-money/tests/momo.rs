//! The MoMo client against the MoMo sandbox, callbacks caught by a receiver.

mod common;

use std::time::Duration;

use common::{dead_port, silent_server, Env, ANSWER_AFTER};
use miliki_mobile_money::momo::{Momo, MomoConfig, MomoState, MomoStatus, RequestToPay};
use miliki_mobile_money::RailError;
use serde_json::json;
use uuid::Uuid;

fn pay(phone: &str, amount: i64) -> RequestToPay {
    RequestToPay {
        amount,
        currency: "EUR".into(),
        phone: phone.into(),
        external_id: "MLK-000123".into(),
        payer_message: "Miliki instalment".into(),
        payee_note: "contract MLK-000123".into(),
    }
}

async fn status_until_final(momo: &Momo, reference: Uuid) -> MomoStatus {
    for _ in 0..300 {
        let status = momo.status(reference).await.unwrap();
        if status.status != MomoState::Pending {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{reference} stayed pending");
}

#[tokio::test]
async fn success_calls_back_with_put_and_status_agrees() {
    let env = Env::new().await;
    let momo = env.momo();
    let reference = Uuid::new_v4();
    momo.request_to_pay(reference, &pay("256772123456", 100))
        .await
        .unwrap();
    let pending = momo.status(reference).await.unwrap();
    assert_eq!(pending.status, MomoState::Pending);
    assert_eq!(pending.external_id.as_deref(), Some("MLK-000123"));

    let calls = env.calls("/momo", 1).await;
    assert_eq!(calls[0].method, axum::http::Method::PUT);
    let callback: MomoStatus = serde_json::from_value(calls[0].body.clone()).unwrap();
    assert_eq!(callback.status, MomoState::Successful);
    assert_eq!(calls[0].body["referenceId"], reference.to_string());

    let done = status_until_final(&momo, reference).await;
    assert_eq!(done.status, MomoState::Successful);
    assert_eq!(done.amount_minor(2), Some(10_000));
    assert_eq!(done.currency, "EUR");
    assert!(done.financial_transaction_id.is_some());
    assert_eq!(
        done.financial_transaction_id,
        callback.financial_transaction_id
    );
    assert!(done.reason.is_none());

    let statement = env
        .get("/sandbox/momo/transactions?phone=256772123456")
        .await;
    assert_eq!(statement[0]["status"], "succeeded");
    assert_eq!(statement[0]["callbacks_delivered"], 1);
}

#[tokio::test]
async fn mtn_failure_numbers_fail_with_their_reasons() {
    let env = Env::new().await;
    let momo = env.momo();
    for (phone, reason) in [
        ("46733123450", "INTERNAL_PROCESSING_ERROR"),
        ("46733123451", "APPROVAL_REJECTED"),
        ("46733123452", "EXPIRED"),
    ] {
        let reference = Uuid::new_v4();
        momo.request_to_pay(reference, &pay(phone, 50))
            .await
            .unwrap();
        let done = status_until_final(&momo, reference).await;
        assert_eq!(done.status, MomoState::Failed, "{phone}");
        assert_eq!(done.reason.unwrap().code, reason, "{phone}");
        assert!(done.financial_transaction_id.is_none());
    }
    assert_eq!(env.calls("/momo", 3).await.len(), 3);
}

#[tokio::test]
async fn mtn_pending_numbers_stay_pending_without_callback() {
    let env = Env::new().await;
    let momo = env.momo();
    let refs: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
    momo.request_to_pay(refs[0], &pay("46733123453", 50))
        .await
        .unwrap();
    momo.request_to_pay(refs[1], &pay("46733123454", 50))
        .await
        .unwrap();
    tokio::time::sleep(ANSWER_AFTER * 3).await;
    for r in refs {
        assert_eq!(momo.status(r).await.unwrap().status, MomoState::Pending);
    }
    assert!(env.recorded.at("/momo").is_empty());
}

#[tokio::test]
async fn reused_reference_conflicts_and_unknown_is_not_found() {
    let env = Env::new().await;
    let momo = env.momo();
    let reference = Uuid::new_v4();
    momo.request_to_pay(reference, &pay("256772000001", 10))
        .await
        .unwrap();
    match momo
        .request_to_pay(reference, &pay("256772000001", 10))
        .await
    {
        Err(RailError::Refused { code, .. }) => assert_eq!(code, "RESOURCE_ALREADY_EXIST"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match momo.status(Uuid::new_v4()).await {
        Err(RailError::Refused { code, .. }) => assert_eq!(code, "RESOURCE_NOT_FOUND"),
        other => panic!("expected not found, got {other:?}"),
    }
}

#[tokio::test]
async fn token_is_cached_and_wrong_key_is_refused() {
    let env = Env::new().await;
    let momo = env.momo();
    momo.request_to_pay(Uuid::new_v4(), &pay("256772000002", 10))
        .await
        .unwrap();
    momo.status(Uuid::new_v4()).await.ok();
    assert_eq!(env.get("/sandbox/momo/stats").await["tokens_issued"], 1);
    env.clock.advance(chrono::Duration::seconds(3541));
    momo.request_to_pay(Uuid::new_v4(), &pay("256772000002", 11))
        .await
        .unwrap();
    assert_eq!(env.get("/sandbox/momo/stats").await["tokens_issued"], 2);

    let wrong = Momo::new(
        MomoConfig {
            api_key: "wrong".into(),
            ..MomoConfig::sandbox(format!("{}/sandbox/momo", env.origin))
        },
        env.clock.clone(),
    );
    assert!(matches!(
        wrong.status(Uuid::new_v4()).await,
        Err(RailError::Refused { .. })
    ));
}

#[tokio::test]
async fn outage_dead_port_and_silence() {
    let env = Env::new().await;
    env.post("/sandbox/momo/outage", json!({"failures": 1}))
        .await;
    let momo = env.momo();
    assert!(matches!(
        momo.request_to_pay(Uuid::new_v4(), &pay("256772000003", 10))
            .await,
        Err(RailError::Unavailable(_))
    ));
    momo.request_to_pay(Uuid::new_v4(), &pay("256772000003", 10))
        .await
        .unwrap();

    let dead = Momo::new(
        MomoConfig::sandbox(format!("http://{}/sandbox/momo", dead_port().await)),
        env.clock.clone(),
    );
    assert!(matches!(
        dead.status(Uuid::new_v4()).await,
        Err(RailError::Unavailable(_))
    ));

    let silent = Momo::new(
        MomoConfig {
            timeout: Duration::from_millis(300),
            ..MomoConfig::sandbox(format!("http://{}", silent_server().await))
        },
        env.clock.clone(),
    );
    assert!(matches!(
        silent.status(Uuid::new_v4()).await,
        Err(RailError::NoAnswer(_))
    ));
}

//! What the rails call: M-Pesa's STK result, C2B validation and
//! confirmation, the transaction status result and timeout, and MoMo's
//! request-to-pay callback. Every URL carries a secret path segment from
//! configuration, and no callback is enough to credit money: each only
//! makes this service ask the rail itself (see [`crate::collect`]).

use axum::body::Bytes;
use axum::extract::State;
use miliki_mobile_money::daraja::{C2bAnswer, C2bPayment, StkCallback, TransactionStatusResult};
use miliki_platform::http::{Json, Path};
use miliki_platform::money::Currency;
use miliki_platform::ApiError;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::collect;
use crate::money::{self, PaybillPayment, PaybillStatus, RequestUpdate};
use crate::rails::Rail;
use crate::state::AppState;
use crate::store;

/// A wrong secret is a URL that does not exist.
fn check_secret(state: &AppState, given: &str) -> Result<(), ApiError> {
    let expected = state.rails.callback_secret.as_bytes();
    let given = given.as_bytes();
    // Compared in constant time: the secret is the callbacks' only credential.
    let same = expected.len() == given.len()
        && expected
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::NotFound("callback"))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

fn accepted() -> Json<Value> {
    Json(json!({"ResultCode": 0, "ResultDesc": "Accepted"}))
}

/// Checks a request in the background: the rail gets its answer at once.
/// `receipt` is the callback's, kept if the rail confirms the payment.
fn check_soon(state: &AppState, id: Uuid, receipt: Option<String>) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = collect::check(&state, id, receipt).await {
            tracing::warn!(request = %id, "checking after a callback failed: {e}");
        }
    });
}

/// M-Pesa's STK push result (`Body.stkCallback`).
#[utoipa::path(post, path = "/api/v1/callbacks/mpesa/{secret}/stk", tag = "callbacks",
    params(("secret" = String, Path)),
    request_body(content = Value, description = "Daraja's STK callback"),
    responses((status = 200, body = Value), (status = 404, description = "Wrong secret")))]
pub async fn mpesa_stk(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_secret(&state, &secret)?;
    let callback: StkCallback = parse(&body)?;
    let r = callback.body.stk_callback;
    let text = String::from_utf8_lossy(&body);
    let now = state.deps.clock.now();
    let found = {
        let mut conn = state.deps.db.reader().acquire().await?;
        money::find_by_provider_ref(&mut conn, Rail::Mpesa, &r.checkout_request_id).await?
    };
    match found {
        Some(request) if request.status.in_flight() => {
            // Nothing is written here: the rail is asked at once, and its
            // answer is what counts.
            let whole = collect::whole_units(request.amount_minor, request.currency);
            let agrees = r.result_code != 0 || r.amount() == Some(whole);
            if !agrees {
                collect::review(
                    &state,
                    Rail::Mpesa,
                    "stk",
                    Some(&r.checkout_request_id),
                    "the callback's amount differs from the request; the rail is asked instead",
                    &text,
                )
                .await;
            }
            let receipt = (agrees && r.result_code == 0)
                .then(|| r.receipt())
                .flatten();
            check_soon(&state, request.id, receipt);
        }
        // Settled already: a second delivery changes nothing.
        Some(_) => {}
        None => {
            let mut conn = state.deps.db.writer().acquire().await?;
            // The callback can overtake the record of its own push: look
            // again, now that no write is in between.
            if let Some(request) =
                money::find_by_provider_ref(&mut conn, Rail::Mpesa, &r.checkout_request_id).await?
            {
                drop(conn);
                let whole = collect::whole_units(request.amount_minor, request.currency);
                if request.status.in_flight() {
                    let receipt = (r.amount() == Some(whole)).then(|| r.receipt()).flatten();
                    check_soon(&state, request.id, receipt);
                }
                return Ok(accepted());
            }
            // A push that got no answer may be this one: same phone, same amount.
            let adopted = match (r.result_code, r.phone(), r.amount()) {
                (0, Some(phone), Some(amount)) => {
                    let index = collect::phone_index(&state, &format!("+{phone}"));
                    money::find_unanswered(&mut conn, Rail::Mpesa, &index, amount * 100).await?
                }
                _ => None,
            };
            match adopted {
                Some(request) => {
                    money::update_request(
                        &mut conn,
                        request.id,
                        &RequestUpdate {
                            status: Some(money::RequestStatus::Sent),
                            provider_ref: Some(&r.checkout_request_id),
                            merchant_ref: Some(&r.merchant_request_id),
                            check_at: Some(Some(now)),
                            ..Default::default()
                        },
                        now,
                    )
                    .await?;
                    drop(conn);
                    check_soon(&state, request.id, r.receipt());
                }
                None => {
                    drop(conn);
                    collect::review(
                        &state,
                        Rail::Mpesa,
                        "stk",
                        Some(&r.checkout_request_id),
                        "no request has this CheckoutRequestID",
                        &text,
                    )
                    .await;
                }
            }
        }
    }
    Ok(accepted())
}

/// C2B validation: a paybill payment about to happen. Unknown account
/// numbers are refused (`C2B00012`) unless validation is turned off.
#[utoipa::path(post, path = "/api/v1/callbacks/mpesa/{secret}/c2b/validation", tag = "callbacks",
    params(("secret" = String, Path)),
    request_body(content = Value, description = "Daraja's C2B validation request"),
    responses((status = 200, body = Value), (status = 404, description = "Wrong secret")))]
pub async fn c2b_validation(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Result<Json<C2bAnswer>, ApiError> {
    check_secret(&state, &secret)?;
    let payment: C2bPayment = parse(&body)?;
    if !state.rails.validate_accounts {
        return Ok(Json(C2bAnswer::accept()));
    }
    let mut conn = state.deps.db.reader().acquire().await?;
    let known = store::find_contract_by_account(&mut conn, &payment.bill_ref_number)
        .await?
        .is_some_and(|c| c.status.takes_payments());
    Ok(Json(if known {
        C2bAnswer::accept()
    } else {
        C2bAnswer::unknown_account()
    }))
}

/// C2B confirmation: a paybill payment happened. Recorded once per TransID
/// and confirmed with the transaction status query before it is credited.
#[utoipa::path(post, path = "/api/v1/callbacks/mpesa/{secret}/c2b/confirmation", tag = "callbacks",
    params(("secret" = String, Path)),
    request_body(content = Value, description = "Daraja's C2B confirmation"),
    responses((status = 200, body = Value), (status = 404, description = "Wrong secret")))]
pub async fn c2b_confirmation(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Result<Json<C2bAnswer>, ApiError> {
    check_secret(&state, &secret)?;
    let payment: C2bPayment = parse(&body)?;
    let text = String::from_utf8_lossy(&body);
    let Some(amount_minor) = payment.amount_minor().filter(|a| *a > 0) else {
        collect::review(
            &state,
            Rail::Mpesa,
            "c2b",
            Some(&payment.trans_id),
            "the amount is not a positive sum of shillings",
            &text,
        )
        .await;
        return Ok(Json(C2bAnswer::accept()));
    };
    if payment.trans_id.trim().is_empty() || payment.trans_id.len() > 64 {
        return Err(ApiError::field("TransID", "is required"));
    }
    let now = state.deps.clock.now();
    let record = PaybillPayment {
        id: miliki_platform::id::new_id(),
        trans_id: payment.trans_id.trim().to_owned(),
        bill_ref: payment.bill_ref_number.chars().take(64).collect(),
        amount_minor,
        currency: Currency::Kes,
        msisdn: state
            .deps
            .keyring
            .encrypt_str(collect::PHONE_FIELD, &payment.msisdn),
        contract_id: None,
        status: PaybillStatus::Confirming,
        note: None,
        received_at: now,
        updated_at: now,
        assigned_by: None,
    };
    let fresh = {
        let mut conn = state.deps.db.writer().acquire().await?;
        money::insert_paybill(&mut conn, &record).await?
    };
    if fresh {
        let state = state.clone();
        tokio::spawn(async move { collect::confirm_paybill(&state, &record).await });
    }
    Ok(Json(C2bAnswer::accept()))
}

/// The transaction status query's result, which confirms (or not) a paybill payment.
#[utoipa::path(post, path = "/api/v1/callbacks/mpesa/{secret}/status/result", tag = "callbacks",
    params(("secret" = String, Path)),
    request_body(content = Value, description = "Daraja's transaction status result"),
    responses((status = 200, body = Value), (status = 404, description = "Wrong secret")))]
pub async fn status_result(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_secret(&state, &secret)?;
    let result: TransactionStatusResult = parse(&body)?;
    let r = result.result;
    let text = String::from_utf8_lossy(&body);
    match r.originator_conversation_id.parse::<Uuid>() {
        Ok(id) => {
            collect::paybill_result(
                &state,
                id,
                r.completed(),
                r.receipt().as_deref(),
                r.amount_minor(),
                &text,
            )
            .await?
        }
        Err(_) => {
            collect::review(
                &state,
                Rail::Mpesa,
                "status_result",
                Some(&r.originator_conversation_id),
                "not a query this service sent",
                &text,
            )
            .await
        }
    }
    Ok(accepted())
}

/// The transaction status query timed out in Daraja's queue: the collector
/// asks again later.
#[utoipa::path(post, path = "/api/v1/callbacks/mpesa/{secret}/status/timeout", tag = "callbacks",
    params(("secret" = String, Path)),
    request_body(content = Value, description = "Daraja's queue timeout"),
    responses((status = 200, body = Value), (status = 404, description = "Wrong secret")))]
pub async fn status_timeout(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_secret(&state, &secret)?;
    tracing::warn!(
        "a transaction status query timed out at M-Pesa: {}",
        String::from_utf8_lossy(&body)
            .chars()
            .take(500)
            .collect::<String>()
    );
    Ok(accepted())
}

/// MoMo's request-to-pay callback (sent once, never retried): a signal to
/// ask MoMo for the request's status.
#[utoipa::path(put, path = "/api/v1/callbacks/momo/{secret}", tag = "callbacks",
    params(("secret" = String, Path)),
    request_body(content = Value, description = "MoMo's request-to-pay result"),
    responses((status = 200, body = Value), (status = 404, description = "Wrong secret")))]
pub async fn momo(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_secret(&state, &secret)?;
    let value: Value = parse(&body)?;
    let ours = value
        .get("externalId")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Uuid>().ok());
    let mut conn = state.deps.db.reader().acquire().await?;
    let request = match ours {
        Some(id) => money::find_request(&mut conn, id, "").await?,
        None => match value.get("referenceId").and_then(Value::as_str) {
            Some(reference) => {
                money::find_by_provider_ref(&mut conn, Rail::MtnMomo, reference).await?
            }
            None => None,
        },
    };
    drop(conn);
    match request {
        Some(r) if r.rail == Rail::MtnMomo => {
            if r.status.in_flight() {
                check_soon(&state, r.id, None);
            }
        }
        _ => {
            collect::review(
                &state,
                Rail::MtnMomo,
                "requesttopay",
                value.get("externalId").and_then(Value::as_str),
                "no request matches this callback",
                &String::from_utf8_lossy(&body),
            )
            .await
        }
    }
    Ok(Json(json!({})))
}

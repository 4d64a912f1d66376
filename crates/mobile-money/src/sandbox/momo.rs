//! The MoMo Collection sandbox: token, request-to-pay, its status, the
//! callback, a statement and an outage switch.
//!
//! Outcomes follow MTN's published sandbox MSISDNs (see [`MomoOutcome::for_phone`]);
//! any other number succeeds. The callback is a PUT, as MTN's sandbox sends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    basic_credentials, bearer, defaults, header, random_string, Outage, OutageRequest,
    SandboxOptions, StatementQuery, ALNUM, DIGITS,
};
use crate::http::text;

pub(super) fn router(options: SandboxOptions, callbacks: reqwest::Client) -> Router {
    let sandbox = Arc::new(MomoSandbox {
        options,
        callbacks,
        outage: Outage::default(),
        state: Mutex::new(State_::default()),
    });
    Router::new()
        .route("/collection/token/", post(token))
        .route("/collection/v1_0/requesttopay", post(request_to_pay))
        .route("/collection/v1_0/requesttopay/{reference}", get(status))
        .route("/transactions", get(statement))
        .route("/outage", post(outage))
        .route("/stats", get(stats))
        .with_state(sandbox)
}

struct MomoSandbox {
    options: SandboxOptions,
    callbacks: reqwest::Client,
    outage: Outage,
    state: Mutex<State_>,
}

#[derive(Default)]
struct State_ {
    tokens: HashMap<String, DateTime<Utc>>,
    tokens_issued: u64,
    txns: Vec<Txn>,
    by_reference: HashMap<Uuid, usize>,
    by_phone: HashMap<String, Vec<usize>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum TxnStatus {
    Pending,
    Succeeded,
    Failed,
}

/// One line of the statement.
#[derive(Clone, Serialize)]
struct Txn {
    id: Uuid,
    phone: String,
    amount: String,
    currency: String,
    external_id: String,
    status: TxnStatus,
    reason: Option<String>,
    financial_transaction_id: Option<String>,
    created_at: DateTime<Utc>,
    callbacks_delivered: u32,
    #[serde(skip)]
    payer_message: String,
    #[serde(skip)]
    payee_note: String,
    #[serde(skip)]
    callback_url: Option<String>,
}

impl Txn {
    /// The RequestToPayResult body, as GET returns it and the callback sends it.
    fn result(&self) -> Value {
        let mut body = json!({
            "amount": self.amount,
            "currency": self.currency,
            "externalId": self.external_id,
            "payer": {"partyIdType": "MSISDN", "partyId": self.phone},
            "payerMessage": self.payer_message,
            "payeeNote": self.payee_note,
            "status": match self.status {
                TxnStatus::Pending => "PENDING",
                TxnStatus::Succeeded => "SUCCESSFUL",
                TxnStatus::Failed => "FAILED",
            },
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(id) = &self.financial_transaction_id {
                map.insert("financialTransactionId".into(), Value::from(id.clone()));
            }
            if let Some(reason) = &self.reason {
                map.insert("reason".into(), Value::from(reason.clone()));
            }
        }
        body
    }
}

/// What MTN's sandbox does for a payer number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MomoOutcome {
    Succeed,
    Fail(&'static str),
    /// Never leaves PENDING, so never calls back.
    StayPending,
}

impl MomoOutcome {
    /// MTN's RequestToPay sandbox MSISDNs: …450 payer failed, …451 rejected,
    /// …452 expired, …453 ongoing, …454 delayed, …455 payer not found,
    /// …461 internal processing error, …463 could not perform transaction.
    fn for_phone(phone: &str) -> Self {
        match phone {
            "46733123450" => Self::Fail("INTERNAL_PROCESSING_ERROR"),
            "46733123451" => Self::Fail("APPROVAL_REJECTED"),
            "46733123452" => Self::Fail("EXPIRED"),
            "46733123453" | "46733123454" => Self::StayPending,
            "46733123455" => Self::Fail("PAYER_NOT_FOUND"),
            "46733123461" => Self::Fail("INTERNAL_PROCESSING_ERROR"),
            "46733123463" => Self::Fail("COULD_NOT_PERFORM_TRANSACTION"),
            _ => Self::Succeed,
        }
    }
}

/// A refusal in MoMo's error envelope; small, so helpers can return it.
struct Reject {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

fn reject(status: StatusCode, code: &str, message: &str) -> Reject {
    Reject {
        status,
        body: json!({"code": code, "message": message}),
    }
}

/// MoMo's error envelope.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    reject(status, code, message).into_response()
}

impl MomoSandbox {
    fn lock(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscription key, bearer and target environment, as MoMo checks them.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Reject> {
        if header(headers, "Ocp-Apim-Subscription-Key").as_deref()
            != Some(defaults::MOMO_SUBSCRIPTION_KEY)
        {
            return Err(subscription_denied());
        }
        let now = self.options.clock.now();
        let valid = bearer(headers)
            .and_then(|t| self.lock().tokens.get(&t).copied())
            .is_some_and(|expires| now < expires);
        if !valid {
            return Err(reject(
                StatusCode::UNAUTHORIZED,
                "INVALID_TOKEN",
                "Access token is missing, invalid or expired.",
            ));
        }
        if header(headers, "X-Target-Environment").as_deref()
            != Some(defaults::MOMO_TARGET_ENVIRONMENT)
        {
            return Err(reject(
                StatusCode::FORBIDDEN,
                "NOT_ALLOWED_TARGET_ENVIRONMENT",
                "Access to target environment is forbidden.",
            ));
        }
        Ok(())
    }
}

/// What Azure API Management in front of MoMo answers for a bad key.
fn subscription_denied() -> Reject {
    Reject {
        status: StatusCode::UNAUTHORIZED,
        body: json!({
            "statusCode": 401,
            "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."
        }),
    }
}

async fn token(State(sb): State<Arc<MomoSandbox>>, headers: HeaderMap) -> Response {
    if sb.outage.take() {
        return Outage::response();
    }
    if header(&headers, "Ocp-Apim-Subscription-Key").as_deref()
        != Some(defaults::MOMO_SUBSCRIPTION_KEY)
    {
        return subscription_denied().into_response();
    }
    match basic_credentials(&headers) {
        Some((user, key)) if user == defaults::MOMO_API_USER && key == defaults::MOMO_API_KEY => {}
        _ => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "login_failed"})),
            )
                .into_response()
        }
    }
    let token = random_string(ALNUM, 40);
    let expires = sb.options.clock.now() + Duration::seconds(3600);
    {
        let mut st = sb.lock();
        st.tokens.insert(token.clone(), expires);
        st.tokens_issued += 1;
    }
    Json(json!({"access_token": token, "token_type": "access_token", "expires_in": 3600}))
        .into_response()
}

/// A MoMo amount: digits, optionally with decimals.
fn valid_amount(amount: &str) -> bool {
    crate::http::decimal_to_minor(amount, 6).is_some_and(|m| m > 0)
}

async fn request_to_pay(
    State(sb): State<Arc<MomoSandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sb.outage.take() {
        return Outage::response();
    }
    if let Err(r) = sb.authorize(&headers) {
        return r.into_response();
    }
    let Some(reference) = header(&headers, "X-Reference-Id").and_then(|r| Uuid::parse_str(&r).ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REFERENCE_ID",
            "X-Reference-Id must be a UUID.",
        );
    };
    let callback_url = header(&headers, "X-Callback-Url").filter(|u| !u.is_empty());
    if callback_url
        .as_deref()
        .is_some_and(|u| !u.starts_with("http://") && !u.starts_with("https://"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_CALLBACK_URL_HOST",
            "Callback URL host is not valid.",
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "Body is not JSON.");
    };
    let get = |k: &str| v.get(k).and_then(text).unwrap_or_default();
    let amount = get("amount");
    if !valid_amount(&amount) {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_AMOUNT",
            "Amount is not valid.",
        );
    }
    let currency = get("currency");
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_CURRENCY",
            "Currency not supported.",
        );
    }
    let payer = v.get("payer");
    let id_type = payer
        .and_then(|p| p.get("partyIdType"))
        .and_then(text)
        .unwrap_or_default();
    let phone = payer
        .and_then(|p| p.get("partyId"))
        .and_then(text)
        .unwrap_or_default();
    if id_type != "MSISDN"
        || phone.is_empty()
        || phone.len() > 15
        || !phone.bytes().all(|b| b.is_ascii_digit())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "PAYER_NOT_FOUND",
            "Payer is not a valid MSISDN.",
        );
    }
    let now = sb.options.clock.now();
    let idx = {
        let mut st = sb.lock();
        if st.by_reference.contains_key(&reference) {
            return error(
                StatusCode::CONFLICT,
                "RESOURCE_ALREADY_EXIST",
                "Duplicated reference id. Creation of resource failed.",
            );
        }
        let idx = st.txns.len();
        st.txns.push(Txn {
            id: reference,
            phone: phone.clone(),
            amount,
            currency,
            external_id: get("externalId"),
            status: TxnStatus::Pending,
            reason: None,
            financial_transaction_id: None,
            created_at: now,
            callbacks_delivered: 0,
            payer_message: get("payerMessage"),
            payee_note: get("payeeNote"),
            callback_url,
        });
        st.by_reference.insert(reference, idx);
        st.by_phone.entry(phone).or_default().push(idx);
        idx
    };
    tokio::spawn(resolve(sb.clone(), idx));
    StatusCode::ACCEPTED.into_response()
}

/// The payer answers; on a final state MoMo calls back once.
async fn resolve(sb: Arc<MomoSandbox>, idx: usize) {
    tokio::time::sleep(sb.options.answer_after).await;
    let delivery = {
        let mut st = sb.lock();
        let Some(txn) = st.txns.get_mut(idx) else {
            return;
        };
        match MomoOutcome::for_phone(&txn.phone) {
            MomoOutcome::StayPending => return,
            MomoOutcome::Succeed => {
                txn.status = TxnStatus::Succeeded;
                txn.financial_transaction_id = Some(random_string(DIGITS, 9));
            }
            MomoOutcome::Fail(reason) => {
                txn.status = TxnStatus::Failed;
                txn.reason = Some(reason.into());
            }
        }
        let mut body = txn.result();
        if let Some(map) = body.as_object_mut() {
            map.insert("referenceId".into(), Value::from(txn.id.to_string()));
        }
        txn.callback_url.clone().map(|url| (url, body))
    };
    let Some((url, body)) = delivery else {
        return;
    };
    match sb.callbacks.put(&url).json(&body).send().await {
        Ok(r) if r.status().is_success() => {
            let mut st = sb.lock();
            if let Some(txn) = st.txns.get_mut(idx) {
                txn.callbacks_delivered += 1;
            }
        }
        Ok(r) => tracing::debug!(url, status = %r.status(), "sandbox callback refused"),
        Err(e) => tracing::debug!(url, error = %e, "sandbox callback not delivered"),
    }
}

async fn status(
    State(sb): State<Arc<MomoSandbox>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    if sb.outage.take() {
        return Outage::response();
    }
    if let Err(r) = sb.authorize(&headers) {
        return r.into_response();
    }
    let found = Uuid::parse_str(&reference).ok().and_then(|r| {
        let st = sb.lock();
        st.by_reference
            .get(&r)
            .and_then(|i| st.txns.get(*i))
            .map(Txn::result)
    });
    match found {
        Some(body) => Json(body).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            "Requested resource was not found.",
        ),
    }
}

/// Every request to pay, oldest first, optionally for one phone.
async fn statement(
    State(sb): State<Arc<MomoSandbox>>,
    Query(q): Query<StatementQuery>,
) -> Response {
    let st = sb.lock();
    let txns: Vec<&Txn> = match &q.phone {
        Some(phone) => st
            .by_phone
            .get(phone)
            .map(|idxs| idxs.iter().filter_map(|i| st.txns.get(*i)).collect())
            .unwrap_or_default(),
        None => st.txns.iter().collect(),
    };
    Json(txns).into_response()
}

async fn outage(State(sb): State<Arc<MomoSandbox>>, Json(req): Json<OutageRequest>) -> Response {
    sb.outage.set(req.failures);
    Json(json!({"failures": req.failures})).into_response()
}

/// Counters a test can check, e.g. that a client caches its token.
async fn stats(State(sb): State<Arc<MomoSandbox>>) -> Response {
    let st = sb.lock();
    Json(json!({"tokens_issued": st.tokens_issued, "transactions": st.txns.len()})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtn_test_numbers() {
        assert_eq!(
            MomoOutcome::for_phone("46733123450"),
            MomoOutcome::Fail("INTERNAL_PROCESSING_ERROR")
        );
        assert_eq!(
            MomoOutcome::for_phone("46733123451"),
            MomoOutcome::Fail("APPROVAL_REJECTED")
        );
        assert_eq!(
            MomoOutcome::for_phone("46733123452"),
            MomoOutcome::Fail("EXPIRED")
        );
        assert_eq!(
            MomoOutcome::for_phone("46733123453"),
            MomoOutcome::StayPending
        );
        assert_eq!(
            MomoOutcome::for_phone("46733123454"),
            MomoOutcome::StayPending
        );
        assert_eq!(MomoOutcome::for_phone("256772123456"), MomoOutcome::Succeed);
    }
}

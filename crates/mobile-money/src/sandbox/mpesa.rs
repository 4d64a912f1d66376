//! The Daraja sandbox: OAuth, STK push and query, C2B URL registration and
//! simulated paybill payments, the transaction status query, a statement
//! and an outage switch.
//!
//! STK outcomes follow the phone's last digit (see [`StkOutcome::for_phone`]);
//! the customer "answers" `answer_after` after the push.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    basic_credentials, bearer, defaults, random_string, Outage, OutageRequest, SandboxOptions,
    StatementQuery, ALNUM, DIGITS, HEX, UPPER_ALNUM,
};
use crate::daraja::{
    nairobi_timestamp, C2bAnswer, C2bPayment, CallbackItem, CallbackMetadata, ResultParameter,
    ResultParameters, StatusResult, StkCallback, StkCallbackBody, StkResult,
    TransactionStatusResult,
};
use crate::http::text;

/// How long Daraja refuses the same amount to the same phone ("Rule limited").
const RULE_LIMIT_WINDOW_SECONDS: i64 = 120;
/// The name the sandbox gives every customer.
const CUSTOMER_NAME: &str = "Sandbox Customer";

pub(super) fn router(options: SandboxOptions, callbacks: reqwest::Client) -> Router {
    let sandbox = Arc::new(MpesaSandbox {
        options,
        callbacks,
        outage: Outage::default(),
        state: Mutex::new(State_::default()),
    });
    Router::new()
        .route("/oauth/v1/generate", get(token))
        .route("/mpesa/stkpush/v1/processrequest", post(stk_push))
        .route("/mpesa/stkpushquery/v1/query", post(stk_query))
        .route("/mpesa/c2b/v1/registerurl", post(register_url))
        .route(
            "/mpesa/transactionstatus/v1/query",
            post(transaction_status),
        )
        .route("/c2b/simulate", post(c2b_simulate))
        .route("/transactions", get(statement))
        .route("/outage", post(outage))
        .route("/stats", get(stats))
        .with_state(sandbox)
}

struct MpesaSandbox {
    options: SandboxOptions,
    callbacks: reqwest::Client,
    outage: Outage,
    state: Mutex<State_>,
}

impl MpesaSandbox {
    fn lock(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bearer must be one this sandbox issued and not yet expired (by the clock).
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Reject> {
        let now = self.options.clock.now();
        let valid = bearer(headers)
            .and_then(|t| self.lock().tokens.get(&t).copied())
            .is_some_and(|expires| now < expires);
        if valid {
            Ok(())
        } else {
            Err(reject(
                StatusCode::UNAUTHORIZED,
                "404.001.03",
                "Invalid Access Token",
            ))
        }
    }
}

/// Everything the sandbox remembers; indexed so 100 000 transactions stay fast.
#[derive(Default)]
struct State_ {
    tokens: HashMap<String, DateTime<Utc>>,
    tokens_issued: u64,
    txns: Vec<Txn>,
    /// CheckoutRequestID (STK) or TransID (C2B) → position in `txns`.
    by_id: HashMap<String, usize>,
    /// M-Pesa receipt (STK receipt or C2B TransID) → position.
    by_receipt: HashMap<String, usize>,
    by_phone: HashMap<String, Vec<usize>>,
    /// The phone's prompt still waiting for the customer (the subscriber lock).
    pending_by_phone: HashMap<String, usize>,
    /// (phone, amount) → when the last prompt was accepted, for the rule limit.
    last_prompt: HashMap<(String, i64), DateTime<Utc>>,
    validation_url: Option<String>,
    confirmation_url: Option<String>,
    /// The paybill's balance in cents, for OrgAccountBalance.
    balance_minor: i64,
}

impl State_ {
    /// A fresh receipt / TransID: 10 upper-case alphanumerics, unique.
    fn new_receipt(&self) -> String {
        loop {
            let r = random_string(UPPER_ALNUM, 10);
            if !self.by_receipt.contains_key(&r) && !self.by_id.contains_key(&r) {
                return r;
            }
        }
    }

    fn insert(&mut self, txn: Txn) -> usize {
        let idx = self.txns.len();
        self.by_id.insert(txn.id.clone(), idx);
        self.by_phone
            .entry(txn.phone.clone())
            .or_default()
            .push(idx);
        self.txns.push(txn);
        idx
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Stk,
    C2b,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum TxnStatus {
    Pending,
    Succeeded,
    Failed,
    Refused,
}

/// One line of the statement.
#[derive(Clone, Serialize)]
struct Txn {
    id: String,
    kind: Kind,
    phone: String,
    amount: i64,
    account: String,
    status: TxnStatus,
    result_code: Option<String>,
    result_desc: Option<String>,
    receipt: Option<String>,
    created_at: DateTime<Utc>,
    callbacks_delivered: u32,
    #[serde(skip)]
    merchant_request_id: String,
    #[serde(skip)]
    callback_url: String,
}

/// What the simulated customer does with a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StkOutcome {
    /// ResultCode, ResultDesc, how many times the callback is sent.
    Fail(i64, &'static str),
    Succeed {
        callbacks: u32,
    },
}

impl StkOutcome {
    /// By the phone's last digit: 1 insufficient funds, 2 cancelled, 3
    /// unreachable, 4 wrong PIN, 5 success with no callback, 6 success with
    /// the callback twice, anything else success.
    fn for_phone(phone: &str) -> Self {
        match phone.chars().last() {
            Some('1') => Self::Fail(1, "The balance is insufficient for the transaction."),
            Some('2') => Self::Fail(1032, "Request cancelled by user"),
            Some('3') => Self::Fail(1037, "DS timeout user cannot be reached"),
            Some('4') => Self::Fail(2001, "The initiator information is invalid."),
            Some('5') => Self::Succeed { callbacks: 0 },
            Some('6') => Self::Succeed { callbacks: 2 },
            _ => Self::Succeed { callbacks: 1 },
        }
    }
}

const SUCCESS_DESC: &str = "The service request is processed successfully.";

/// A refusal in Daraja's error envelope; small, so helpers can return it.
struct Reject {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({
                "requestId": format!("{}-{}-1", random_string(DIGITS, 5), random_string(DIGITS, 8)),
                "errorCode": self.code,
                "errorMessage": self.message,
            })),
        )
            .into_response()
    }
}

fn reject(status: StatusCode, code: &'static str, message: &str) -> Reject {
    Reject {
        status,
        code,
        message: message.to_string(),
    }
}

/// Daraja's error envelope.
fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    reject(status, code, message).into_response()
}

fn invalid(what: &str) -> Reject {
    reject(
        StatusCode::BAD_REQUEST,
        "400.002.02",
        &format!("Bad Request - Invalid {what}"),
    )
}

fn bad_request(what: &str) -> Response {
    invalid(what).into_response()
}

fn parse_body(body: &Bytes) -> Result<Value, Reject> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(invalid("JSON body")),
    }
}

fn field(v: &Value, key: &str) -> String {
    v.get(key).and_then(text).unwrap_or_default()
}

/// 2547XXXXXXXX / 2541XXXXXXXX: twelve digits with Kenya's code.
fn valid_phone(phone: &str) -> bool {
    phone.len() == 12 && phone.starts_with("254") && phone.bytes().all(|b| b.is_ascii_digit())
}

fn valid_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Amount as Daraja takes it: a whole number of shillings, number or string.
fn whole_amount(v: Option<&Value>) -> Option<i64> {
    let amount = match v? {
        Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
        })?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (amount >= 1).then_some(amount)
}

/// The STK Password Daraja expects for a timestamp.
fn expected_password(timestamp: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!(
        "{}{}{}",
        defaults::MPESA_SHORTCODE,
        defaults::MPESA_PASSKEY,
        timestamp
    ))
}

/// Checks BusinessShortCode, Timestamp and Password, common to push and query.
fn check_password(v: &Value) -> Result<(), Reject> {
    if field(v, "BusinessShortCode") != defaults::MPESA_SHORTCODE {
        return Err(invalid("BusinessShortCode"));
    }
    let timestamp = field(v, "Timestamp");
    if timestamp.len() != 14 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("Timestamp"));
    }
    if field(v, "Password") != expected_password(&timestamp) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "400.002.02",
            "Bad Request - Invalid Password",
        ));
    }
    Ok(())
}

async fn token(
    State(sb): State<Arc<MpesaSandbox>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if sb.outage.take() {
        return Outage::response();
    }
    if params.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return error(
            StatusCode::BAD_REQUEST,
            "400.008.02",
            "Invalid grant type passed",
        );
    }
    match basic_credentials(&headers) {
        Some((key, secret))
            if key == defaults::MPESA_CONSUMER_KEY && secret == defaults::MPESA_CONSUMER_SECRET => {
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "400.008.01",
                "Invalid Authentication passed",
            )
        }
    }
    let token = random_string(ALNUM, 28);
    let expires = sb.options.clock.now() + Duration::seconds(3599);
    {
        let mut st = sb.lock();
        st.tokens.insert(token.clone(), expires);
        st.tokens_issued += 1;
    }
    Json(json!({"access_token": token, "expires_in": "3599"})).into_response()
}

async fn stk_push(
    State(sb): State<Arc<MpesaSandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sb.outage.take() {
        return Outage::response();
    }
    if let Err(r) = sb.authorize(&headers) {
        return r.into_response();
    }
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = check_password(&v) {
        return r.into_response();
    }
    let transaction_type = field(&v, "TransactionType");
    if transaction_type != "CustomerPayBillOnline" && transaction_type != "CustomerBuyGoodsOnline" {
        return bad_request("TransactionType");
    }
    let Some(amount) = whole_amount(v.get("Amount")) else {
        return bad_request("Amount");
    };
    let phone = field(&v, "PhoneNumber");
    if !valid_phone(&phone) {
        return bad_request("PhoneNumber");
    }
    if field(&v, "PartyA") != phone {
        return bad_request("PartyA");
    }
    if field(&v, "PartyB") != defaults::MPESA_SHORTCODE {
        return bad_request("PartyB");
    }
    let callback_url = field(&v, "CallBackURL");
    if !valid_url(&callback_url) {
        return bad_request("CallBackURL");
    }
    let account = field(&v, "AccountReference");
    if account.is_empty() || account.chars().count() > 12 {
        return bad_request("AccountReference");
    }
    if field(&v, "TransactionDesc").chars().count() > 13 {
        return bad_request("TransactionDesc");
    }

    let now = sb.options.clock.now();
    let merchant_request_id = format!(
        "{}-{}-1",
        random_string(DIGITS, 5),
        random_string(DIGITS, 8)
    );
    let (idx, checkout_request_id, rule_limited) = {
        let mut st = sb.lock();
        if st.pending_by_phone.contains_key(&phone) {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500.001.1001",
                "Unable to lock subscriber, a transaction is already in process for the current subscriber",
            );
        }
        let key = (phone.clone(), amount);
        let rule_limited = st
            .last_prompt
            .get(&key)
            .is_some_and(|at| now - *at < Duration::seconds(RULE_LIMIT_WINDOW_SECONDS));
        st.last_prompt.insert(key, now);
        let checkout_request_id = loop {
            let id = format!(
                "ws_CO_{}{}",
                now.with_timezone(&chrono_tz::Africa::Nairobi)
                    .format("%d%m%Y%H%M%S"),
                random_string(DIGITS, 12)
            );
            if !st.by_id.contains_key(&id) {
                break id;
            }
        };
        let idx = st.insert(Txn {
            id: checkout_request_id.clone(),
            kind: Kind::Stk,
            phone: phone.clone(),
            amount,
            account,
            status: TxnStatus::Pending,
            result_code: None,
            result_desc: None,
            receipt: None,
            created_at: now,
            callbacks_delivered: 0,
            merchant_request_id: merchant_request_id.clone(),
            callback_url,
        });
        st.pending_by_phone.insert(phone, idx);
        (idx, checkout_request_id, rule_limited)
    };
    tokio::spawn(resolve_stk(sb.clone(), idx, rule_limited));
    Json(json!({
        "MerchantRequestID": merchant_request_id,
        "CheckoutRequestID": checkout_request_id,
        "ResponseCode": "0",
        "ResponseDescription": "Success. Request accepted for processing",
        "CustomerMessage": "Success. Request accepted for processing",
    }))
    .into_response()
}

/// The simulated customer answers the prompt, then Daraja calls back.
async fn resolve_stk(sb: Arc<MpesaSandbox>, idx: usize, rule_limited: bool) {
    tokio::time::sleep(sb.options.answer_after).await;
    let now = sb.options.clock.now();
    let delivery = {
        let mut st = sb.lock();
        let Some(phone) = st.txns.get(idx).map(|t| t.phone.clone()) else {
            return;
        };
        let outcome = if rule_limited {
            StkOutcome::Fail(17, "Rule limited.")
        } else {
            StkOutcome::for_phone(&phone)
        };
        let receipt = matches!(outcome, StkOutcome::Succeed { .. }).then(|| st.new_receipt());
        if let Some(r) = &receipt {
            st.by_receipt.insert(r.clone(), idx);
        }
        if st.pending_by_phone.get(&phone) == Some(&idx) {
            st.pending_by_phone.remove(&phone);
        }
        let Some(txn) = st.txns.get_mut(idx) else {
            return;
        };
        let (code, desc, callbacks, metadata) = match outcome {
            StkOutcome::Fail(code, desc) => (code, desc, 1, None),
            StkOutcome::Succeed { callbacks } => {
                let item = |name: &str, value: Option<Value>| CallbackItem {
                    name: name.into(),
                    value,
                };
                let date: i64 = nairobi_timestamp(now).parse().unwrap_or_default();
                let phone_number: Value = txn
                    .phone
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(txn.phone.clone()));
                let metadata = CallbackMetadata {
                    item: vec![
                        item("Amount", Some(Value::from(txn.amount))),
                        item("MpesaReceiptNumber", receipt.clone().map(Value::from)),
                        item("Balance", None),
                        item("TransactionDate", Some(Value::from(date))),
                        item("PhoneNumber", Some(phone_number)),
                    ],
                };
                (0, SUCCESS_DESC, callbacks, Some(metadata))
            }
        };
        txn.status = if code == 0 {
            TxnStatus::Succeeded
        } else {
            TxnStatus::Failed
        };
        txn.result_code = Some(code.to_string());
        txn.result_desc = Some(desc.to_string());
        txn.receipt = receipt;
        let body = StkCallback {
            body: StkCallbackBody {
                stk_callback: StkResult {
                    merchant_request_id: txn.merchant_request_id.clone(),
                    checkout_request_id: txn.id.clone(),
                    result_code: code,
                    result_desc: desc.to_string(),
                    callback_metadata: metadata,
                },
            },
        };
        (txn.callback_url.clone(), body, callbacks)
    };
    let (url, body, times) = delivery;
    for _ in 0..times {
        if deliver(&sb.callbacks, &url, &body).await.is_some() {
            let mut st = sb.lock();
            if let Some(txn) = st.txns.get_mut(idx) {
                txn.callbacks_delivered += 1;
            }
        }
    }
}

/// POSTs a JSON body once (Daraja does not retry); the answer body on a 2xx.
async fn deliver<T: Serialize>(client: &reqwest::Client, url: &str, body: &T) -> Option<Vec<u8>> {
    match client.post(url).json(body).send().await {
        Ok(response) if response.status().is_success() => {
            Some(response.bytes().await.ok()?.to_vec())
        }
        Ok(response) => {
            tracing::debug!(url, status = %response.status(), "sandbox callback refused");
            None
        }
        Err(e) => {
            tracing::debug!(url, error = %e, "sandbox callback not delivered");
            None
        }
    }
}

async fn stk_query(
    State(sb): State<Arc<MpesaSandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sb.outage.take() {
        return Outage::response();
    }
    if let Err(r) = sb.authorize(&headers) {
        return r.into_response();
    }
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = check_password(&v) {
        return r.into_response();
    }
    let checkout_request_id = field(&v, "CheckoutRequestID");
    let found = {
        let st = sb.lock();
        st.by_id
            .get(&checkout_request_id)
            .and_then(|i| st.txns.get(*i))
            .filter(|t| t.kind == Kind::Stk)
            .cloned()
    };
    let Some(txn) = found else {
        return bad_request("CheckoutRequestID");
    };
    match (txn.result_code, txn.result_desc) {
        (Some(code), Some(desc)) => Json(json!({
            "ResponseCode": "0",
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": txn.merchant_request_id,
            "CheckoutRequestID": txn.id,
            "ResultCode": code,
            "ResultDesc": desc,
        }))
        .into_response(),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500.001.1001",
            "The transaction is being processed",
        ),
    }
}

async fn register_url(
    State(sb): State<Arc<MpesaSandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sb.outage.take() {
        return Outage::response();
    }
    if let Err(r) = sb.authorize(&headers) {
        return r.into_response();
    }
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if field(&v, "ShortCode") != defaults::MPESA_SHORTCODE {
        return bad_request("ShortCode");
    }
    let response_type = field(&v, "ResponseType");
    if response_type != "Completed" && response_type != "Cancelled" {
        return bad_request("ResponseType");
    }
    let confirmation = field(&v, "ConfirmationURL");
    if !valid_url(&confirmation) {
        return bad_request("ConfirmationURL");
    }
    let validation = field(&v, "ValidationURL");
    if !validation.is_empty() && !valid_url(&validation) {
        return bad_request("ValidationURL");
    }
    {
        let mut st = sb.lock();
        st.confirmation_url = Some(confirmation);
        st.validation_url = (!validation.is_empty()).then_some(validation);
    }
    Json(json!({
        // Daraja's own spelling.
        "OriginatorCoversationID": uuid::Uuid::new_v4().to_string(),
        "ResponseCode": "0",
        "ResponseDescription": "Success",
    }))
    .into_response()
}

async fn transaction_status(
    State(sb): State<Arc<MpesaSandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sb.outage.take() {
        return Outage::response();
    }
    if let Err(r) = sb.authorize(&headers) {
        return r.into_response();
    }
    let v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if field(&v, "CommandID") != "TransactionStatusQuery" {
        return bad_request("CommandID");
    }
    if field(&v, "PartyA") != defaults::MPESA_SHORTCODE {
        return bad_request("PartyA");
    }
    if field(&v, "IdentifierType") != "4" {
        return bad_request("IdentifierType");
    }
    let result_url = field(&v, "ResultURL");
    if !valid_url(&result_url) {
        return bad_request("ResultURL");
    }
    let transaction_id = field(&v, "TransactionID");
    if transaction_id.is_empty() {
        return bad_request("TransactionID");
    }
    let credentials_ok = field(&v, "Initiator") == defaults::MPESA_INITIATOR
        && field(&v, "SecurityCredential") == defaults::MPESA_SECURITY_CREDENTIAL;
    let mut originator = field(&v, "OriginatorConversationID");
    if originator.is_empty() {
        originator = uuid::Uuid::new_v4().to_string();
    }
    let now = sb.options.clock.now();
    let conversation_id = format!(
        "AG_{}_{}",
        now.with_timezone(&chrono_tz::Africa::Nairobi)
            .format("%Y%m%d"),
        random_string(HEX, 20)
    );
    let occasion = field(&v, "Occasion");
    tokio::spawn(resolve_status(
        sb.clone(),
        StatusQuery {
            transaction_id,
            originator: originator.clone(),
            conversation_id: conversation_id.clone(),
            result_url,
            credentials_ok,
            occasion,
        },
    ));
    Json(json!({
        "OriginatorConversationID": originator,
        "ConversationID": conversation_id,
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    }))
    .into_response()
}

struct StatusQuery {
    transaction_id: String,
    originator: String,
    conversation_id: String,
    result_url: String,
    credentials_ok: bool,
    occasion: String,
}

/// Daraja answers a status query by POSTing the result to ResultURL, later.
async fn resolve_status(sb: Arc<MpesaSandbox>, q: StatusQuery) {
    tokio::time::sleep(sb.options.answer_after).await;
    let now = sb.options.clock.now();
    let found = {
        let st = sb.lock();
        st.by_receipt
            .get(&q.transaction_id)
            .and_then(|i| st.txns.get(*i))
            .filter(|t| t.status == TxnStatus::Succeeded)
            .cloned()
    };
    let base = |code: i64, desc: &str| StatusResult {
        result_type: 0,
        result_code: code,
        result_desc: desc.to_string(),
        originator_conversation_id: q.originator.clone(),
        conversation_id: q.conversation_id.clone(),
        transaction_id: q.transaction_id.clone(),
        result_parameters: None,
    };
    let result = match (q.credentials_ok, found) {
        (false, _) => base(2001, "The initiator information is invalid."),
        // The sandbox's choice for a TransID it never issued.
        (true, None) => base(2032, "The transaction receipt number does not exist."),
        (true, Some(txn)) => {
            let param = |key: &str, value: Option<Value>| ResultParameter {
                key: key.into(),
                value,
            };
            let initiated: i64 = nairobi_timestamp(txn.created_at)
                .parse()
                .unwrap_or_default();
            let finalised: i64 = nairobi_timestamp(now).parse().unwrap_or_default();
            let reason_type = match txn.kind {
                Kind::Stk => "Pay Bill Online",
                Kind::C2b => "Pay Bill",
            };
            let mut r = base(0, SUCCESS_DESC);
            r.result_parameters = Some(ResultParameters {
                result_parameter: vec![
                    param(
                        "DebitPartyName",
                        Some(Value::from(format!("{} - {CUSTOMER_NAME}", txn.phone))),
                    ),
                    param(
                        "CreditPartyName",
                        Some(Value::from(format!(
                            "{} - Miliki Sandbox",
                            defaults::MPESA_SHORTCODE
                        ))),
                    ),
                    param(
                        "OriginatorConversationID",
                        Some(Value::from(q.originator.clone())),
                    ),
                    param("InitiatedTime", Some(Value::from(initiated))),
                    param(
                        "DebitAccountType",
                        Some(Value::from("MMF Account For Customer")),
                    ),
                    param("DebitPartyCharges", None),
                    param("TransactionReason", None),
                    param("ReasonType", Some(Value::from(reason_type))),
                    param("TransactionStatus", Some(Value::from("Completed"))),
                    param("FinalisedTime", Some(Value::from(finalised))),
                    param("Amount", Some(Value::from(txn.amount))),
                    param(
                        "ConversationID",
                        Some(Value::from(q.conversation_id.clone())),
                    ),
                    param("ReceiptNo", txn.receipt.clone().map(Value::from)),
                ],
            });
            r
        }
    };
    let mut body = serde_json::to_value(TransactionStatusResult { result }).unwrap_or_default();
    if let Some(result) = body.get_mut("Result").and_then(Value::as_object_mut) {
        result.insert(
            "ReferenceData".into(),
            json!({"ReferenceItem": {"Key": "Occasion", "Value": q.occasion}}),
        );
    }
    let _ = deliver(&sb.callbacks, &q.result_url, &body).await;
}

/// `{phone, amount, account}`: a customer pays the paybill from their phone.
#[derive(serde::Deserialize)]
struct Simulate {
    phone: String,
    amount: i64,
    account: String,
}

async fn c2b_simulate(State(sb): State<Arc<MpesaSandbox>>, body: Bytes) -> Response {
    let Ok(sim) = serde_json::from_slice::<Simulate>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "expected {phone, amount, account}"})),
        )
            .into_response();
    };
    if !valid_phone(&sim.phone) || sim.amount < 1 || sim.account.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "phone must be 254XXXXXXXXX, amount ≥ 1, account non-empty"})),
        )
            .into_response();
    }
    let now = sb.options.clock.now();
    let (idx, mut payment, validation_url, confirmation_url) = {
        let mut st = sb.lock();
        let trans_id = st.new_receipt();
        let payment = C2bPayment {
            transaction_type: "Pay Bill".into(),
            trans_id: trans_id.clone(),
            trans_time: nairobi_timestamp(now),
            trans_amount: format!("{}.00", sim.amount),
            business_short_code: defaults::MPESA_SHORTCODE.into(),
            bill_ref_number: sim.account.clone(),
            invoice_number: String::new(),
            org_account_balance: String::new(),
            third_party_trans_id: String::new(),
            msisdn: sim.phone.clone(),
            first_name: CUSTOMER_NAME.split(' ').next().unwrap_or_default().into(),
        };
        let idx = st.insert(Txn {
            id: trans_id.clone(),
            kind: Kind::C2b,
            phone: sim.phone,
            amount: sim.amount,
            account: sim.account,
            status: TxnStatus::Pending,
            result_code: None,
            result_desc: None,
            receipt: None,
            created_at: now,
            callbacks_delivered: 0,
            merchant_request_id: String::new(),
            callback_url: String::new(),
        });
        st.by_receipt.insert(trans_id, idx);
        (
            idx,
            payment,
            st.validation_url.clone(),
            st.confirmation_url.clone(),
        )
    };

    let mut delivered = 0;
    let answer = match &validation_url {
        None => C2bAnswer::accept(),
        Some(url) => match deliver(&sb.callbacks, url, &payment).await {
            Some(bytes) => {
                delivered += 1;
                serde_json::from_slice::<C2bAnswer>(&bytes).unwrap_or(C2bAnswer {
                    result_code: "C2B00016".into(),
                    result_desc: "Validation answer not understood".into(),
                })
            }
            None => C2bAnswer {
                result_code: "C2B00016".into(),
                result_desc: "Validation did not answer".into(),
            },
        },
    };
    let accepted = answer.result_code == "0";
    {
        let mut st = sb.lock();
        if accepted {
            st.balance_minor += sim.amount * 100;
            payment.org_account_balance =
                format!("{}.{:02}", st.balance_minor / 100, st.balance_minor % 100);
        }
        if let Some(txn) = st.txns.get_mut(idx) {
            txn.status = if accepted {
                TxnStatus::Succeeded
            } else {
                TxnStatus::Refused
            };
            txn.result_code = Some(answer.result_code.clone());
            txn.result_desc = Some(answer.result_desc.clone());
            txn.receipt = accepted.then(|| payment.trans_id.clone());
            txn.callbacks_delivered = delivered;
        }
    }
    if accepted {
        if let Some(url) = &confirmation_url {
            if deliver(&sb.callbacks, url, &payment).await.is_some() {
                let mut st = sb.lock();
                if let Some(txn) = st.txns.get_mut(idx) {
                    txn.callbacks_delivered += 1;
                }
            }
        }
    }
    Json(json!({
        "trans_id": payment.trans_id,
        "accepted": accepted,
        "result_code": answer.result_code,
        "result_desc": answer.result_desc,
    }))
    .into_response()
}

/// Every STK prompt and C2B payment, oldest first, optionally for one phone.
async fn statement(
    State(sb): State<Arc<MpesaSandbox>>,
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

async fn outage(State(sb): State<Arc<MpesaSandbox>>, Json(req): Json<OutageRequest>) -> Response {
    sb.outage.set(req.failures);
    Json(json!({"failures": req.failures})).into_response()
}

/// Counters a test can check, e.g. that a client caches its token.
async fn stats(State(sb): State<Arc<MpesaSandbox>>) -> Response {
    let st = sb.lock();
    Json(json!({"tokens_issued": st.tokens_issued, "transactions": st.txns.len()})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_by_last_digit() {
        assert_eq!(
            StkOutcome::for_phone("254700000001"),
            StkOutcome::Fail(1, "The balance is insufficient for the transaction.")
        );
        assert!(matches!(
            StkOutcome::for_phone("254700000002"),
            StkOutcome::Fail(1032, _)
        ));
        assert!(matches!(
            StkOutcome::for_phone("254700000003"),
            StkOutcome::Fail(1037, _)
        ));
        assert!(matches!(
            StkOutcome::for_phone("254700000004"),
            StkOutcome::Fail(2001, _)
        ));
        assert_eq!(
            StkOutcome::for_phone("254700000005"),
            StkOutcome::Succeed { callbacks: 0 }
        );
        assert_eq!(
            StkOutcome::for_phone("254700000006"),
            StkOutcome::Succeed { callbacks: 2 }
        );
        assert_eq!(
            StkOutcome::for_phone("254700000009"),
            StkOutcome::Succeed { callbacks: 1 }
        );
    }

    #[test]
    fn amounts_must_be_whole() {
        assert_eq!(whole_amount(Some(&json!(10))), Some(10));
        assert_eq!(whole_amount(Some(&json!("10"))), Some(10));
        assert_eq!(whole_amount(Some(&json!(10.0))), Some(10));
        assert_eq!(whole_amount(Some(&json!(10.5))), None);
        assert_eq!(whole_amount(Some(&json!(0))), None);
        assert_eq!(whole_amount(None), None);
    }
}

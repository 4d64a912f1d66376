//! Safaricom Daraja (M-Pesa): the client for STK push, its query, C2B URL
//! registration and the transaction status query, and the callback bodies
//! Daraja POSTs back, in Daraja's own field names.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use miliki_platform::clock::SharedClock;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::http::{self, Provider};
use crate::RailError;

/// Where and as whom the platform talks to Daraja.
#[derive(Clone)]
pub struct DarajaConfig {
    /// e.g. `https://sandbox.safaricom.co.ke` or `{origin}/sandbox/mpesa`.
    pub base_url: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    /// BusinessShortCode / PartyB / ShortCode.
    pub shortcode: String,
    pub passkey: String,
    /// For the transaction status query.
    pub initiator_name: String,
    /// For the transaction status query.
    pub security_credential: String,
    /// CallBackURL of every STK push.
    pub stk_callback_url: String,
    pub c2b_validation_url: String,
    pub c2b_confirmation_url: String,
    /// ResultURL of the transaction status query.
    pub status_result_url: String,
    /// QueueTimeOutURL of the transaction status query.
    pub status_timeout_url: String,
    pub timeout: std::time::Duration,
}

impl DarajaConfig {
    /// The in-process sandbox's credentials at `base_url`; the callback URLs
    /// are left empty for the caller to fill in.
    pub fn sandbox(base_url: impl Into<String>) -> Self {
        use crate::sandbox::defaults;
        Self {
            base_url: base_url.into(),
            consumer_key: defaults::MPESA_CONSUMER_KEY.into(),
            consumer_secret: defaults::MPESA_CONSUMER_SECRET.into(),
            shortcode: defaults::MPESA_SHORTCODE.into(),
            passkey: defaults::MPESA_PASSKEY.into(),
            initiator_name: defaults::MPESA_INITIATOR.into(),
            security_credential: defaults::MPESA_SECURITY_CREDENTIAL.into(),
            stk_callback_url: String::new(),
            c2b_validation_url: String::new(),
            c2b_confirmation_url: String::new(),
            status_result_url: String::new(),
            status_timeout_url: String::new(),
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// A bearer token and the instant (by the clock) after which it is refetched.
#[derive(Clone)]
struct CachedToken {
    token: String,
    refresh_at: DateTime<Utc>,
}

/// The Daraja client; cheap to clone, clones share the token cache.
#[derive(Clone)]
pub struct Daraja {
    http: reqwest::Client,
    config: Arc<DarajaConfig>,
    clock: SharedClock,
    token: Arc<Mutex<Option<CachedToken>>>,
}

/// One STK push: a PIN prompt on the customer's phone.
#[derive(Debug, Clone)]
pub struct StkPush {
    /// 2547XXXXXXXX: digits with country code, no '+'.
    pub phone: String,
    /// Whole shillings, ≥ 1.
    pub amount: i64,
    /// The contract's account number (at most 12 characters reach Daraja).
    pub account_reference: String,
    /// TransactionDesc, truncated to 13 characters by the client.
    pub description: String,
}

/// Daraja took the push; the outcome comes by callback or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkAccepted {
    pub merchant_request_id: String,
    pub checkout_request_id: String,
}

/// What the STK query says about a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StkQuery {
    /// The customer has not answered yet.
    Pending,
    /// ResultCode as Daraja gives it on the query (a string; "0" is success) and ResultDesc.
    Done {
        result_code: String,
        result_desc: String,
    },
}

/// Daraja's synchronous answer to an STK push.
#[derive(Deserialize)]
struct StkPushAnswer {
    #[serde(rename = "MerchantRequestID")]
    merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    checkout_request_id: String,
    #[serde(rename = "ResponseCode", deserialize_with = "string_or_number")]
    response_code: String,
    #[serde(rename = "ResponseDescription", default)]
    response_description: String,
}

/// Daraja's answer to an STK query.
#[derive(Deserialize)]
struct StkQueryAnswer {
    #[serde(
        rename = "ResultCode",
        default,
        deserialize_with = "opt_string_or_number"
    )]
    result_code: Option<String>,
    #[serde(rename = "ResultDesc", default)]
    result_desc: String,
}

/// The common acknowledgement of registerurl and transactionstatus.
#[derive(Deserialize)]
struct Acknowledgement {
    #[serde(
        rename = "ResponseCode",
        default,
        deserialize_with = "opt_string_or_number"
    )]
    response_code: Option<String>,
    #[serde(rename = "ResponseDescription", default)]
    response_description: String,
    #[serde(rename = "ConversationID", default)]
    conversation_id: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Daraja sends seconds as a string ("3599").
    #[serde(deserialize_with = "string_or_number")]
    expires_in: String,
}

impl Daraja {
    /// A client; the clock stamps Timestamps and times the token cache.
    pub fn new(config: DarajaConfig, clock: SharedClock) -> Self {
        let mut config = config;
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        Self {
            http: http::client(config.timeout),
            config: Arc::new(config),
            clock,
            token: Arc::new(Mutex::new(None)),
        }
    }

    /// The paybill payments arrive on (C2B BusinessShortCode).
    pub fn shortcode(&self) -> &str {
        &self.config.shortcode
    }

    /// POST /mpesa/stkpush/v1/processrequest: sends the PIN prompt.
    pub async fn stk_push(&self, push: &StkPush) -> Result<StkAccepted, RailError> {
        let (password, timestamp) = self.password();
        let body = json!({
            "BusinessShortCode": self.config.shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": push.amount,
            "PartyA": push.phone,
            "PartyB": self.config.shortcode,
            "PhoneNumber": push.phone,
            "CallBackURL": self.config.stk_callback_url,
            "AccountReference": http::truncate(&push.account_reference, 12),
            "TransactionDesc": http::truncate(&push.description, 13),
        });
        let answer: StkPushAnswer = self.post("/mpesa/stkpush/v1/processrequest", &body).await?;
        if answer.response_code != "0" {
            return Err(RailError::Refused {
                code: answer.response_code,
                message: answer.response_description,
            });
        }
        Ok(StkAccepted {
            merchant_request_id: answer.merchant_request_id,
            checkout_request_id: answer.checkout_request_id,
        })
    }

    /// POST /mpesa/stkpushquery/v1/query. Daraja answers a push still waiting
    /// for the customer with errorCode 500.001.1001 ("The transaction is being
    /// processed"): that is `Pending`, not an error.
    pub async fn stk_query(&self, checkout_request_id: &str) -> Result<StkQuery, RailError> {
        let (password, timestamp) = self.password();
        let body = json!({
            "BusinessShortCode": self.config.shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        });
        match self
            .post::<StkQueryAnswer>("/mpesa/stkpushquery/v1/query", &body)
            .await
        {
            Ok(StkQueryAnswer {
                result_code: Some(result_code),
                result_desc,
            }) => Ok(StkQuery::Done {
                result_code,
                result_desc,
            }),
            Ok(StkQueryAnswer {
                result_code: None, ..
            }) => Ok(StkQuery::Pending),
            Err(RailError::Refused { code, .. }) if code == "500.001.1001" => Ok(StkQuery::Pending),
            Err(e) => Err(e),
        }
    }

    /// POST /mpesa/c2b/v1/registerurl: where Daraja validates and confirms paybill payments.
    pub async fn register_urls(&self) -> Result<(), RailError> {
        let body = json!({
            "ShortCode": self.config.shortcode,
            "ResponseType": "Completed",
            "ConfirmationURL": self.config.c2b_confirmation_url,
            "ValidationURL": self.config.c2b_validation_url,
        });
        let answer: Acknowledgement = self.post("/mpesa/c2b/v1/registerurl", &body).await?;
        check_acknowledgement(&answer)
    }

    /// POST /mpesa/transactionstatus/v1/query. Only the acceptance is
    /// synchronous; the result is POSTed to ResultURL later as a
    /// [`TransactionStatusResult`]. Returns the ConversationID.
    pub async fn transaction_status(
        &self,
        transaction_id: &str,
        originator_conversation_id: &str,
    ) -> Result<String, RailError> {
        let body = json!({
            "Initiator": self.config.initiator_name,
            "SecurityCredential": self.config.security_credential,
            "CommandID": "TransactionStatusQuery",
            "TransactionID": transaction_id,
            "OriginatorConversationID": originator_conversation_id,
            "PartyA": self.config.shortcode,
            "IdentifierType": "4",
            "ResultURL": self.config.status_result_url,
            "QueueTimeOutURL": self.config.status_timeout_url,
            "Remarks": "Payment reconciliation",
            "Occasion": "Reconciliation",
        });
        let answer: Acknowledgement = self
            .post("/mpesa/transactionstatus/v1/query", &body)
            .await?;
        check_acknowledgement(&answer)?;
        Ok(answer.conversation_id)
    }

    /// Password and Timestamp as Daraja checks them: the timestamp is
    /// Nairobi wall time by the injected clock.
    fn password(&self) -> (String, String) {
        let timestamp = nairobi_timestamp(self.clock.now());
        let password = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}{}{}",
            self.config.shortcode, self.config.passkey, timestamp
        ));
        (password, timestamp)
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, RailError> {
        let token = self.token().await?;
        let url = format!("{}{}", self.config.base_url, path);
        let (status, bytes) =
            http::exchange(self.http.post(url).bearer_auth(token).json(body)).await?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // Daraja revoked or expired the token early: fetch a fresh one next time.
            *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        http::classify(Provider::Daraja, status, &bytes)
    }

    /// The cached token, or a new one from GET /oauth/v1/generate, kept until
    /// 60 s before Daraja says it expires.
    async fn token(&self) -> Result<String, RailError> {
        let now = self.clock.now();
        if let Some(cached) = self
            .token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if now < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        let url = format!(
            "{}/oauth/v1/generate?grant_type=client_credentials",
            self.config.base_url
        );
        let request = self.http.get(url).basic_auth(
            &self.config.consumer_key,
            Some(&self.config.consumer_secret),
        );
        let (status, bytes) = http::exchange(request).await?;
        let answer: TokenAnswer = http::classify(Provider::Daraja, status, &bytes)?;
        let seconds: i64 = answer.expires_in.trim().parse().map_err(|_| {
            RailError::Unavailable(format!(
                "unexpected answer: expires_in {}",
                answer.expires_in
            ))
        })?;
        let cached = CachedToken {
            token: answer.access_token,
            refresh_at: now + Duration::seconds(seconds - 60),
        };
        let token = cached.token.clone();
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(cached);
        Ok(token)
    }
}

fn check_acknowledgement(answer: &Acknowledgement) -> Result<(), RailError> {
    match answer.response_code.as_deref() {
        Some(code) if code.bytes().all(|b| b == b'0') && !code.is_empty() => Ok(()),
        Some(code) => Err(RailError::Refused {
            code: code.to_string(),
            message: answer.response_description.clone(),
        }),
        None => Err(RailError::Unavailable(
            "unexpected answer: no ResponseCode".into(),
        )),
    }
}

/// YYYYMMDDHHmmss in Africa/Nairobi, the form of every Daraja timestamp.
pub(crate) fn nairobi_timestamp(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::Africa::Nairobi)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

// ---- callback bodies ------------------------------------------------------

/// What Daraja POSTs to an STK push's CallBackURL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StkCallback {
    #[serde(rename = "Body")]
    pub body: StkCallbackBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StkCallbackBody {
    #[serde(rename = "stkCallback")]
    pub stk_callback: StkResult,
}

/// The outcome of one STK push.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StkResult {
    #[serde(rename = "MerchantRequestID")]
    pub merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
    /// A number here (a string on the query).
    #[serde(rename = "ResultCode", deserialize_with = "i64_from_any")]
    pub result_code: i64,
    #[serde(rename = "ResultDesc", default)]
    pub result_desc: String,
    /// Present on success only.
    #[serde(
        rename = "CallbackMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub callback_metadata: Option<CallbackMetadata>,
}

/// `{"Item": [{"Name", "Value"?}]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackMetadata {
    #[serde(rename = "Item", default, deserialize_with = "one_or_many")]
    pub item: Vec<CallbackItem>,
}

/// One metadata item; Daraja sends some (`Balance`) with no Value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackItem {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl StkResult {
    fn item(&self, name: &str) -> Option<&Value> {
        self.callback_metadata
            .as_ref()?
            .item
            .iter()
            .find(|i| i.name == name)?
            .value
            .as_ref()
    }

    /// Amount in whole shillings; None when absent or fractional.
    pub fn amount(&self) -> Option<i64> {
        let minor = http::decimal_to_minor(&http::text(self.item("Amount")?)?, 2)?;
        (minor % 100 == 0).then_some(minor / 100)
    }

    /// MpesaReceiptNumber.
    pub fn receipt(&self) -> Option<String> {
        http::text(self.item("MpesaReceiptNumber")?)
    }

    /// PhoneNumber (a number in the callback) as digits.
    pub fn phone(&self) -> Option<String> {
        let phone = http::text(self.item("PhoneNumber")?)?;
        (!phone.is_empty() && phone.bytes().all(|b| b.is_ascii_digit())).then_some(phone)
    }

    /// TransactionDate, the number YYYYMMDDHHmmss.
    pub fn transaction_date(&self) -> Option<i64> {
        match self.item("TransactionDate")? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// C2B validation and confirmation request (TransAmount is a string like "1500.00").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct C2bPayment {
    #[serde(rename = "TransactionType", default)]
    pub transaction_type: String,
    #[serde(rename = "TransID")]
    pub trans_id: String,
    #[serde(rename = "TransTime", default, deserialize_with = "string_or_number")]
    pub trans_time: String,
    #[serde(rename = "TransAmount", deserialize_with = "string_or_number")]
    pub trans_amount: String,
    #[serde(rename = "BusinessShortCode", deserialize_with = "string_or_number")]
    pub business_short_code: String,
    #[serde(
        rename = "BillRefNumber",
        default,
        deserialize_with = "string_or_number"
    )]
    pub bill_ref_number: String,
    #[serde(
        rename = "InvoiceNumber",
        default,
        deserialize_with = "string_or_number"
    )]
    pub invoice_number: String,
    #[serde(
        rename = "OrgAccountBalance",
        default,
        deserialize_with = "string_or_number"
    )]
    pub org_account_balance: String,
    #[serde(
        rename = "ThirdPartyTransID",
        default,
        deserialize_with = "string_or_number"
    )]
    pub third_party_trans_id: String,
    #[serde(rename = "MSISDN", deserialize_with = "string_or_number")]
    pub msisdn: String,
    #[serde(rename = "FirstName", default, deserialize_with = "string_or_number")]
    pub first_name: String,
}

impl C2bPayment {
    /// TransAmount in minor units: "1500.00" → 150000; junk → None.
    pub fn amount_minor(&self) -> Option<i64> {
        http::decimal_to_minor(&self.trans_amount, 2)
    }
}

/// The answer to a validation (and, with ResultCode "0", to a confirmation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct C2bAnswer {
    #[serde(rename = "ResultCode", deserialize_with = "string_or_number")]
    pub result_code: String,
    #[serde(rename = "ResultDesc", default)]
    pub result_desc: String,
}

impl C2bAnswer {
    /// "0", "Accepted".
    pub fn accept() -> Self {
        Self {
            result_code: "0".into(),
            result_desc: "Accepted".into(),
        }
    }

    /// "C2B00012", "Rejected": Daraja's code for an invalid account number.
    pub fn unknown_account() -> Self {
        Self {
            result_code: "C2B00012".into(),
            result_desc: "Rejected".into(),
        }
    }
}

/// What arrives at ResultURL after a transaction status query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionStatusResult {
    #[serde(rename = "Result")]
    pub result: StatusResult,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResult {
    #[serde(rename = "ResultType", default, deserialize_with = "i64_from_any")]
    pub result_type: i64,
    #[serde(rename = "ResultCode", deserialize_with = "i64_from_any")]
    pub result_code: i64,
    #[serde(rename = "ResultDesc", default)]
    pub result_desc: String,
    #[serde(rename = "OriginatorConversationID", default)]
    pub originator_conversation_id: String,
    #[serde(rename = "ConversationID", default)]
    pub conversation_id: String,
    #[serde(rename = "TransactionID", default)]
    pub transaction_id: String,
    #[serde(
        rename = "ResultParameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub result_parameters: Option<ResultParameters>,
}

/// `{"ResultParameter": [{"Key", "Value"?}]}` (Daraja sends a lone object when there is one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultParameters {
    #[serde(rename = "ResultParameter", default, deserialize_with = "one_or_many")]
    pub result_parameter: Vec<ResultParameter>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultParameter {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl StatusResult {
    /// A result parameter's value as text, whatever its JSON type.
    pub fn parameter(&self, key: &str) -> Option<String> {
        self.result_parameters
            .as_ref()?
            .result_parameter
            .iter()
            .find(|p| p.key == key)?
            .value
            .as_ref()
            .and_then(http::text)
    }

    /// "ReceiptNo".
    pub fn receipt(&self) -> Option<String> {
        self.parameter("ReceiptNo")
    }

    /// "Amount" (shillings, number or string) in minor units.
    pub fn amount_minor(&self) -> Option<i64> {
        http::decimal_to_minor(&self.parameter("Amount")?, 2)
    }

    /// The queried transaction went through.
    pub fn completed(&self) -> bool {
        self.result_code == 0 && self.parameter("TransactionStatus").as_deref() == Some("Completed")
    }
}

// ---- lenient field readers: Daraja is not consistent about JSON types ----

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string_or_number(d)?.unwrap_or_default())
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(value.as_ref().and_then(http::text))
}

fn i64_from_any<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("not an integer")),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("not an integer")),
        _ => Err(serde::de::Error::custom("not an integer")),
    }
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Value::deserialize(d)?;
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(_) => serde_json::from_value(value).map_err(serde::de::Error::custom),
        other => Ok(vec![
            serde_json::from_value(other).map_err(serde::de::Error::custom)?
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_with_valueless_item_parses() {
        let body = r#"{"Body":{"stkCallback":{"MerchantRequestID":"29115-34620561-1",
            "CheckoutRequestID":"ws_CO_191220191020363925","ResultCode":0,
            "ResultDesc":"The service request is processed successfully.",
            "CallbackMetadata":{"Item":[{"Name":"Amount","Value":1.00},
            {"Name":"MpesaReceiptNumber","Value":"NLJ7RT61SV"},{"Name":"Balance"},
            {"Name":"TransactionDate","Value":20191219102115},
            {"Name":"PhoneNumber","Value":254708374149}]}}}}"#;
        let cb: StkCallback = serde_json::from_str(body).unwrap();
        let r = cb.body.stk_callback;
        assert_eq!(r.result_code, 0);
        assert_eq!(r.amount(), Some(1));
        assert_eq!(r.receipt().as_deref(), Some("NLJ7RT61SV"));
        assert_eq!(r.phone().as_deref(), Some("254708374149"));
        assert_eq!(r.transaction_date(), Some(20191219102115));
    }

    #[test]
    fn fractional_callback_amount_is_none() {
        let body = r#"{"MerchantRequestID":"m","CheckoutRequestID":"c","ResultCode":0,"ResultDesc":"ok",
            "CallbackMetadata":{"Item":[{"Name":"Amount","Value":10.5}]}}"#;
        let r: StkResult = serde_json::from_str(body).unwrap();
        assert_eq!(r.amount(), None);
    }

    #[test]
    fn c2b_amounts() {
        let mut p: C2bPayment = serde_json::from_str(
            r#"{"TransactionType":"Pay Bill","TransID":"RKTQDM7W6S","TransTime":"20191122063845",
            "TransAmount":"1500.00","BusinessShortCode":"174379","BillRefNumber":"ACC1",
            "MSISDN":"254708374149","MiddleName":""}"#,
        )
        .unwrap();
        assert_eq!(p.amount_minor(), Some(150_000));
        assert_eq!(p.invoice_number, "");
        p.trans_amount = "1500".into();
        assert_eq!(p.amount_minor(), Some(150_000));
        p.trans_amount = "15x".into();
        assert_eq!(p.amount_minor(), None);
    }

    #[test]
    fn status_result_lone_parameter_and_string_amount() {
        let body = r#"{"Result":{"ResultType":0,"ResultCode":0,"ResultDesc":"ok",
            "OriginatorConversationID":"o","ConversationID":"c","TransactionID":"t",
            "ResultParameters":{"ResultParameter":{"Key":"Amount","Value":"250.50"}}}}"#;
        let r: TransactionStatusResult = serde_json::from_str(body).unwrap();
        assert_eq!(r.result.amount_minor(), Some(25_050));
        assert!(!r.result.completed());
    }

    #[test]
    fn timestamp_is_nairobi_time() {
        let at = DateTime::parse_from_rfc3339("2026-12-31T22:30:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(nairobi_timestamp(at), "20270101013005");
    }
}

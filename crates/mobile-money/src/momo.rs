//! MTN MoMo Collection: the client for request-to-pay and its status, and
//! the status body MoMo returns (and calls back with).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use miliki_platform::clock::SharedClock;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::http::{self, Provider};
use crate::RailError;

/// Where and as whom the platform talks to MoMo.
#[derive(Clone)]
pub struct MomoConfig {
    /// e.g. `https://sandbox.momodeveloper.mtn.com` or `{origin}/sandbox/momo`.
    pub base_url: String,
    /// Ocp-Apim-Subscription-Key.
    pub subscription_key: String,
    pub api_user: String,
    pub api_key: String,
    /// X-Target-Environment.
    pub target_environment: String,
    /// X-Callback-Url (not sent when empty).
    pub callback_url: String,
    pub timeout: std::time::Duration,
}

impl MomoConfig {
    /// The in-process sandbox's credentials at `base_url`; the callback URL
    /// is left empty for the caller to fill in.
    pub fn sandbox(base_url: impl Into<String>) -> Self {
        use crate::sandbox::defaults;
        Self {
            base_url: base_url.into(),
            subscription_key: defaults::MOMO_SUBSCRIPTION_KEY.into(),
            api_user: defaults::MOMO_API_USER.into(),
            api_key: defaults::MOMO_API_KEY.into(),
            target_environment: defaults::MOMO_TARGET_ENVIRONMENT.into(),
            callback_url: String::new(),
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    refresh_at: DateTime<Utc>,
}

/// The MoMo Collection client; cheap to clone, clones share the token cache.
#[derive(Clone)]
pub struct Momo {
    http: reqwest::Client,
    config: Arc<MomoConfig>,
    clock: SharedClock,
    token: Arc<Mutex<Option<CachedToken>>>,
}

/// One request to pay: a prompt on the payer's phone.
#[derive(Debug, Clone)]
pub struct RequestToPay {
    /// Whole units of `currency`.
    pub amount: i64,
    pub currency: String,
    /// Digits, no '+'.
    pub phone: String,
    pub external_id: String,
    pub payer_message: String,
    pub payee_note: String,
}

/// GET requesttopay/{reference}; the callback body has the same shape.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct MomoStatus {
    #[serde(default, deserialize_with = "string_or_number")]
    pub amount: String,
    #[serde(default)]
    pub currency: String,
    #[serde(
        default,
        deserialize_with = "opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub financial_transaction_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    pub status: MomoState,
    /// MoMo gives `{code, message}` or a bare string: both parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<MomoReason>,
}

/// Where a request to pay stands.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MomoState {
    Pending,
    Successful,
    Failed,
}

/// Why a request to pay failed (or is held), e.g. `APPROVAL_REJECTED`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct MomoReason {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl<'de> Deserialize<'de> for MomoReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(code) => Ok(MomoReason {
                code,
                message: None,
            }),
            Value::Object(map) => {
                let code = map
                    .get("code")
                    .and_then(http::text)
                    .ok_or_else(|| serde::de::Error::custom("reason without a code"))?;
                let message = map.get("message").and_then(http::text);
                Ok(MomoReason { code, message })
            }
            _ => Err(serde::de::Error::custom(
                "reason must be a string or {code, message}",
            )),
        }
    }
}

impl MomoStatus {
    /// The amount in minor units for a currency with `exponent` decimals:
    /// "100" / "100.5" → 10000 / 10050 with exponent 2; None if it does not fit.
    pub fn amount_minor(&self, exponent: u32) -> Option<i64> {
        http::decimal_to_minor(&self.amount, exponent)
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(deserialize_with = "string_or_number")]
    expires_in: String,
}

impl Momo {
    /// A client; the clock times the token cache.
    pub fn new(config: MomoConfig, clock: SharedClock) -> Self {
        let mut config = config;
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        Self {
            http: http::client(config.timeout),
            config: Arc::new(config),
            clock,
            token: Arc::new(Mutex::new(None)),
        }
    }

    /// POST /collection/v1_0/requesttopay; 202 means MoMo took it, the
    /// outcome comes by callback or [`Momo::status`].
    pub async fn request_to_pay(
        &self,
        reference: uuid::Uuid,
        pay: &RequestToPay,
    ) -> Result<(), RailError> {
        let token = self.token().await?;
        let body = json!({
            "amount": pay.amount.to_string(),
            "currency": pay.currency,
            "externalId": pay.external_id,
            "payer": {"partyIdType": "MSISDN", "partyId": pay.phone},
            "payerMessage": pay.payer_message,
            "payeeNote": pay.payee_note,
        });
        let mut request = self
            .http
            .post(format!(
                "{}/collection/v1_0/requesttopay",
                self.config.base_url
            ))
            .bearer_auth(token)
            .header("X-Reference-Id", reference.hyphenated().to_string())
            .header("X-Target-Environment", &self.config.target_environment)
            .header("Ocp-Apim-Subscription-Key", &self.config.subscription_key)
            .json(&body);
        if !self.config.callback_url.is_empty() {
            request = request.header("X-Callback-Url", &self.config.callback_url);
        }
        let (status, bytes) = http::exchange(request).await?;
        self.forget_token_on_401(status);
        if status.is_success() {
            return Ok(());
        }
        Err(http::classify::<Value>(Provider::Momo, status, &bytes)
            .err()
            .unwrap_or_else(|| RailError::Unavailable(format!("unexpected HTTP {status}"))))
    }

    /// GET /collection/v1_0/requesttopay/{reference}. An unknown reference is
    /// `Refused { code: "RESOURCE_NOT_FOUND" }`.
    pub async fn status(&self, reference: uuid::Uuid) -> Result<MomoStatus, RailError> {
        let token = self.token().await?;
        let request = self
            .http
            .get(format!(
                "{}/collection/v1_0/requesttopay/{}",
                self.config.base_url,
                reference.hyphenated()
            ))
            .bearer_auth(token)
            .header("X-Target-Environment", &self.config.target_environment)
            .header("Ocp-Apim-Subscription-Key", &self.config.subscription_key);
        let (status, bytes) = http::exchange(request).await?;
        self.forget_token_on_401(status);
        if status == reqwest::StatusCode::NOT_FOUND {
            let message = http::provider_error(Provider::Momo, &bytes)
                .map(|(_, m)| m)
                .unwrap_or_else(|| "Requested resource was not found.".into());
            return Err(RailError::Refused {
                code: "RESOURCE_NOT_FOUND".into(),
                message,
            });
        }
        http::classify(Provider::Momo, status, &bytes)
    }

    fn forget_token_on_401(&self, status: reqwest::StatusCode) {
        if status == reqwest::StatusCode::UNAUTHORIZED {
            *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// The cached token, or a new one from POST /collection/token/, kept
    /// until 60 s before MoMo says it expires.
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
        let request = self
            .http
            .post(format!("{}/collection/token/", self.config.base_url))
            .basic_auth(&self.config.api_user, Some(&self.config.api_key))
            .header("Ocp-Apim-Subscription-Key", &self.config.subscription_key)
            .header(reqwest::header::CONTENT_LENGTH, "0");
        let (status, bytes) = http::exchange(request).await?;
        let answer: TokenAnswer = http::classify(Provider::Momo, status, &bytes)?;
        let seconds: i64 = answer.expires_in.trim().parse().map_err(|_| {
            RailError::Unavailable(format!(
                "unexpected answer: expires_in {}",
                answer.expires_in
            ))
        })?;
        let token = answer.access_token;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(CachedToken {
            token: token.clone(),
            refresh_at: now + Duration::seconds(seconds - 60),
        });
        Ok(token)
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string_or_number(d)?.unwrap_or_default())
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(value.as_ref().and_then(http::text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_as_string_or_object() {
        let a: MomoStatus = serde_json::from_str(
            r#"{"amount":"100","currency":"EUR","externalId":"e","status":"FAILED","reason":"APPROVAL_REJECTED"}"#,
        )
        .unwrap();
        assert_eq!(a.status, MomoState::Failed);
        assert_eq!(a.reason.unwrap().code, "APPROVAL_REJECTED");
        let b: MomoStatus = serde_json::from_str(
            r#"{"amount":100.5,"currency":"EUR","financialTransactionId":23503452,"status":"SUCCESSFUL",
            "reason":{"code":"X","message":"why"},"payer":{"partyIdType":"MSISDN","partyId":"1"}}"#,
        )
        .unwrap();
        assert_eq!(b.financial_transaction_id.as_deref(), Some("23503452"));
        assert_eq!(b.reason.as_ref().unwrap().message.as_deref(), Some("why"));
        assert_eq!(b.amount_minor(2), Some(10_050));
        assert_eq!(b.amount_minor(0), None);
    }
}

//! The payments service's rules, asked over HTTP: a product's terms
//! (`GET /api/v1/products/{id}`) and a quote (`POST /api/v1/quotes`), on
//! behalf of the caller (their bearer token is forwarded).

use miliki_platform::problem::{FieldError, Problem};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::state::AppState;

/// The parts of a payments product the credit policy reads.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(as = CreditProductTerms)]
pub struct ProductTerms {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub currency: String,
    /// `daily`, `weekly` or `monthly`.
    pub frequency: String,
    pub term_periods_min: i64,
    pub term_periods_max: i64,
    pub min_deposit_bps: i64,
    pub vehicle_types: Vec<String>,
}

impl ProductTerms {
    /// An installment of this product as a monthly amount.
    pub fn monthly(&self, installment_minor: i64) -> i64 {
        let per_year: i128 = match self.frequency.as_str() {
            "daily" => 365,
            "weekly" => 52,
            _ => 12,
        };
        (i128::from(installment_minor) * per_year / 12) as i64
    }
}

/// A quote, as payments computed it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(as = OfferQuote)]
pub struct Quote {
    pub principal_minor: i64,
    pub deposit_minor: i64,
    pub processing_fee_minor: i64,
    pub total_interest_minor: i64,
    pub total_payable_minor: i64,
    pub installment_minor: i64,
    pub term_periods: i64,
    /// The number of scheduled installments.
    pub installments: i64,
}

/// Why payments gave no answer.
#[derive(Debug)]
pub enum QuoteError {
    /// Payments refused the request: the applicant's fields are wrong.
    Refused(ApiError),
    /// Payments could not be reached or failed.
    Unavailable(String),
}

impl QuoteError {
    pub fn into_api(self) -> ApiError {
        match self {
            QuoteError::Refused(e) => e,
            QuoteError::Unavailable(why) => ApiError::Unavailable(format!(
                "the payments service cannot quote right now ({why}); try again shortly"
            )),
        }
    }
}

fn base(state: &AppState) -> String {
    state.deps.service_url("payments")
}

/// A payments problem, re-raised with its field errors.
fn refused(status: reqwest::StatusCode, problem: Option<Problem>) -> ApiError {
    let detail = problem
        .as_ref()
        .and_then(|p| p.detail.clone())
        .unwrap_or_else(|| format!("payments answered {status}"));
    match status.as_u16() {
        422 => ApiError::Validation(
            problem
                .map(|p| p.errors)
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| vec![FieldError::new("body", detail)]),
        ),
        404 => ApiError::field("product_id", "no such product"),
        401 | 403 => ApiError::Forbidden(format!("payments refused the quote: {detail}")),
        _ => ApiError::BadRequest(detail),
    }
}

async fn call<T: serde::de::DeserializeOwned>(
    state: &AppState,
    token: &str,
    req: reqwest::RequestBuilder,
) -> Result<T, QuoteError> {
    let resp = req
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| QuoteError::Unavailable(e.without_url().to_string()))?;
    let status = resp.status();
    let _ = state;
    if status.is_success() {
        return resp
            .json::<T>()
            .await
            .map_err(|e| QuoteError::Unavailable(format!("an unreadable answer: {e}")));
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(QuoteError::Unavailable(format!("it answered {status}")));
    }
    let problem = resp.json::<Problem>().await.ok();
    Err(QuoteError::Refused(refused(status, problem)))
}

pub async fn product(state: &AppState, token: &str, id: Uuid) -> Result<ProductTerms, QuoteError> {
    let url = format!("{}/api/v1/products/{id}", base(state));
    call(state, token, state.http.get(url)).await
}

#[derive(Deserialize)]
struct RawQuote {
    principal_minor: i64,
    deposit_minor: i64,
    processing_fee_minor: i64,
    total_interest_minor: i64,
    total_payable_minor: i64,
    installment_minor: i64,
    installments: Vec<serde_json::Value>,
}

pub async fn quote(
    state: &AppState,
    token: &str,
    product_id: Uuid,
    price_minor: i64,
    currency: &str,
    deposit_minor: i64,
    term_periods: i64,
) -> Result<Quote, QuoteError> {
    let url = format!("{}/api/v1/quotes", base(state));
    let body = json!({
        "product_id": product_id,
        "price_minor": price_minor,
        "currency": currency,
        "deposit_minor": deposit_minor,
        "term_periods": term_periods,
    });
    let q: RawQuote = call(state, token, state.http.post(url).json(&body)).await?;
    Ok(Quote {
        principal_minor: q.principal_minor,
        deposit_minor: q.deposit_minor,
        processing_fee_minor: q.processing_fee_minor,
        total_interest_minor: q.total_interest_minor,
        total_payable_minor: q.total_payable_minor,
        installment_minor: q.installment_minor,
        term_periods,
        installments: q.installments.len() as i64,
    })
}

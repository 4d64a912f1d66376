//! Quotes: the schedule a product gives a price, computed and not stored.

use axum::extract::State;
use chrono::NaiveDate;
use miliki_platform::http::Json;
use miliki_platform::money::Currency;
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::quote::{quote as compute, Quote};
use crate::state::{AppState, Caller};
use crate::store;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    pub product_id: Option<Uuid>,
    /// A vehicle this service has heard of; or give `price_minor` and `currency`.
    pub vehicle_id: Option<Uuid>,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub deposit_minor: Option<i64>,
    pub term_periods: Option<i64>,
    /// Defaults to today in the operator's time zone.
    pub start_date: Option<NaiveDate>,
}

/// Quote a financing plan: the schedule, exactly, without storing anything.
#[utoipa::path(post, path = "/api/v1/quotes", tag = "quotes", security(("bearer" = [])),
    request_body = QuoteRequest,
    responses(
        (status = 200, body = Quote),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    _caller: Caller,
    Json(req): Json<QuoteRequest>,
) -> Result<Json<Quote>, ApiError> {
    let mut v = Validator::new();
    if req.product_id.is_none() {
        v.error("product_id", "is required");
    }
    if req.deposit_minor.is_none() {
        v.error("deposit_minor", "is required");
    }
    if req.term_periods.is_none() {
        v.error("term_periods", "is required");
    }
    let (price, currency) = match (req.vehicle_id, req.price_minor, &req.currency) {
        (Some(vehicle), None, None) => {
            match store::find_vehicle(state.deps.db.reader(), vehicle).await? {
                Some((_, price, currency)) => (Some(price), currency.parse::<Currency>().ok()),
                None => {
                    v.error("vehicle_id", "no such vehicle is listed");
                    (None, None)
                }
            }
        }
        (None, Some(price), Some(currency)) => (
            Some(price),
            v.check("currency", currency.parse::<Currency>()),
        ),
        (None, Some(_), None) => {
            v.error("currency", "is required with price_minor");
            (None, None)
        }
        (None, None, _) => {
            v.error(
                "price_minor",
                "give vehicle_id, or price_minor and currency",
            );
            (None, None)
        }
        (Some(_), _, _) => {
            v.error(
                "vehicle_id",
                "give vehicle_id or price_minor and currency, not both",
            );
            (None, None)
        }
    };
    v.finish()?;
    let (Some(product_id), Some(deposit), Some(term), Some(price)) =
        (req.product_id, req.deposit_minor, req.term_periods, price)
    else {
        return Err(ApiError::field("body", "is incomplete"));
    };
    let mut conn = state.deps.db.reader().acquire().await?;
    let product = store::find_product(&mut conn, product_id)
        .await?
        .ok_or_else(|| ApiError::field("product_id", "no such product"))?;
    if currency != Some(product.terms.currency) {
        return Err(ApiError::field(
            "currency",
            format!("the product is priced in {}", product.terms.currency),
        ));
    }
    let start = req.start_date.unwrap_or_else(|| state.today());
    Ok(Json(compute(&product.terms, price, deposit, term, start)?))
}

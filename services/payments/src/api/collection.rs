//! How a contract's installments are collected automatically (the rail, the
//! payer's phone, the local time of day), and every attempt made.

use axum::extract::State;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use miliki_platform::auth::Role;
use miliki_platform::contact::PhoneNumber as Phone;
use miliki_platform::http::{Json, Path};
use miliki_platform::money::Currency;
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::visible_contract;
use crate::collect::{self, DEFAULT_COLLECT_AT, PHONE_FIELD};
use crate::money::{self, CollectionSettings, MoneyRequest, RequestStatus};
use crate::rails::Rail;
use crate::state::{AppState, Caller};
use crate::store;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectionView {
    pub contract_id: Uuid,
    /// `mpesa` or `mtn_momo`.
    pub rail: String,
    /// The payer's phone, masked.
    pub phone: String,
    /// Local time of day collection starts on a due date, `HH:MM`.
    pub collect_at: String,
    pub updated_at: DateTime<Utc>,
}

fn view(state: &AppState, s: &CollectionSettings) -> CollectionView {
    let phone = state
        .deps
        .keyring
        .decrypt_string(PHONE_FIELD, &s.phone)
        .ok()
        .and_then(|p| Phone::parse(&p, "KE").ok())
        .map(|p| p.masked())
        .unwrap_or_else(|| "unreadable".into());
    CollectionView {
        contract_id: s.contract_id,
        rail: s.rail.as_str().into(),
        phone,
        collect_at: s.collect_at.clone(),
        updated_at: s.updated_at,
    }
}

/// How the contract is collected.
#[utoipa::path(get, path = "/api/v1/contracts/{id}/collection", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CollectionView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<CollectionView>, ApiError> {
    visible_contract(&state, &caller, id).await?;
    let mut conn = state.deps.db.reader().acquire().await?;
    let s = money::find_settings(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("collection settings"))?;
    Ok(Json(view(&state, &s)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionRequest {
    /// `mpesa` or `mtn_momo`.
    pub rail: Option<String>,
    pub phone: Option<String>,
    /// `HH:MM`, local; default 07:00.
    pub collect_at: Option<String>,
}

/// Choose how the contract is collected (the customer, their agent, admins).
#[utoipa::path(put, path = "/api/v1/contracts/{id}/collection", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = CollectionRequest,
    responses(
        (status = 200, body = CollectionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<CollectionRequest>,
) -> Result<Json<CollectionView>, ApiError> {
    caller.require(&[Role::Customer, Role::Agent, Role::Admin])?;
    let mut v = Validator::new();
    let rail = match v.required("rail", &body.rail) {
        Some(r) => match r.parse::<Rail>() {
            Ok(r) => Some(r),
            Err(_) => {
                v.error("rail", "must be mpesa or mtn_momo");
                None
            }
        },
        None => None,
    };
    let phone = match v.required("phone", &body.phone) {
        Some(raw) => match Phone::parse(raw, "KE") {
            Ok(p) => Some(p.as_str().to_owned()),
            Err(why) => {
                v.error("phone", why);
                None
            }
        },
        None => None,
    };
    let collect_at = match body.collect_at.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_COLLECT_AT.to_owned(),
        Some(t) => match NaiveTime::parse_from_str(t, "%H:%M") {
            Ok(time) => time.format("%H:%M").to_string(),
            Err(_) => {
                v.error("collect_at", "must be a local time of day as HH:MM");
                String::new()
            }
        },
    };
    v.finish()?;
    let (Some(rail), Some(phone)) = (rail, phone) else {
        return Err(ApiError::field("rail", "is required"));
    };
    let contract = visible_contract(&state, &caller, id).await?;
    if !collect::rail_takes(rail, contract.currency) {
        return Err(ApiError::field(
            "rail",
            format!("{rail} does not collect {}", contract.currency),
        ));
    }
    let mut conn = state.deps.db.writer().acquire().await?;
    if !store::phone_may_be_prompted(&mut conn, contract.customer_id).await? {
        return Err(ApiError::Conflict(
            "the customer's phone is not verified yet: automatic collection can start \
             once the code sent to it is entered"
                .into(),
        ));
    }
    let settings = CollectionSettings {
        contract_id: id,
        rail,
        phone: state.deps.keyring.encrypt_str(PHONE_FIELD, &phone),
        phone_index: collect::phone_index(&state, &phone),
        collect_at,
        updated_by: Some(caller.id),
        updated_at: state.deps.clock.now(),
    };
    money::put_settings(&mut conn, &settings, false).await?;
    Ok(Json(view(&state, &settings)))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    /// Also the payment's id (`GET /api/v1/payments/{id}`).
    pub id: Uuid,
    /// `schedule` (the collector) or `request` (someone paid from the app).
    pub origin: String,
    pub rail: String,
    pub amount_minor: i64,
    pub currency: Currency,
    /// `pending`, `succeeded` or `failed`; `unknown` while the rail's answer is awaited.
    pub status: String,
    /// The collection day it belongs to.
    pub day: Option<NaiveDate>,
    pub rail_code: Option<String>,
    pub rail_message: Option<String>,
    /// The rail's id for the prompt, what a status query needs and what the
    /// operator quotes to the provider: M-Pesa's CheckoutRequestID once the
    /// rail took the prompt; MoMo's X-Reference-Id, chosen before sending.
    pub rail_reference: Option<String>,
    pub receipt: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&MoneyRequest> for AttemptView {
    fn from(r: &MoneyRequest) -> Self {
        Self {
            id: r.id,
            origin: r.origin.as_str().into(),
            rail: r.rail.as_str().into(),
            amount_minor: r.amount_minor,
            currency: r.currency,
            status: match r.status {
                RequestStatus::Queued | RequestStatus::Sent => "pending",
                other => other.as_str(),
            }
            .into(),
            day: r.collection_day,
            rail_code: r.result_code.clone(),
            rail_message: r.result_text.clone(),
            rail_reference: r.provider_ref.clone(),
            receipt: r.receipt.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Every mobile-money prompt sent for the contract, newest first (up to 500).
#[utoipa::path(get, path = "/api/v1/contracts/{id}/collection-attempts", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<AttemptView>), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<AttemptView>>, ApiError> {
    visible_contract(&state, &caller, id).await?;
    let mut conn = state.deps.db.reader().acquire().await?;
    let list = money::requests_of_contract(&mut conn, id, 500).await?;
    Ok(Json(list.iter().map(AttemptView::from).collect()))
}

/// Callbacks that credited nothing, newest first (admins).
#[utoipa::path(get, path = "/api/v1/callbacks/reviews", tag = "callbacks", security(("bearer" = [])),
    responses((status = 200, body = Vec<money::Review>), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn reviews(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<money::Review>>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut conn = state.deps.db.reader().acquire().await?;
    Ok(Json(money::list_reviews(&mut conn, 500).await?))
}

//! Payments: cash taken by agents and admins today (mobile money plugs in
//! next), read by whoever may see the contract, reversed by admins.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path};
use miliki_platform::idempotency::{self, Idempotent, Outcome};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    may_see_customer, reason, visible_contract, ContractDetail, PaymentReceipt, PaymentView,
};
use crate::ops;
use crate::state::{AppState, Caller};
use crate::store;

/// Methods a payment can come by in this release.
pub const METHODS: &[&str] = &["cash"];

/// The largest single payment accepted, in minor units.
pub const MAX_PAYMENT_MINOR: i64 = 1_000_000_000_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub amount_minor: Option<i64>,
    /// `cash`.
    pub method: Option<String>,
}

/// Record a payment on a contract (agents for their customers, admins).
/// Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/payments", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    request_body = PaymentRequest,
    responses(
        (status = 201, body = PaymentReceipt),
        (status = 400, description = "No Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The contract takes no payments, or the first request is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    request: Idempotent<PaymentRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Agent, Role::Admin])?;
    let mut v = Validator::new();
    let amount = match request.body.amount_minor {
        Some(a) if (1..=MAX_PAYMENT_MINOR).contains(&a) => a,
        Some(_) => {
            v.error(
                "amount_minor",
                "must be a positive whole number of minor units",
            );
            0
        }
        None => {
            v.error("amount_minor", "is required");
            0
        }
    };
    let method = match v.required("method", &request.body.method) {
        Some(m) if METHODS.contains(&m) => m.to_owned(),
        Some(_) => {
            v.error("method", format!("must be one of {}", METHODS.join(", ")));
            String::new()
        }
        None => String::new(),
    };
    v.finish()?;
    visible_contract(&state, &caller, id).await?;
    let deps = &state.deps;
    let claim =
        match idempotency::claim(&deps.db, &caller.id.to_string(), &request, deps.clock.now())
            .await?
        {
            Outcome::Replay(response) => return Ok(response),
            Outcome::Fresh(claim) => claim,
        };
    let result = async {
        let mut tx = deps.db.begin().await?;
        let (payment, c, book) =
            ops::take_payment(&state, &mut tx, id, amount, &method, caller.id).await?;
        let receipt = PaymentReceipt {
            payment: PaymentView::from(&payment),
            contract: ContractDetail::new(&c, &book, state.today()),
        };
        claim
            .complete(&mut tx, StatusCode::CREATED, &receipt)
            .await?;
        deps.events.commit(tx).await?;
        Ok::<_, ApiError>(receipt)
    }
    .await;
    match result {
        Ok(receipt) => Ok((StatusCode::CREATED, Json(receipt)).into_response()),
        Err(e) => {
            claim.release(&deps.db).await;
            Err(e)
        }
    }
}

/// One payment.
#[utoipa::path(get, path = "/api/v1/payments/{id}", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PaymentView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<PaymentView>, ApiError> {
    let mut conn = state.deps.db.reader().acquire().await?;
    let p = store::find_payment(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    if !may_see_customer(&state, &caller, p.customer_id).await? {
        return Err(ApiError::NotFound("payment"));
    }
    Ok(Json(PaymentView::from(&p)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseRequest {
    pub reason: Option<String>,
}

/// Reverse a payment (admins): a new journal transaction takes it back out,
/// un-applying it from the latest installments if it was already applied.
/// Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/payments/{id}/reverse", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    request_body = ReverseRequest,
    responses(
        (status = 200, body = PaymentView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already reversed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reverse(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    request: Idempotent<ReverseRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let why = reason(&mut v, &request.body.reason);
    v.finish()?;
    let deps = &state.deps;
    let claim =
        match idempotency::claim(&deps.db, &caller.id.to_string(), &request, deps.clock.now())
            .await?
        {
            Outcome::Replay(response) => return Ok(response),
            Outcome::Fresh(claim) => claim,
        };
    let result = async {
        let mut tx = deps.db.begin().await?;
        let (payment, _) = ops::reverse_payment(&state, &mut tx, id, caller.id, &why).await?;
        let view = PaymentView::from(&payment);
        claim.complete(&mut tx, StatusCode::OK, &view).await?;
        deps.events.commit(tx).await?;
        Ok::<_, ApiError>(view)
    }
    .await;
    match result {
        Ok(view) => Ok(Json(view).into_response()),
        Err(e) => {
            claim.release(&deps.db).await;
            Err(e)
        }
    }
}

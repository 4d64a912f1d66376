//! Payments: cash taken by agents and admins, mobile money prompted to the
//! payer's phone, paybill money in suspense assigned by admins; read by
//! whoever may see the contract, reversed by admins.

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
use crate::collect;
use crate::money::{self, Origin, PaybillStatus};
use crate::ops;
use crate::rails::Rail;
use crate::state::{AppState, Caller};
use crate::store;
use miliki_platform::contact::PhoneNumber as Phone;

/// Methods a payment can come by.
pub const METHODS: &[&str] = &["cash", "mpesa", "mtn_momo"];

/// The largest single payment accepted, in minor units.
pub const MAX_PAYMENT_MINOR: i64 = 1_000_000_000_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub amount_minor: Option<i64>,
    /// `cash` (agents and admins), `mpesa` or `mtn_momo`.
    pub method: Option<String>,
    /// The payer's phone for mobile money; defaults to the contract's
    /// collection phone.
    pub phone: Option<String>,
}

/// Pay on a contract. Cash is recorded at once (agents for their customers,
/// admins): 201 with the receipt. Mobile money sends a prompt to the payer's
/// phone (customers for their own contracts too): 202 with the payment
/// `pending`; `GET /api/v1/payments/{id}` shows it become `succeeded` or
/// `failed`. Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/payments", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    request_body = PaymentRequest,
    responses(
        (status = 201, description = "Cash, in the ledger", body = PaymentReceipt),
        (status = 202, description = "Mobile money: the prompt is out", body = PaymentView),
        (status = 400, description = "No Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The contract takes no payments, a prompt is already out, or the first request is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The rail keeps failing; try later", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    request: Idempotent<PaymentRequest>,
) -> Result<Response, ApiError> {
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
    let rail = method.parse::<Rail>().ok();
    let phone = match (&request.body.phone, rail) {
        (Some(_), None) if !method.is_empty() => {
            v.error("phone", "is only for mobile money");
            None
        }
        (Some(raw), Some(_)) => match Phone::parse(raw, "KE") {
            Ok(p) => Some(p.as_str().to_owned()),
            Err(why) => {
                v.error("phone", why);
                None
            }
        },
        _ => None,
    };
    v.finish()?;
    match rail {
        None => caller.require(&[Role::Agent, Role::Admin])?,
        Some(_) => caller.require(&[Role::Customer, Role::Agent, Role::Admin])?,
    }
    let contract = visible_contract(&state, &caller, id).await?;
    let deps = &state.deps;
    if let Some(rail) = rail {
        if !state.rails.enabled(rail) {
            return Err(ApiError::field(
                "method",
                format!("{rail} is not configured on this platform"),
            ));
        }
        if !collect::rail_takes(rail, contract.currency) {
            return Err(ApiError::field(
                "method",
                format!("{rail} does not collect {}", contract.currency),
            ));
        }
        if !contract.status.takes_payments() {
            return Err(ApiError::Conflict(format!(
                "the contract is {} and takes no payments",
                contract.status
            )));
        }
        let phone = match phone {
            Some(p) => p,
            None => {
                let mut conn = deps.db.reader().acquire().await?;
                let settings = money::find_settings(&mut conn, id).await?;
                match settings.and_then(|s| {
                    deps.keyring
                        .decrypt_string(collect::PHONE_FIELD, &s.phone)
                        .ok()
                }) {
                    Some(p) => p,
                    None => {
                        return Err(ApiError::field(
                            "phone",
                            "is required: the contract has no collection phone yet",
                        ))
                    }
                }
            }
        };
        if rail.round_up(amount, contract.currency) != amount {
            return Err(ApiError::field(
                "amount_minor",
                format!("{rail} takes whole units of {}", contract.currency),
            ));
        }
        if !state.rails.allows(rail) {
            return Err(ApiError::Unavailable(format!(
                "{rail} keeps failing; try again in a minute"
            )));
        }
        {
            let mut conn = deps.db.reader().acquire().await?;
            if !store::phone_may_be_prompted(&mut conn, contract.customer_id).await? {
                return Err(ApiError::Conflict(
                    "the customer's phone is not verified yet: no money prompt can go out \
                     until the code sent to it is entered"
                        .into(),
                ));
            }
        }
        let claim =
            match idempotency::claim(&deps.db, &caller.id.to_string(), &request, deps.clock.now())
                .await?
            {
                Outcome::Replay(response) => return Ok(response),
                Outcome::Fresh(claim) => claim,
            };
        let result = async {
            let mut tx = deps.db.begin().await?;
            let queued = collect::queue(
                &state,
                &mut tx,
                collect::NewPrompt {
                    contract_id: contract.id,
                    customer_id: contract.customer_id,
                    rail,
                    phone: phone.clone(),
                    amount_minor: amount,
                    currency: contract.currency,
                    origin: Origin::Request,
                    requested_by: Some(caller.id),
                    collection_day: None,
                },
            )
            .await?;
            let view = PaymentView::of_request(&queued, None);
            claim.complete(&mut tx, StatusCode::ACCEPTED, &view).await?;
            tx.commit().await?;
            Ok::<_, ApiError>((queued, view))
        }
        .await;
        return match result {
            Ok((queued, view)) => {
                // The prompt goes out after the answer is durable; a crash in
                // between leaves a queued request the checker resolves.
                let sender = state.clone();
                let account = contract.account_number.clone();
                tokio::spawn(async move {
                    collect::send(&sender, &queued, &phone, &account).await;
                });
                Ok((StatusCode::ACCEPTED, Json(view)).into_response())
            }
            Err(e) => {
                claim.release(&deps.db).await;
                Err(e)
            }
        };
    }
    let claim =
        match idempotency::claim(&deps.db, &caller.id.to_string(), &request, deps.clock.now())
            .await?
        {
            Outcome::Replay(response) => return Ok(response),
            Outcome::Fresh(claim) => claim,
        };
    let result = async {
        let mut tx = deps.db.begin().await?;
        let (payment, c, book) = ops::take_payment(
            &state,
            &mut tx,
            id,
            miliki_platform::id::new_id(),
            amount,
            &method,
            caller.id,
        )
        .await?;
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

/// The payment with this id, from the ledger, the money requests or the paybill.
pub async fn view(state: &AppState, id: Uuid) -> Result<Option<PaymentView>, ApiError> {
    let mut conn = state.deps.db.reader().acquire().await?;
    let ledger = store::find_payment(&mut conn, id).await?;
    if let Some(r) = money::find_request(&mut conn, id, "").await? {
        return Ok(Some(PaymentView::of_request(&r, ledger.as_ref())));
    }
    if let Some(p) = money::find_paybill(&mut conn, id, "").await? {
        return Ok(Some(PaymentView::of_paybill(&p, ledger.as_ref())));
    }
    Ok(ledger.as_ref().map(PaymentView::from))
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
    let p = view(&state, id)
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    let visible = match p.customer_id {
        Some(customer) => may_see_customer(&state, &caller, customer).await?,
        None => caller.role == Role::Admin,
    };
    if !visible {
        return Err(ApiError::NotFound("payment"));
    }
    Ok(Json(p))
}

/// Paybill money no contract has claimed, oldest first (admins).
#[utoipa::path(get, path = "/api/v1/payments/suspense", tag = "payments", security(("bearer" = [])),
    responses((status = 200, body = Vec<PaymentView>), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn suspense(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PaymentView>>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut conn = state.deps.db.reader().acquire().await?;
    let list = money::list_paybill(&mut conn, PaybillStatus::Suspense, 500).await?;
    Ok(Json(
        list.iter()
            .map(|p| PaymentView::of_paybill(p, None))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub contract_id: Option<Uuid>,
}

/// Put money from suspense on a contract (admins). Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/payments/{id}/assign", tag = "payments", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    request_body = AssignRequest,
    responses(
        (status = 200, body = PaymentView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not in suspense, or the contract takes no payments", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    request: Idempotent<AssignRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let Some(contract_id) = request.body.contract_id else {
        return Err(ApiError::field("contract_id", "is required"));
    };
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
        let (paybill, payment) =
            collect::assign(&state, &mut tx, id, contract_id, caller.id).await?;
        let view = PaymentView::of_paybill(&paybill, Some(&payment));
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

//! The handover after payoff: the lien released, the logbook handed over
//! (with its reference), the tracker decommissioned. The last step makes the
//! contract `ownership_transferred`.

use axum::extract::State;
use chrono::{DateTime, Utc};
use miliki_events::catalogue::payments::ContractOwnershipTransferred;
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::visible_contract;
use crate::domain::contract::ContractStatus;
use crate::state::{AppState, Caller};
use crate::store;

miliki_platform::string_enum!(
    /// One step of the handover.
    Step {
        LienReleased => "lien_released",
        LogbookHandedOver => "logbook_handed_over",
        TrackerDecommissioned => "tracker_decommissioned",
    }
);

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepView {
    pub step: Step,
    pub done: bool,
    pub reference: Option<String>,
    pub done_by: Option<Uuid>,
    pub done_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Handover {
    pub contract_id: Uuid,
    pub status: ContractStatus,
    pub steps: Vec<StepView>,
    pub complete: bool,
}

async fn handover(
    state: &AppState,
    id: Uuid,
    status: ContractStatus,
) -> Result<Handover, ApiError> {
    let mut conn = state.deps.db.reader().acquire().await?;
    let done = store::ownership_steps(&mut conn, id).await?;
    let steps: Vec<StepView> = Step::ALL
        .iter()
        .map(|s| {
            let d = done.iter().find(|(name, ..)| name == s.as_str());
            StepView {
                step: *s,
                done: d.is_some(),
                reference: d.and_then(|(_, r, _, _)| r.clone()),
                done_by: d.and_then(|(_, _, b, _)| *b),
                done_at: d.map(|(_, _, _, at)| *at),
            }
        })
        .collect();
    Ok(Handover {
        contract_id: id,
        status,
        complete: steps.iter().all(|s| s.done),
        steps,
    })
}

/// The handover steps of a contract.
#[utoipa::path(get, path = "/api/v1/contracts/{id}/ownership-transfer", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Handover), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Handover>, ApiError> {
    let c = visible_contract(&state, &caller, id).await?;
    Ok(Json(handover(&state, id, c.status).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    pub step: Option<String>,
    /// Required for `logbook_handed_over`: the logbook's reference.
    pub reference: Option<String>,
}

/// Record a handover step (admins) on a paid-off contract.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/ownership-transfer", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = StepRequest,
    responses(
        (status = 200, body = Handover),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not paid off, or the step is done", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<StepRequest>,
) -> Result<Json<Handover>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let step = v
        .required("step", &req.step)
        .and_then(|s| v.check("step", s.parse::<Step>()));
    let reference = req
        .reference
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if step == Some(Step::LogbookHandedOver) && reference.is_none() {
        v.error(
            "reference",
            "is required for logbook_handed_over: the logbook's reference",
        );
    }
    if reference.is_some_and(|r| r.chars().count() > 100) {
        v.error("reference", "must be at most 100 characters");
    }
    v.finish()?;
    let Some(step) = step else {
        return Err(ApiError::field("step", "is required"));
    };
    let status = complete_step(&state, id, step, reference, Some(caller.id)).await?;
    Ok(Json(handover(&state, id, status).await?))
}

/// Records `step` (by staff, or by an event), moving the contract to
/// `ownership_transferred` when it was the last. Returns the status after.
pub async fn complete_step(
    state: &AppState,
    id: Uuid,
    step: Step,
    reference: Option<&str>,
    by: Option<Uuid>,
) -> Result<ContractStatus, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let lock = store::for_update(&deps.db);
    let mut c = store::find_contract(&mut tx, id, lock)
        .await?
        .ok_or(ApiError::NotFound("contract"))?;
    if c.status != ContractStatus::PaidOff {
        return Err(ApiError::Conflict(format!(
            "the contract is {}; the handover starts once it is paid off",
            c.status
        )));
    }
    if !store::record_step(&mut tx, id, step.as_str(), reference, by, now).await? {
        return Err(ApiError::Conflict(format!("{step} is already done")));
    }
    let done = store::ownership_steps(&mut tx, id).await?;
    if Step::ALL
        .iter()
        .all(|s| done.iter().any(|(n, ..)| n == s.as_str()))
    {
        let from = c.status;
        c.status = from
            .transition(ContractStatus::OwnershipTransferred)
            .map_err(ApiError::Conflict)?;
        c.updated_at = now;
        store::record_transition(
            &mut tx,
            id,
            Some(from),
            c.status,
            by,
            "handover complete",
            now,
        )
        .await?;
        store::update_contract(&mut tx, &c).await?;
        deps.events
            .write(
                &mut tx,
                &ContractOwnershipTransferred {
                    contract_id: c.id,
                    customer_id: c.customer_id,
                    vehicle_id: c.vehicle_id,
                },
            )
            .await?;
    }
    deps.events.commit(tx).await?;
    Ok(c.status)
}

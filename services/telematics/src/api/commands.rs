//! Immobilization: `POST /api/v1/telematics/vehicles/{id}/immobilization`
//! queues a command that is sent only when safe; `/api/v1/telematics/commands`
//! shows every command and its steps.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{id_param, scope, visible_vehicle};
use crate::commands::{self as cmd, Request};
use crate::domain::{CommandAction, CommandSource, CommandStatus};
use crate::state::{AppState, Caller};
use crate::store::{self, CommandRecord};

#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    pub status: String,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub note: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandView {
    pub id: Uuid,
    pub vehicle_id: Uuid,
    pub device_id: Uuid,
    pub action: CommandAction,
    pub reason: String,
    pub source: CommandSource,
    pub status: CommandStatus,
    pub contract_id: Option<Uuid>,
    pub requested_by: Option<Uuid>,
    pub requested_at: DateTime<Utc>,
    /// Not sent before this (the policy's warning period).
    pub not_before: DateTime<Utc>,
    pub attempts: i64,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// The tracker's reply.
    pub response: Option<String>,
    /// Why a queued command is still waiting.
    pub waiting_for: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
}

impl From<CommandRecord> for CommandView {
    fn from(c: CommandRecord) -> Self {
        Self {
            id: c.id,
            vehicle_id: c.vehicle_id,
            device_id: c.device_id,
            action: c.action,
            reason: c.reason,
            source: c.source,
            status: c.status,
            contract_id: c.contract_id,
            requested_by: c.requested_by,
            requested_at: c.requested_at,
            not_before: c.not_before,
            attempts: c.attempts,
            last_sent_at: c.last_sent_at,
            acknowledged_at: c.acknowledged_at,
            response: c.response,
            waiting_for: c.wait_note,
            steps: None,
        }
    }
}

async fn with_steps(state: &AppState, c: CommandRecord) -> Result<CommandView, ApiError> {
    let steps = store::steps(&state.deps.db, c.id).await?;
    let mut view = CommandView::from(c);
    view.steps = Some(
        steps
            .into_iter()
            .map(|(status, at, actor_id, note)| StepView {
                status,
                at,
                actor_id,
                note,
            })
            .collect(),
    );
    Ok(view)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ImmobilizationBody {
    /// `immobilize` or `restore`.
    pub action: Option<String>,
    pub reason: Option<String>,
}

/// Immobilize or restore a vehicle (admins). An immobilization waits until the
/// vehicle has stood still with its engine off for the configured time; a
/// restore is sent at once. A restore while the arrears policy would
/// immobilize is an override: the policy holds off until the contract is current.
#[utoipa::path(post, path = "/api/v1/telematics/vehicles/{id}/immobilization", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = ImmobilizationBody,
    responses(
        (status = 202, description = "Queued", body = CommandView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No tracker that takes commands", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ImmobilizationBody>,
) -> Result<(StatusCode, Json<CommandView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let action = v
        .required("action", &body.action)
        .and_then(|a| v.check("action", a.parse::<CommandAction>()));
    let reason = v.required("reason", &body.reason).map(str::to_owned);
    if reason.as_ref().is_some_and(|r| r.len() > 500) {
        v.error("reason", "must be at most 500 characters");
    }
    v.finish()?;
    let (Some(action), Some(reason)) = (action, reason) else {
        return Err(ApiError::BadRequest("invalid request".into()));
    };
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let c = cmd::request(
        &state,
        &mut tx,
        &Request {
            vehicle_id: id,
            action,
            reason: &reason,
            source: CommandSource::Manual,
            requested_by: Some(caller.id),
            contract_id: None,
            not_before: deps.clock.now(),
        },
    )
    .await?;
    if action == CommandAction::Restore {
        if let Some(contract) = store::policy_for_vehicle(&mut tx, id).await? {
            if let Some(mut p) = store::policy(&mut tx, contract).await? {
                if p.days_past_due >= state.config.policy_days_past_due {
                    p.override_by = Some(caller.id);
                    p.override_reason = Some(reason.clone());
                    store::save_policy(&mut tx, &p).await?;
                }
            }
        }
    }
    deps.events.commit(tx).await?;
    Ok((StatusCode::ACCEPTED, Json(with_steps(&state, c).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    pub vehicle_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Commands, newest first, of the vehicles the caller may see.
#[utoipa::path(get, path = "/api/v1/telematics/commands", tag = "telematics", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = Page<CommandView>),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<CommandView>>, ApiError> {
    let mut v = Validator::new();
    let vehicle = id_param(&mut v, "vehicle_id", &q.vehicle_id);
    let (limit, before) =
        pagination::parse_page_params::<Uuid>(&mut v, q.limit, q.cursor.as_deref());
    v.finish()?;
    let rows = store::commands_of(&state.deps.db, scope(&caller), vehicle, before, limit).await?;
    let page = pagination::page_from(rows, limit, |c| c.id);
    let mut items = Vec::with_capacity(page.items.len());
    for c in page.items {
        items.push(with_steps(&state, c).await?);
    }
    Ok(Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// One command with every step.
#[utoipa::path(get, path = "/api/v1/telematics/commands/{id}", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = CommandView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<CommandView>, ApiError> {
    let c = store::find_command(state.deps.db.reader(), id)
        .await?
        .ok_or(ApiError::NotFound("command"))?;
    visible_vehicle(&state, &caller, c.vehicle_id)
        .await
        .map_err(|_| ApiError::NotFound("command"))?;
    Ok(Json(with_steps(&state, c).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelBody {
    pub reason: Option<String>,
}

/// Cancel a command not yet acknowledged (admins).
#[utoipa::path(post, path = "/api/v1/telematics/commands/{id}/cancel", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = CancelBody,
    responses(
        (status = 200, body = CommandView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<CancelBody>,
) -> Result<Json<CommandView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let reason = v.required("reason", &body.reason).map(str::to_owned);
    v.finish()?;
    let reason = reason.unwrap_or_default();
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let c = store::find_command(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("command"))?;
    if !cmd::cancel_in(&state, &mut tx, &c, Some(caller.id), &reason).await? {
        return Err(ApiError::Conflict(format!(
            "the command is already {}",
            c.status
        )));
    }
    deps.events.commit(tx).await?;
    let c = store::find_command(deps.db.writer(), id)
        .await?
        .ok_or(ApiError::NotFound("command"))?;
    Ok(Json(with_steps(&state, c).await?))
}

//! `/api/v1/telematics/events`: risk events, and staff acknowledging them.

use axum::extract::State;
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
use crate::domain::risk::RiskKind;
use crate::state::{AppState, Caller};
use crate::store::{self, RiskFilter, RiskRecord};

#[derive(Debug, Serialize, ToSchema)]
pub struct RiskView {
    pub id: Uuid,
    pub vehicle_id: Uuid,
    pub device_id: Uuid,
    pub kind: String,
    pub severity: String,
    pub at: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub acknowledged_by: Option<Uuid>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledge_note: Option<String>,
}

impl From<RiskRecord> for RiskView {
    fn from(r: RiskRecord) -> Self {
        Self {
            id: r.id,
            vehicle_id: r.vehicle_id,
            device_id: r.device_id,
            kind: r.kind,
            severity: r.severity,
            at: r.at,
            lat: r.lat,
            lon: r.lon,
            details: r.details,
            acknowledged_by: r.acknowledged_by,
            acknowledged_at: r.acknowledged_at,
            acknowledge_note: r.acknowledge_note,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    pub vehicle_id: Option<String>,
    pub kind: Option<String>,
    pub acknowledged: Option<bool>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Risk events, newest first, of the vehicles the caller may see.
#[utoipa::path(get, path = "/api/v1/telematics/events", tag = "telematics", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = Page<RiskView>),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<RiskView>>, ApiError> {
    let mut v = Validator::new();
    let vehicle = id_param(&mut v, "vehicle_id", &q.vehicle_id);
    let kind = q
        .kind
        .as_deref()
        .and_then(|k| v.check("kind", k.parse::<RiskKind>()));
    let (limit, before) =
        pagination::parse_page_params::<Uuid>(&mut v, q.limit, q.cursor.as_deref());
    v.finish()?;
    let rows = store::list_risks(
        &state.deps.db,
        scope(&caller),
        &RiskFilter {
            vehicle_id: vehicle,
            kind: kind.map(|k| k.as_str().to_owned()),
            acknowledged: q.acknowledged,
            before,
            limit,
        },
    )
    .await?;
    let page = pagination::page_from(rows, limit, |r| r.id);
    Ok(Json(Page {
        items: page.items.into_iter().map(RiskView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AcknowledgeBody {
    /// What was done about it.
    pub note: Option<String>,
}

/// Acknowledge a risk event (admins, and agents for their customers' vehicles).
#[utoipa::path(post, path = "/api/v1/telematics/events/{id}/acknowledge", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = AcknowledgeBody,
    responses(
        (status = 200, body = RiskView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already acknowledged", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<AcknowledgeBody>,
) -> Result<Json<RiskView>, ApiError> {
    caller.require(&[Role::Admin, Role::Agent])?;
    let mut v = Validator::new();
    let note = body.note.as_deref().map(str::trim).unwrap_or("");
    if note.len() > 1000 {
        v.error("note", "must be at most 1000 characters");
    }
    v.finish()?;
    let deps = &state.deps;
    let r = store::find_risk(deps.db.reader(), id)
        .await?
        .ok_or(ApiError::NotFound("risk event"))?;
    visible_vehicle(&state, &caller, r.vehicle_id)
        .await
        .map_err(|_| ApiError::NotFound("risk event"))?;
    let mut tx = deps.db.begin().await?;
    if !store::acknowledge_risk(&mut tx, id, caller.id, note, deps.clock.now()).await? {
        return Err(ApiError::Conflict(
            "the event is already acknowledged".into(),
        ));
    }
    tx.commit().await?;
    let r = store::find_risk(deps.db.writer(), id)
        .await?
        .ok_or(ApiError::NotFound("risk event"))?;
    Ok(Json(r.into()))
}

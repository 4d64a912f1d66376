//! `/api/v1/devices`: registering trackers, binding them to vehicles, and
//! taking them out of service.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use miliki_events::catalogue::telematics::DeviceDecommissioned;
use miliki_platform::auth::Role;
use miliki_platform::db::is_unique_violation;
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{id_param, scope, visible_vehicle};
use crate::domain::{DeviceStatus, Imei, Protocol};
use crate::ingest::Invalidate;
use crate::state::{AppState, Caller};
use crate::store::{self, DeviceFilter, DeviceRecord, NewDevice};
use crate::token;

/// A tracker as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: Uuid,
    pub imei: String,
    pub protocol: Protocol,
    pub vehicle_id: Uuid,
    /// Staff only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_phone: Option<String>,
    pub model: Option<String>,
    pub status: DeviceStatus,
    /// Connected to this replica now (TCP and WebSocket protocols).
    pub connected: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub decommissioned_at: Option<DateTime<Utc>>,
    pub decommission_reason: Option<String>,
}

impl DeviceView {
    fn new(state: &AppState, d: &DeviceRecord, caller: &Caller) -> Self {
        Self {
            id: d.id,
            imei: d.imei.clone(),
            protocol: d.protocol,
            vehicle_id: d.vehicle_id,
            sim_phone: if caller.role == Role::Customer {
                None
            } else {
                d.sim_phone.clone()
            },
            model: d.model.clone(),
            status: d.status,
            connected: state.sessions.is_connected(d.id),
            last_seen_at: d.last_seen_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
            decommissioned_at: d.decommissioned_at,
            decommission_reason: d.decommission_reason.clone(),
        }
    }
}

/// A registration's answer: the device, and its token once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredDevice {
    #[serde(flatten)]
    pub device: DeviceView,
    /// For the OsmAnd and WebSocket protocols: shown only now, stored only hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewDeviceBody {
    /// 15 digits whose last is the Luhn check digit.
    pub imei: Option<String>,
    /// `teltonika`, `gt06`, `osmand` or `websocket`.
    pub protocol: Option<String>,
    pub vehicle_id: Option<String>,
    pub sim_phone: Option<String>,
    pub model: Option<String>,
}

fn sim_phone(v: &mut Validator, raw: &Option<String>) -> Option<String> {
    let raw = raw.as_deref()?.trim();
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    if (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Some(raw.to_owned())
    } else {
        v.error(
            "sim_phone",
            "must be a phone number of 7 to 15 digits, optionally with +",
        );
        None
    }
}

fn model(v: &mut Validator, raw: &Option<String>) -> Option<String> {
    let raw = raw.as_deref()?.trim();
    if raw.is_empty() || raw.len() > 64 {
        v.error("model", "must be 1 to 64 characters");
        return None;
    }
    Some(raw.to_owned())
}

/// Register a tracker (admins). The WebSocket and OsmAnd protocols get a token.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    request_body = NewDeviceBody,
    responses(
        (status = 201, body = RegisteredDevice),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An active device has this IMEI", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewDeviceBody>,
) -> Result<(StatusCode, Json<RegisteredDevice>), ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let imei = v
        .required("imei", &body.imei)
        .and_then(|s| v.check("imei", Imei::parse(s)));
    let protocol = v
        .required("protocol", &body.protocol)
        .and_then(|s| v.check("protocol", s.parse::<Protocol>()));
    let vehicle = match &body.vehicle_id {
        None => {
            v.error("vehicle_id", "is required");
            None
        }
        some => id_param(&mut v, "vehicle_id", some),
    };
    let sim = sim_phone(&mut v, &body.sim_phone);
    let model = model(&mut v, &body.model);
    v.finish()?;
    let (Some(imei), Some(protocol), Some(vehicle)) = (imei, protocol, vehicle) else {
        return Err(ApiError::BadRequest("invalid device".into()));
    };
    let token = protocol.uses_token().then(token::generate);
    let id = miliki_platform::id::new_id();
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let inserted = store::insert_device(
        &mut tx,
        &NewDevice {
            id,
            imei: imei.as_str(),
            protocol,
            vehicle_id: vehicle,
            sim_phone: sim.as_deref(),
            model: model.as_deref(),
            token_hash: token.as_deref().map(token::hash),
            created_by: caller.id,
        },
        deps.clock.now(),
    )
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::Conflict(
                "an active device already has this IMEI".into(),
            ))
        }
        other => other?,
    }
    tx.commit().await?;
    let record = store::find_device(deps.db.writer(), id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    Ok((
        StatusCode::CREATED,
        Json(RegisteredDevice {
            device: DeviceView::new(&state, &record, &caller),
            token,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    pub vehicle_id: Option<String>,
    /// `active` or `decommissioned`.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Trackers the caller may see: admins all, agents their customers', customers their own.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = Page<DeviceView>),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<DeviceView>>, ApiError> {
    let mut v = Validator::new();
    let vehicle = id_param(&mut v, "vehicle_id", &q.vehicle_id);
    let status = q
        .status
        .as_deref()
        .and_then(|s| v.check("status", s.parse::<DeviceStatus>()));
    let (limit, after) =
        pagination::parse_page_params::<Uuid>(&mut v, q.limit, q.cursor.as_deref());
    v.finish()?;
    let rows = store::list_devices(
        &state.deps.db,
        scope(&caller),
        &DeviceFilter {
            vehicle_id: vehicle,
            status,
            after,
            limit,
        },
    )
    .await?;
    let page = pagination::page_from(rows, limit, |d| d.id);
    Ok(Json(Page {
        items: page
            .items
            .iter()
            .map(|d| DeviceView::new(&state, d, &caller))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> Result<DeviceRecord, ApiError> {
    let d = store::find_device(state.deps.db.reader(), id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    visible_vehicle(state, caller, d.vehicle_id)
        .await
        .map_err(|_| ApiError::NotFound("device"))?;
    Ok(d)
}

/// One tracker.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = DeviceView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceView>, ApiError> {
    let d = visible(&state, &caller, id).await?;
    Ok(Json(DeviceView::new(&state, &d, &caller)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateDeviceBody {
    /// Re-bind the tracker to another vehicle.
    pub vehicle_id: Option<String>,
    pub sim_phone: Option<String>,
    pub model: Option<String>,
}

/// Re-bind a tracker to another vehicle, or correct its SIM or model (admins).
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = UpdateDeviceBody,
    responses(
        (status = 200, body = DeviceView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Decommissioned", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateDeviceBody>,
) -> Result<Json<DeviceView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let vehicle = id_param(&mut v, "vehicle_id", &body.vehicle_id);
    let sim = sim_phone(&mut v, &body.sim_phone);
    let model = model(&mut v, &body.model);
    if body.vehicle_id.is_none() && body.sim_phone.is_none() && body.model.is_none() {
        v.error("body", "name at least one of vehicle_id, sim_phone, model");
    }
    v.finish()?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let current = store::find_device(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    if current.status != DeviceStatus::Active {
        return Err(ApiError::Conflict("the device is decommissioned".into()));
    }
    store::rebind_device(
        &mut tx,
        id,
        vehicle,
        sim.as_deref().map(Some),
        model.as_deref().map(Some),
        deps.clock.now(),
    )
    .await?;
    tx.commit().await?;
    state.invalidate(Invalidate::Device(id));
    let d = store::find_device(deps.db.writer(), id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    Ok(Json(DeviceView::new(&state, &d, &caller)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DecommissionBody {
    pub reason: Option<String>,
}

/// Take a tracker out of service (admins): its positions are refused from now on.
#[utoipa::path(post, path = "/api/v1/devices/{id}/decommission", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = DecommissionBody,
    responses(
        (status = 200, body = DeviceView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decommissioned", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decommission(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<DecommissionBody>,
) -> Result<Json<DeviceView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let reason = v.required("reason", &body.reason).map(str::to_owned);
    v.finish()?;
    let reason = reason.unwrap_or_default();
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let d = store::find_device(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    if !store::decommission(&mut tx, id, &reason, deps.clock.now()).await? {
        return Err(ApiError::Conflict(
            "the device is already decommissioned".into(),
        ));
    }
    deps.events
        .write(
            &mut tx,
            &DeviceDecommissioned {
                device_id: id,
                vehicle_id: d.vehicle_id,
                contract_id: None,
                reason,
            },
        )
        .await?;
    deps.events.commit(tx).await?;
    state.invalidate(Invalidate::Device(id));
    state.sessions.disconnect(id);
    let d = store::find_device(deps.db.writer(), id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    Ok(Json(DeviceView::new(&state, &d, &caller)))
}

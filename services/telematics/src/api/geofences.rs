//! `/api/v1/telematics/geofences`: circles and polygons (a permitted
//! operating area, a depot) whose entry and exit are risk events.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::id_param;
use crate::domain::geo::Shape;
use crate::ingest::Invalidate;
use crate::state::{AppState, Caller};
use crate::store::{self, GeofenceRecord};

#[derive(Debug, Serialize, ToSchema)]
pub struct GeofenceView {
    pub id: Uuid,
    pub name: String,
    pub shape: Shape,
    /// Absent: applies to every vehicle.
    pub vehicle_id: Option<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

impl From<GeofenceRecord> for GeofenceView {
    fn from(g: GeofenceRecord) -> Self {
        Self {
            id: g.id,
            name: g.name,
            shape: g.shape,
            vehicle_id: g.vehicle_id,
            created_by: g.created_by,
            created_at: g.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewGeofenceBody {
    pub name: Option<String>,
    /// `{"type": "circle", "lat", "lon", "radius_m"}` or `{"type": "polygon", "points": [[lat, lon], ...]}`.
    #[schema(value_type = Object)]
    pub shape: Option<serde_json::Value>,
    pub vehicle_id: Option<String>,
}

/// Define a geofence (admins).
#[utoipa::path(post, path = "/api/v1/telematics/geofences", tag = "telematics", security(("bearer" = [])),
    request_body = NewGeofenceBody,
    responses(
        (status = 201, body = GeofenceView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewGeofenceBody>,
) -> Result<(StatusCode, Json<GeofenceView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let name = v.required("name", &body.name).map(str::to_owned);
    if name.as_ref().is_some_and(|n| n.len() > 100) {
        v.error("name", "must be at most 100 characters");
    }
    let shape = match &body.shape {
        None => {
            v.error("shape", "is required");
            None
        }
        Some(raw) => match serde_json::from_value::<Shape>(raw.clone()) {
            Ok(s) => v.check("shape", s.validate().map(|_| s)),
            Err(e) => {
                v.error("shape", format!("must be a circle or a polygon: {e}"));
                None
            }
        },
    };
    let vehicle = id_param(&mut v, "vehicle_id", &body.vehicle_id);
    v.finish()?;
    let (Some(name), Some(shape)) = (name, shape) else {
        return Err(ApiError::BadRequest("invalid geofence".into()));
    };
    let g = GeofenceRecord {
        id: miliki_platform::id::new_id(),
        name,
        shape,
        vehicle_id: vehicle,
        created_by: caller.id,
        created_at: state.deps.clock.now(),
    };
    let mut tx = state.deps.db.begin().await?;
    store::insert_geofence(&mut tx, &g).await?;
    tx.commit().await?;
    state.invalidate(Invalidate::Geofences);
    Ok((StatusCode::CREATED, Json(g.into())))
}

/// Every geofence (staff).
#[utoipa::path(get, path = "/api/v1/telematics/geofences", tag = "telematics", security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<GeofenceView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<GeofenceView>>, ApiError> {
    caller.require(&[Role::Admin, Role::Agent])?;
    let all = store::geofences(&state.deps.db).await?;
    Ok(Json(all.into_iter().map(GeofenceView::from).collect()))
}

/// Remove a geofence (admins).
#[utoipa::path(delete, path = "/api/v1/telematics/geofences/{id}", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut tx = state.deps.db.begin().await?;
    if !store::delete_geofence(&mut tx, id, state.deps.clock.now()).await? {
        return Err(ApiError::NotFound("geofence"));
    }
    tx.commit().await?;
    state.invalidate(Invalidate::Geofences);
    Ok(StatusCode::NO_CONTENT)
}

//! `/api/v1/telematics/vehicles/{id}/...`: where a vehicle is, where it has
//! been (JSON or GeoJSON, optionally thinned), its trips and daily distance;
//! and where this replica's tracker listeners are.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{time_param, visible_vehicle};
use crate::domain::position::Position;
use crate::domain::trips::{self, DayDistance, Trip};
use crate::state::{AppState, Caller, ListenerInfo};
use crate::store;

/// A vehicle's newest position.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatestView {
    pub vehicle_id: Uuid,
    pub device_id: Uuid,
    pub position: Position,
    /// Since when it has stood still with the engine off, if it does.
    pub parked_since: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// Where the vehicle is now.
#[utoipa::path(get, path = "/api/v1/telematics/vehicles/{id}/position", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = LatestView),
        (status = 404, description = "Not visible, or no position yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<LatestView>, ApiError> {
    visible_vehicle(&state, &caller, id).await?;
    let l = store::latest(state.deps.db.reader(), id)
        .await?
        .ok_or(ApiError::NotFound("position"))?;
    Ok(Json(LatestView {
        vehicle_id: id,
        device_id: l.device_id,
        position: l.position,
        parked_since: l.parked_since,
        received_at: l.received_at,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RangeParams {
    /// RFC 3339; default 24 hours ago.
    pub from: Option<String>,
    /// RFC 3339, exclusive; default an hour from now (tracker clocks run ahead).
    pub to: Option<String>,
    /// `json` (default) or `geojson`.
    pub format: Option<String>,
    /// Keep at most one position per this many seconds.
    pub every_secs: Option<i64>,
    /// At most this many positions (default and maximum 10000).
    pub limit: Option<i64>,
}

const MAX_POSITIONS: i64 = 10_000;
/// The longest range one request may read.
const MAX_RANGE_DAYS: i64 = 31;

fn range(v: &mut Validator, q: &RangeParams, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let to = time_param(v, "to", &q.to).unwrap_or(now + Duration::hours(1));
    let from = time_param(v, "from", &q.from).unwrap_or(to.min(now) - Duration::hours(24));
    if from >= to {
        v.error("from", "must be before to");
    } else if to - from > Duration::days(MAX_RANGE_DAYS) {
        v.error(
            "to",
            format!("the range may span at most {MAX_RANGE_DAYS} days"),
        );
    }
    (from, to)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PositionItem {
    pub device_id: Uuid,
    #[serde(flatten)]
    pub position: Position,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PositionList {
    pub vehicle_id: Uuid,
    pub items: Vec<PositionItem>,
    /// True when `limit` cut the range short: ask again from the last item's time.
    pub truncated: bool,
}

/// Where the vehicle has been, oldest first.
#[utoipa::path(get, path = "/api/v1/telematics/vehicles/{id}/positions", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path), RangeParams),
    responses(
        (status = 200, description = "JSON, or a GeoJSON FeatureCollection with format=geojson", body = PositionList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn positions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<RangeParams>,
) -> Result<Response, ApiError> {
    let mut v = Validator::new();
    let (from, to) = range(&mut v, &q, state.deps.clock.now());
    let geojson = match q.format.as_deref() {
        None | Some("json") => false,
        Some("geojson") => true,
        Some(_) => {
            v.error("format", "must be json or geojson");
            false
        }
    };
    if q.every_secs.is_some_and(|s| !(1..=86_400).contains(&s)) {
        v.error("every_secs", "must be between 1 and 86400");
    }
    if q.limit.is_some_and(|l| !(1..=MAX_POSITIONS).contains(&l)) {
        v.error("limit", format!("must be between 1 and {MAX_POSITIONS}"));
    }
    v.finish()?;
    visible_vehicle(&state, &caller, id).await?;
    let limit = q.limit.unwrap_or(MAX_POSITIONS);
    let rows = store::positions(&state.deps.db, id, from, to, limit + 1).await?;
    let truncated = rows.len() as i64 > limit;
    let mut items: Vec<PositionItem> = rows
        .into_iter()
        .take(limit as usize)
        .map(|(device_id, position)| PositionItem {
            device_id,
            position,
        })
        .collect();
    if let Some(every) = q.every_secs {
        let mut last_bucket = None;
        items.retain(|i| {
            let bucket = i.position.at.timestamp().div_euclid(every);
            let keep = last_bucket != Some(bucket);
            last_bucket = Some(bucket);
            keep
        });
    }
    if geojson {
        let features: Vec<serde_json::Value> = items
            .iter()
            .map(|i| {
                let p = &i.position;
                serde_json::json!({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
                    "properties": {"time": p.at, "speed_kmh": p.speed_kmh, "heading": p.heading,
                        "ignition": p.ignition, "device_id": i.device_id},
                })
            })
            .collect();
        let line: Vec<[f64; 2]> = items
            .iter()
            .map(|i| [i.position.lon, i.position.lat])
            .collect();
        let mut all = features;
        if line.len() >= 2 {
            all.push(serde_json::json!({"type": "Feature", "geometry": {"type": "LineString", "coordinates": line}, "properties": {"vehicle_id": id}}));
        }
        let body = serde_json::json!({"type": "FeatureCollection", "features": all});
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "application/geo+json")],
            body.to_string(),
        )
            .into_response());
    }
    Ok(Json(PositionList {
        vehicle_id: id,
        items,
        truncated,
    })
    .into_response())
}

async fn range_positions(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    q: &RangeParams,
) -> Result<Vec<Position>, ApiError> {
    let mut v = Validator::new();
    let (from, to) = range(&mut v, q, state.deps.clock.now());
    v.finish()?;
    visible_vehicle(state, caller, id).await?;
    // Trips need every fix; the cap keeps one request's memory bounded.
    Ok(store::positions(&state.deps.db, id, from, to, 200_000)
        .await?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TripList {
    pub vehicle_id: Uuid,
    pub items: Vec<Trip>,
}

/// Trips in a range: ignition on to off (or moving to a five-minute stop).
#[utoipa::path(get, path = "/api/v1/telematics/vehicles/{id}/trips", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path), RangeParams),
    responses(
        (status = 200, body = TripList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn trips(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<RangeParams>,
) -> Result<Json<TripList>, ApiError> {
    let ps = range_positions(&state, &caller, id, &q).await?;
    Ok(Json(TripList {
        vehicle_id: id,
        items: trips::trips(&ps, Duration::minutes(5)),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailyDistance {
    pub vehicle_id: Uuid,
    /// Days in the operator's time zone.
    pub utc_offset_minutes: i32,
    pub items: Vec<DayDistance>,
}

/// Distance driven per day in a range.
#[utoipa::path(get, path = "/api/v1/telematics/vehicles/{id}/daily-distance", tag = "telematics", security(("bearer" = [])),
    params(("id" = Uuid, Path), RangeParams),
    responses(
        (status = 200, body = DailyDistance),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn daily_distance(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<RangeParams>,
) -> Result<Json<DailyDistance>, ApiError> {
    let ps = range_positions(&state, &caller, id, &q).await?;
    let minutes = state.config.thresholds.utc_offset_minutes;
    let offset = FixedOffset::east_opt(minutes * 60)
        .unwrap_or_else(|| FixedOffset::east_opt(0).unwrap_or(Utc.fix()));
    Ok(Json(DailyDistance {
        vehicle_id: id,
        utc_offset_minutes: minutes,
        items: trips::daily_distance(&ps, offset),
    }))
}

use chrono::Offset;

/// Where this replica listens for trackers, and what it has seen (admins).
#[utoipa::path(get, path = "/api/v1/telematics/listeners", tag = "telematics", security(("bearer" = [])),
    responses(
        (status = 200, body = ListenerInfo),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn listeners(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ListenerInfo>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(state.listener_info()))
}

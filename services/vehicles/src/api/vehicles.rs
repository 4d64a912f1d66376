//! `/api/v1/vehicles`: listing, reading, editing and searching the inventory,
//! and moving vehicles along their lifecycle by hand.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use miliki_events::catalogue::vehicles::{VehicleListed, VehicleStatusChanged, VehicleUpdated};
use miliki_platform::auth::Role;
use miliki_platform::etag::{etag, precondition_required, OptionalIfMatch};
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::pagination::{self, encode_cursor};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{PhotoView, VehicleView};
use crate::domain::{self, GeoPoint, Mover, NewVehicle, Status, VehicleFields, VehicleType};
use crate::search::{self, Facets, Filter, Position, Scope, Sort};
use crate::state::{AppState, Caller};
use crate::store::{self, VehicleRecord};

/// A vehicle the caller may read, or 404. Customers never see retired vehicles.
pub(crate) async fn visible(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<VehicleRecord, ApiError> {
    let record = store::find(state.deps.db.reader(), id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    if !caller.is_staff() && record.status == Status::Retired {
        return Err(ApiError::NotFound("vehicle"));
    }
    Ok(record)
}

fn with_etag(status: StatusCode, view: VehicleView) -> Response {
    let tag = etag(view.version);
    (status, [(header::ETAG, tag)], Json(view)).into_response()
}

async fn full_view(
    state: &AppState,
    caller: &Caller,
    record: &VehicleRecord,
) -> Result<VehicleView, ApiError> {
    let mut view = VehicleView::new(record, caller);
    view.photos = Some(
        store::photos(&state.deps.db, record.id)
            .await?
            .iter()
            .map(|p| PhotoView::new(record.id, p))
            .collect(),
    );
    Ok(view)
}

/// List a vehicle (admins). The body carries the common facts and those its type needs.
#[utoipa::path(post, path = "/api/v1/vehicles", tag = "vehicles", security(("bearer" = [])),
    request_body = VehicleFields,
    responses(
        (status = 201, body = VehicleView, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "VIN or registration already listed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<VehicleFields>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut v = Validator::new();
    let vehicle = body.parse(&mut v, now.date_naive());
    v.finish()?;
    let vehicle = vehicle.ok_or_else(|| ApiError::BadRequest("invalid vehicle".into()))?;
    let id = miliki_platform::id::new_id();
    let mut tx = deps.db.begin().await?;
    store::insert_vehicle(&mut tx, id, &vehicle, now).await?;
    deps.events.write(&mut tx, &listed(id, &vehicle)).await?;
    deps.events.commit(tx).await?;
    state.committed(&[id]).await;
    let record = store::find(deps.db.writer(), id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    let view = full_view(&state, &caller, &record).await?;
    let mut response = with_etag(StatusCode::CREATED, view);
    if let Ok(location) = format!("/api/v1/vehicles/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

pub(crate) fn listed(id: Uuid, v: &NewVehicle) -> VehicleListed {
    VehicleListed {
        vehicle_id: id,
        vehicle_type: v.vehicle_type.as_str().into(),
        make: v.make.clone(),
        model: v.model.clone(),
        year: v.year,
        branch: v.branch.clone(),
        price_minor: v.price_minor,
        currency: v.currency.code().into(),
        status: Status::Available.as_str().into(),
    }
}

/// One vehicle. Customers get its public facts; staff also its internal ones.
#[utoipa::path(get, path = "/api/v1/vehicles/{id}", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = VehicleView, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let record = visible(&state, &caller, id).await?;
    let view = full_view(&state, &caller, &record).await?;
    Ok(with_etag(StatusCode::OK, view))
}

/// Edit a vehicle (admins). Send only the fields that change, with
/// `If-Match` set to the `ETag` you read; a stale tag is refused with 412.
/// A field sent as `null` is cleared (only the optional ones: notes, cost
/// price, description and the type's specs); an absent field is kept.
/// Price, currency and VIN are frozen once the vehicle is under contract or owned.
#[utoipa::path(patch, path = "/api/v1/vehicles/{id}", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("If-Match" = String, Header, description = "The ETag you read")),
    request_body = VehiclePatch,
    responses(
        (status = 200, body = VehicleView, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A contract freezes these fields, or a VIN/plate clash", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale ETag", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    OptionalIfMatch(if_match): OptionalIfMatch,
    Json(body): Json<VehiclePatch>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let Some(if_match) = if_match else {
        return Ok(precondition_required());
    };
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let current = store::find_locked(&mut tx, &deps.db, id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    if_match.check(current.version)?;

    let mut v = Validator::new();
    match &body.vehicle_type {
        Some(Some(t)) if t.trim().to_ascii_lowercase() == current.vehicle_type.as_str() => {}
        None => {}
        Some(_) => v.error(
            "type",
            "cannot be changed; retire the vehicle and list it anew",
        ),
    }
    let merged = merge(&current, &body, &mut v);
    let next = merged.parse(&mut v, now.date_naive());
    if let Some(Some(m)) = body.mileage_km {
        if m < current.mileage_km {
            v.error(
                "mileage_km",
                format!("cannot go down (was {})", current.mileage_km),
            );
        }
    }
    v.finish()?;
    let next = next.ok_or_else(|| ApiError::BadRequest("invalid vehicle".into()))?;
    let before = current
        .facts()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored vehicle is invalid: {e}")))?;
    let changed = changed_fields(&before, &next);
    if current.status.is_contracted() {
        let frozen: Vec<&str> = changed
            .iter()
            .copied()
            .filter(|f| matches!(*f, "price_minor" | "currency" | "vin"))
            .collect();
        if !frozen.is_empty() {
            return Err(ApiError::Conflict(format!(
                "the vehicle is {}; its contract fixes {}",
                current.status,
                frozen.join(", ")
            )));
        }
    }
    if changed.is_empty() {
        drop(tx);
        let view = full_view(&state, &caller, &current).await?;
        return Ok(with_etag(StatusCode::OK, view));
    }
    if !store::update_vehicle(&mut tx, id, &next, current.version, now).await? {
        return Err(ApiError::PreconditionFailed(
            "the resource changed since you read it; fetch it again and retry".into(),
        ));
    }
    deps.events
        .write(
            &mut tx,
            &VehicleUpdated {
                vehicle_id: id,
                version: current.version + 1,
                fields: changed.iter().map(|s| (*s).to_owned()).collect(),
                updated_by: caller.id,
            },
        )
        .await?;
    deps.events.commit(tx).await?;
    state.committed(&[id]).await;
    let record = store::find(deps.db.writer(), id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    let view = full_view(&state, &caller, &record).await?;
    Ok(with_etag(StatusCode::OK, view))
}

/// `Some(value)` for a field the body names, `null` included: tells "clear
/// it" (`Some(None)`) from "leave it" (`None`, the field absent).
fn named<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The body of a PATCH: the fields of [`VehicleFields`], each absent (kept),
/// a value (changed) or `null` (cleared, where the field is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VehiclePatch {
    /// Cannot change; accepted when it names the vehicle's own type.
    #[serde(
        rename = "type",
        alias = "vehicle_type",
        default,
        deserialize_with = "named"
    )]
    #[schema(value_type = String)]
    pub vehicle_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub make: Option<Option<String>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub model: Option<Option<String>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = i64)]
    pub year: Option<Option<i64>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub colour: Option<Option<String>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub vin: Option<Option<String>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub registration: Option<Option<String>>,
    /// Can only go up.
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = i64)]
    pub mileage_km: Option<Option<i64>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub condition: Option<Option<String>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub fuel: Option<Option<String>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub branch: Option<Option<String>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = f64)]
    pub latitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = f64)]
    pub longitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = i64)]
    pub price_minor: Option<Option<i64>>,
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = String)]
    pub currency: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<i64>)]
    pub cost_price_minor: Option<Option<i64>>,
    /// `null` clears them.
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `null` clears it (where the type does not need it).
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<i64>)]
    pub engine_cc: Option<Option<i64>>,
    /// `null` clears it (where the type does not need it).
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<i64>)]
    pub seats: Option<Option<i64>>,
    /// `null` clears it (where the type does not need it).
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<String>)]
    pub transmission: Option<Option<String>>,
    /// `null` clears it (where the type does not need it).
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<i64>)]
    pub cargo_volume_litres: Option<Option<i64>>,
    /// `null` clears it (where the type does not need it).
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<i64>)]
    pub payload_kg: Option<Option<i64>>,
    /// `null` clears it (where the type does not need it).
    #[serde(default, deserialize_with = "named")]
    #[schema(value_type = Option<i64>)]
    pub axles: Option<Option<i64>>,
}

/// The stored vehicle's facts with the request's fields laid over them.
/// A `null` for a field every vehicle has is recorded in `v` and the stored
/// value kept, so the whole request fails with every such field named.
fn merge(current: &VehicleRecord, patch: &VehiclePatch, v: &mut Validator) -> VehicleFields {
    fn required<T: Clone>(
        v: &mut Validator,
        field: &str,
        new: &Option<Option<T>>,
        old: T,
    ) -> Option<T> {
        match new {
            None => Some(old),
            Some(Some(value)) => Some(value.clone()),
            Some(None) => {
                v.error(field, "cannot be cleared; every vehicle has one");
                Some(old)
            }
        }
    }
    fn optional<T: Clone>(new: &Option<Option<T>>, old: Option<T>) -> Option<T> {
        match new {
            None => old,
            Some(value) => value.clone(),
        }
    }
    let s = &current.specs;
    let c = current;
    VehicleFields {
        vehicle_type: Some(c.vehicle_type.as_str().into()),
        make: required(v, "make", &patch.make, c.make.clone()),
        model: required(v, "model", &patch.model, c.model.clone()),
        year: required(v, "year", &patch.year, i64::from(c.year)),
        colour: required(v, "colour", &patch.colour, c.colour.clone()),
        vin: required(v, "vin", &patch.vin, c.vin.clone()),
        registration: required(
            v,
            "registration",
            &patch.registration,
            c.registration.clone(),
        ),
        mileage_km: required(v, "mileage_km", &patch.mileage_km, c.mileage_km),
        condition: required(
            v,
            "condition",
            &patch.condition,
            c.condition.as_str().into(),
        ),
        fuel: required(v, "fuel", &patch.fuel, c.fuel.as_str().into()),
        branch: required(v, "branch", &patch.branch, c.branch.clone()),
        latitude: required(v, "latitude", &patch.latitude, c.location.latitude),
        longitude: required(v, "longitude", &patch.longitude, c.location.longitude),
        price_minor: required(v, "price_minor", &patch.price_minor, c.price_minor),
        currency: required(v, "currency", &patch.currency, c.currency.code().into()),
        cost_price_minor: optional(&patch.cost_price_minor, c.cost_price_minor),
        notes: optional(&patch.notes, c.notes.clone()),
        description: optional(&patch.description, Some(c.description.clone())),
        engine_cc: optional(&patch.engine_cc, s.engine_cc),
        seats: optional(&patch.seats, s.seats),
        transmission: optional(
            &patch.transmission,
            s.transmission.map(|t| t.as_str().to_owned()),
        ),
        cargo_volume_litres: optional(&patch.cargo_volume_litres, s.cargo_volume_litres),
        payload_kg: optional(&patch.payload_kg, s.payload_kg),
        axles: optional(&patch.axles, s.axles),
    }
}

fn changed_fields(a: &NewVehicle, b: &NewVehicle) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    check("make", a.make != b.make);
    check("model", a.model != b.model);
    check("year", a.year != b.year);
    check("colour", a.colour != b.colour);
    check("vin", a.vin != b.vin);
    check("registration", a.registration != b.registration);
    check("mileage_km", a.mileage_km != b.mileage_km);
    check("condition", a.condition != b.condition);
    check("fuel", a.fuel != b.fuel);
    check("branch", a.branch != b.branch);
    check("location", a.location != b.location);
    check("price_minor", a.price_minor != b.price_minor);
    check("currency", a.currency != b.currency);
    check("cost_price_minor", a.cost_price_minor != b.cost_price_minor);
    check("notes", a.notes != b.notes);
    check("description", a.description != b.description);
    check("specs", a.specs != b.specs);
    out
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchParams {
    /// `motorcycle`, `car`, `van` or `truck`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub vehicle_type: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub year_min: Option<String>,
    pub year_max: Option<String>,
    /// Minor units.
    pub price_min: Option<String>,
    /// Minor units.
    pub price_max: Option<String>,
    pub branch: Option<String>,
    /// Staff may filter on any status; customers see available vehicles and their own.
    pub status: Option<String>,
    /// `LAT,LON`: only vehicles within `radius_km` of this point.
    pub near: Option<String>,
    /// Default 25, at most 1000.
    pub radius_km: Option<String>,
    /// Words matched (by prefix) against make, model and description.
    pub q: Option<String>,
    /// `newest` (default), `price_asc`, `price_desc`, `year_desc`, `year_asc`, or `distance` (with `near`).
    pub sort: Option<String>,
    pub cursor: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<String>,
    /// `false` to skip facet counts (they come with the first page only).
    pub facets: Option<String>,
}

/// A page of search results.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchPage {
    pub items: Vec<serde_json::Value>,
    /// Pass as `cursor` (with the same filters) for the next page.
    pub next_cursor: Option<String>,
    /// Counts by type, make and branch for the current filters; first page only.
    pub facets: Option<Facets>,
}

fn number<T: std::str::FromStr>(v: &mut Validator, field: &str, raw: &Option<String>) -> Option<T> {
    let s = raw.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
    match s.parse::<T>() {
        Ok(n) => Some(n),
        Err(_) => {
            v.error(field, "must be a number");
            None
        }
    }
}

/// Parses `LAT,LON`.
fn parse_near(raw: &str) -> Result<GeoPoint, String> {
    let (lat, lon) = raw
        .split_once(',')
        .ok_or_else(|| "must be LAT,LON".to_owned())?;
    let lat: f64 = lat
        .trim()
        .parse()
        .map_err(|_| "latitude is not a number".to_owned())?;
    let lon: f64 = lon
        .trim()
        .parse()
        .map_err(|_| "longitude is not a number".to_owned())?;
    GeoPoint::parse(lat, lon).map_err(|(field, msg)| format!("{field} {msg}"))
}

/// Turns query parameters into a search, naming every invalid one.
pub(crate) fn parse_search(
    params: &SearchParams,
    scope: Scope,
    staff: bool,
) -> Result<Filter, ApiError> {
    let mut v = Validator::new();
    let vehicle_type = params
        .vehicle_type
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .and_then(|t| v.check("type", t.to_ascii_lowercase().parse::<VehicleType>()));
    let text = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let year_min: Option<i64> = number(&mut v, "year_min", &params.year_min);
    let year_max: Option<i64> = number(&mut v, "year_max", &params.year_max);
    let price_min: Option<i64> = number(&mut v, "price_min", &params.price_min);
    let price_max: Option<i64> = number(&mut v, "price_max", &params.price_max);
    if let (Some(a), Some(b)) = (year_min, year_max) {
        if a > b {
            v.error("year_max", "must not be below year_min");
        }
    }
    for (field, value) in [("price_min", price_min), ("price_max", price_max)] {
        if value.is_some_and(|p| p < 0) {
            v.error(field, "cannot be negative");
        }
    }
    if let (Some(a), Some(b)) = (price_min, price_max) {
        if a > b {
            v.error("price_max", "must not be below price_min");
        }
    }
    let status = text(&params.status).and_then(|s| v.check("status", s.parse::<Status>()));
    if !staff
        && status.is_some_and(|s| {
            !matches!(
                s,
                Status::Available | Status::Reserved | Status::UnderContract | Status::Owned
            )
        })
    {
        v.error(
            "status",
            "customers can search available vehicles and their own",
        );
    }
    let point = text(&params.near).and_then(|n| v.check("near", parse_near(&n)));
    let radius: Option<f64> = number(&mut v, "radius_km", &params.radius_km);
    if let Some(r) = radius {
        if !(r.is_finite() && r > 0.0 && r <= 1000.0) {
            v.error("radius_km", "must be more than 0 and at most 1000");
        }
        if params.near.is_none() {
            v.error("radius_km", "needs near=LAT,LON");
        }
    }
    let sort = match text(&params.sort) {
        Some(s) => v.check("sort", s.parse::<Sort>()),
        None if point.is_some() => Some(Sort::Distance),
        None => Some(Sort::Newest),
    };
    if sort == Some(Sort::Distance) && point.is_none() {
        v.error("sort", "distance needs near=LAT,LON");
    }
    let limit = number::<u32>(&mut v, "limit", &params.limit);
    let (limit, after) =
        pagination::parse_page_params::<Position>(&mut v, limit, text(&params.cursor).as_deref());
    if let (Some(pos), Some(s)) = (&after, sort) {
        if pos.s != s {
            v.error("cursor", "was issued for another sort order");
        }
    }
    let facets = match text(&params.facets).as_deref() {
        None | Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(_) => {
            v.error("facets", "must be true or false");
            true
        }
    };
    let terms = text(&params.q)
        .map(|q| domain::query_terms(&q))
        .unwrap_or_default();
    if params.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        v.error("q", "must be at most 200 characters");
    }
    v.finish()?;
    Ok(Filter {
        scope,
        vehicle_type,
        make: text(&params.make).map(|m| m.to_lowercase()),
        model: text(&params.model).map(|m| m.to_lowercase()),
        year_min,
        year_max,
        price_min,
        price_max,
        branch: text(&params.branch),
        status,
        near: point.map(|p| (p, radius.unwrap_or(25.0))),
        terms,
        sort: sort.unwrap_or(Sort::Newest),
        after,
        limit,
        facets,
    })
}

/// Search the inventory. Customers see available vehicles and those held for them.
#[utoipa::path(get, path = "/api/v1/vehicles", tag = "vehicles", security(("bearer" = [])),
    params(SearchParams),
    responses(
        (status = 200, body = SearchPage),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let db = &state.deps.db;
    let scope = if caller.is_staff() {
        Scope::All
    } else {
        Scope::Customer {
            id: caller.id,
            holds_any: state.index.holds_any(caller.id),
        }
    };
    let filter = parse_search(&params, scope, caller.is_staff())?;
    let results = search::search(db, &state.index, &filter).await?;
    let items = results
        .hits
        .iter()
        .map(|h| {
            let mut view = VehicleView::new(&h.record, &caller);
            view.distance_km = h.distance_km;
            serde_json::to_value(view)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    let page = SearchPage {
        items,
        next_cursor: results.next.as_ref().map(encode_cursor),
        facets: results.facets,
    };
    let body = serde_json::to_string(&page).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusRequest {
    /// `in_maintenance`, `available`, `repossessed` or `retired`.
    pub status: Option<String>,
    pub reason: Option<String>,
}

/// Move a vehicle along its lifecycle by hand: admins service, repossess and
/// retire; agents only take vehicles into and out of maintenance. Reserving,
/// contracting and ownership happen through reservations and contracts.
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/status", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = StatusRequest,
    responses(
        (status = 200, body = VehicleView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a legal move from the current status", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<StatusRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Agent])?;
    let mut v = Validator::new();
    let to = v
        .required("status", &body.status)
        .and_then(|s| v.check("status", s.parse::<Status>()));
    let reason = v.required("reason", &body.reason).map(str::to_owned);
    if reason.as_deref().is_some_and(|r| r.chars().count() > 500) {
        v.error("reason", "must be at most 500 characters");
    }
    v.finish()?;
    let (Some(to), Some(reason)) = (to, reason) else {
        return Err(ApiError::BadRequest(
            "status and reason are required".into(),
        ));
    };
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let current = store::find_locked(&mut tx, &deps.db, id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    current
        .status
        .transition(to, Mover::System)
        .map_err(ApiError::Conflict)?;
    let mover = if caller.role == Role::Admin {
        Mover::Admin
    } else {
        Mover::Agent
    };
    current
        .status
        .transition(to, mover)
        .map_err(ApiError::Forbidden)?;
    // A vehicle taken back, serviced or retired is no longer anyone's.
    let held_by = None;
    let moved = store::set_status(
        &mut tx,
        id,
        current.status,
        to,
        held_by,
        Some(caller.id),
        &reason,
        now,
    )
    .await?
    .ok_or_else(|| ApiError::Conflict("the vehicle's status changed meanwhile".into()))?;
    deps.events
        .write(
            &mut tx,
            &VehicleStatusChanged {
                vehicle_id: id,
                from: moved.from.as_str().into(),
                to: moved.to.as_str().into(),
                actor_id: Some(caller.id),
                reason,
                held_by,
            },
        )
        .await?;
    deps.events.commit(tx).await?;
    state.committed(&[id]).await;
    let record = store::find(deps.db.writer(), id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    let view = full_view(&state, &caller, &record).await?;
    Ok(with_etag(StatusCode::OK, view))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryView {
    pub from: Status,
    pub to: Status,
    pub actor_id: Option<Uuid>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Every status move of a vehicle, with who and why (staff).
#[utoipa::path(get, path = "/api/v1/vehicles/{id}/history", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Vec<HistoryView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<HistoryView>>, ApiError> {
    caller.require(&[Role::Admin, Role::Agent])?;
    visible(&state, &caller, id).await?;
    let rows = store::history(&state.deps.db, id).await?;
    Ok(Json(
        rows.iter()
            .map(|h| HistoryView {
                from: h.from,
                to: h.to,
                actor_id: h.actor_id,
                reason: h.reason.clone(),
                at: h.at,
            })
            .collect(),
    ))
}

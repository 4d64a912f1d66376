//! Reservations: a KYC-approved customer holds one available vehicle for a
//! while. The database's partial unique indexes, and the conditional status
//! update, decide races: of any number of simultaneous attempts on a vehicle
//! exactly one wins and the rest get 409.

use axum::extract::State;
use axum::response::Response;
use miliki_events::catalogue::vehicles::{
    ReservationCancelled, ReservationCreated, VehicleStatusChanged,
};
use miliki_events::standing;
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::ReservationView;
use crate::domain::Status;
use crate::state::{AppState, Caller};
use crate::store::{self, ReservationRecord, ReservationScope};

/// Reserve a vehicle for the calling customer, for the configured hold (48 h by default).
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/reservations", tag = "reservations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 201, body = ReservationView),
        (status = 403, description = "Not a customer, or KYC not approved", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The vehicle is not available, or you already hold a reservation", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(vehicle_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Customer])?;
    let deps = &state.deps;
    let standing = standing::standing(&deps.db, caller.id).await?;
    if !standing.kyc_approved {
        return Err(ApiError::Forbidden(
            "your identity (KYC) must be approved before you can reserve a vehicle".into(),
        ));
    }
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let vehicle = store::find_locked(&mut tx, &deps.db, vehicle_id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    if vehicle.status == Status::Retired {
        return Err(ApiError::NotFound("vehicle"));
    }
    if vehicle.status != Status::Available {
        return Err(ApiError::Conflict(format!(
            "the vehicle is {}, not available",
            vehicle.status
        )));
    }
    let moved = store::set_status(
        &mut tx,
        vehicle_id,
        Status::Available,
        Status::Reserved,
        Some(caller.id),
        Some(caller.id),
        "reserved by the customer",
        now,
    )
    .await?
    .ok_or_else(|| ApiError::Conflict("the vehicle was just reserved by someone else".into()))?;
    let reservation = ReservationRecord {
        id: miliki_platform::id::new_id(),
        vehicle_id,
        customer_id: caller.id,
        status: "active".into(),
        created_at: now,
        expires_at: now + state.config.reservation_hold,
        ended_at: None,
        ended_by: None,
        end_reason: None,
        contract_id: None,
    };
    if !store::insert_reservation(&mut tx, &reservation).await? {
        return Err(ApiError::Conflict(
            "you already have an active reservation; cancel it first".into(),
        ));
    }
    deps.events
        .write(
            &mut tx,
            &ReservationCreated {
                reservation_id: reservation.id,
                vehicle_id,
                customer_id: caller.id,
                expires_at: reservation.expires_at,
            },
        )
        .await?;
    deps.events
        .write(
            &mut tx,
            &VehicleStatusChanged {
                vehicle_id,
                from: moved.from.as_str().into(),
                to: moved.to.as_str().into(),
                actor_id: Some(caller.id),
                reason: moved.reason.clone(),
                held_by: Some(caller.id),
            },
        )
        .await?;
    deps.events.commit(tx).await?;
    state.committed(&[vehicle_id]).await;
    Ok(miliki_platform::http::created(
        &format!("/api/v1/reservations/{}", reservation.id),
        ReservationView::from(&reservation),
    ))
}

/// A reservation the caller may see: its customer's, or anyone's for staff. Others get 404.
async fn visible(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<ReservationRecord, ApiError> {
    let r = store::find_reservation(state.deps.db.reader(), id, "")
        .await?
        .ok_or(ApiError::NotFound("reservation"))?;
    let allowed = match caller.role {
        Role::Admin => true,
        Role::Customer => r.customer_id == caller.id,
        // Agents see their own book only.
        Role::Agent => {
            standing::onboarded_by(&state.deps.db, r.customer_id).await? == Some(caller.id)
        }
    };
    if allowed {
        Ok(r)
    } else {
        Err(ApiError::NotFound("reservation"))
    }
}

#[utoipa::path(get, path = "/api/v1/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = ReservationView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ReservationView>, ApiError> {
    Ok(Json(ReservationView::from(
        &visible(&state, &caller, id).await?,
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    pub cursor: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<u32>,
}

/// Reservations, newest first: a customer's own, an agent's customers', or everyone's for admins.
#[utoipa::path(get, path = "/api/v1/reservations", tag = "reservations", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = Page<ReservationView>),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<ReservationView>>, ApiError> {
    let mut v = Validator::new();
    let (limit, before) =
        pagination::parse_page_params::<Uuid>(&mut v, params.limit, params.cursor.as_deref());
    v.finish()?;
    let scope = match caller.role {
        Role::Admin => ReservationScope::All,
        Role::Agent => ReservationScope::AgentBook(caller.id),
        Role::Customer => ReservationScope::Customer(caller.id),
    };
    let rows = store::reservations_of(&state.deps.db, scope, before, limit).await?;
    let page = pagination::page_from(rows, limit, |r| r.id);
    Ok(Json(Page {
        items: page.items.iter().map(ReservationView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CancelParams {
    /// Why; recorded with the cancellation.
    pub reason: Option<String>,
}

/// Cancel a reservation: customers their own; admins release anyone's.
#[utoipa::path(delete, path = "/api/v1/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = Uuid, Path), CancelParams),
    responses(
        (status = 200, body = ReservationView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already ended", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(params): Query<CancelParams>,
) -> Result<Json<ReservationView>, ApiError> {
    caller.require(&[Role::Customer, Role::Admin])?;
    let reservation = visible(&state, &caller, id).await?;
    let reason = params
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(if caller.role == Role::Admin {
            "released by staff"
        } else {
            "cancelled by the customer"
        })
        .to_owned();
    if reason.chars().count() > 500 {
        return Err(ApiError::field("reason", "must be at most 500 characters"));
    }
    let status = if caller.role == Role::Admin && reservation.customer_id != caller.id {
        "released"
    } else {
        "cancelled"
    };
    end(&state, &reservation, status, Some(caller.id), &reason).await?;
    let updated = store::find_reservation(state.deps.db.writer(), id, "")
        .await?
        .ok_or(ApiError::NotFound("reservation"))?;
    Ok(Json(ReservationView::from(&updated)))
}

/// Ends an active reservation and frees its vehicle, with events, in one transaction.
pub(crate) async fn end(
    state: &AppState,
    reservation: &ReservationRecord,
    status: &str,
    by: Option<Uuid>,
    reason: &str,
) -> Result<(), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    // The conditional update locks the reservation row, then freeing the vehicle
    // locks its row: the same order as the expiry job, so the two cannot deadlock.
    if !store::end_reservation(&mut tx, reservation.id, status, by, reason, None, now).await? {
        return Err(ApiError::Conflict(
            "the reservation has already ended".into(),
        ));
    }
    write_end_events(state, &mut tx, reservation, status, by, reason, now).await?;
    deps.events.commit(tx).await?;
    state.committed(&[reservation.vehicle_id]).await;
    Ok(())
}

/// The vehicle goes back on sale, and the world hears why.
pub(crate) async fn write_end_events(
    state: &AppState,
    tx: &mut miliki_platform::db::Tx,
    r: &ReservationRecord,
    status: &str,
    by: Option<Uuid>,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let deps = &state.deps;
    let moved = store::set_status(
        tx,
        r.vehicle_id,
        Status::Reserved,
        Status::Available,
        None,
        by,
        reason,
        now,
    )
    .await?;
    match status {
        "expired" => {
            deps.events
                .write(
                    tx,
                    &miliki_events::catalogue::vehicles::ReservationExpired {
                        reservation_id: r.id,
                        vehicle_id: r.vehicle_id,
                        customer_id: r.customer_id,
                    },
                )
                .await?;
        }
        _ => {
            deps.events
                .write(
                    tx,
                    &ReservationCancelled {
                        reservation_id: r.id,
                        vehicle_id: r.vehicle_id,
                        customer_id: r.customer_id,
                        cancelled_by: by.unwrap_or(r.customer_id),
                        reason: reason.to_owned(),
                    },
                )
                .await?;
        }
    }
    if let Some(moved) = moved {
        deps.events
            .write(
                tx,
                &VehicleStatusChanged {
                    vehicle_id: r.vehicle_id,
                    from: moved.from.as_str().into(),
                    to: moved.to.as_str().into(),
                    actor_id: by,
                    reason: reason.to_owned(),
                    held_by: None,
                },
            )
            .await?;
    }
    Ok(())
}

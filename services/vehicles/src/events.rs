//! What the vehicles service does when something happens elsewhere, and the
//! work it does on its own schedule.
//!
//! - `users.kyc.approved.v1`, `users.user.suspended.v1`,
//!   `users.user.reinstated.v1` keep the local [`standing`] projection that
//!   reservations and authentication consult.
//! - Its own `vehicles.*` events are not needed (each replica's search index
//!   follows the change log in the database); any still routed here are acknowledged.
//! - `payments.contract.activated.v1` (the payments service's, once it
//!   exists) converts the customer's reservation into a contract and assigns
//!   the vehicle: see [`convert_reservation`] and [`ContractActivated`].
//! - `payments.contract.paid_off.v1` makes the vehicle `owned` by the
//!   customer: see [`mark_owned`].
//! - `payments.contract.upgraded.v1` takes the traded-in vehicle back to
//!   `in_maintenance`: see [`take_back`].
//! - The expiry job releases reservations whose hold has run out.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use miliki_events::catalogue::payments::ContractUpgraded;
use miliki_events::catalogue::vehicles::{ReservationConverted, VehicleStatusChanged};
use miliki_events::{inbox, standing, Event, EventHandler};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::Status;
use crate::state::AppState;
use crate::store;

/// The consumer name: one queue, one inbox namespace.
pub const CONSUMER: &str = "vehicles";

/// The payments service's event this service will react to. Payments does
/// not exist yet; when it does, it publishes this type with (at least) these
/// fields and the hook below needs no change.
pub const CONTRACT_ACTIVATED: &str = "payments.contract.activated.v1";

/// The payments service's event for a contract paid in full.
pub const CONTRACT_PAID_OFF: &str = "payments.contract.paid_off.v1";

/// The payments service's event for a contract traded in for an upgrade.
pub const CONTRACT_UPGRADED: &str = "payments.contract.upgraded.v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContractActivated {
    pub contract_id: Uuid,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
}

/// Topic patterns this service consumes (kept equal to `miliki_events::service::topology`).
pub fn patterns() -> Vec<String> {
    let mut p: Vec<String> = standing::PATTERNS.iter().map(|s| (*s).to_owned()).collect();
    p.push(CONTRACT_ACTIVATED.to_owned());
    p.push(CONTRACT_PAID_OFF.to_owned());
    p.push(CONTRACT_UPGRADED.to_owned());
    p
}

pub struct Consumer {
    pub state: AppState,
}

#[async_trait]
impl EventHandler for Consumer {
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        if event.event_type.starts_with("vehicles.") {
            // Bound by an older topology (the search cache it fed is gone).
            return Ok(());
        }
        if event.event_type == CONTRACT_ACTIVATED {
            let payload: ContractActivated = serde_json::from_value(event.data.clone())?;
            return convert_reservation(&self.state, Some(event), &payload)
                .await
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("converting a reservation: {e}"));
        }
        if event.event_type == CONTRACT_PAID_OFF {
            // Same payload fields as the activation.
            let payload: ContractActivated = serde_json::from_value(event.data.clone())?;
            return mark_owned(&self.state, event, &payload)
                .await
                .map_err(|e| anyhow::anyhow!("marking a vehicle owned: {e}"));
        }
        if let Some(up) = event.payload::<ContractUpgraded>() {
            return take_back(&self.state, event, &up?)
                .await
                .map_err(|e| anyhow::anyhow!("taking a traded-in vehicle back: {e}"));
        }
        let deps = &self.state.deps;
        let mut tx = deps.db.begin().await?;
        if !inbox::claim(&mut tx, CONSUMER, event, deps.clock.now()).await? {
            return Ok(());
        }
        standing::apply(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What converting a reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    Converted,
    /// Handled before (a redelivery).
    AlreadyHandled,
}

/// The hook for a contract's activation: the customer's active reservation of
/// the vehicle becomes `converted`, and the vehicle goes to `under_contract`,
/// held by the customer, from which its price and VIN can no longer change.
/// With `event`, the effect is claimed in the inbox in the same transaction.
pub async fn convert_reservation(
    state: &AppState,
    event: Option<&Event>,
    c: &ContractActivated,
) -> Result<Conversion, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    if let Some(event) = event {
        if !inbox::claim(&mut tx, CONSUMER, event, now).await? {
            return Ok(Conversion::AlreadyHandled);
        }
    }
    // Reservation first, then vehicle: the lock order of cancellation and expiry.
    let reservation = store::active_reservation_for_vehicle(&mut *tx, c.vehicle_id)
        .await?
        .filter(|r| r.customer_id == c.customer_id)
        .ok_or_else(|| {
            ApiError::Conflict("the customer holds no active reservation of this vehicle".into())
        })?;
    let reason = format!("contract {} activated", c.contract_id);
    if !store::end_reservation(
        &mut tx,
        reservation.id,
        "converted",
        None,
        &reason,
        Some(c.contract_id),
        now,
    )
    .await?
    {
        return Err(ApiError::Conflict("the reservation ended meanwhile".into()));
    }
    let moved = store::set_status(
        &mut tx,
        c.vehicle_id,
        Status::Reserved,
        Status::UnderContract,
        Some(c.customer_id),
        None,
        &reason,
        now,
    )
    .await?
    .ok_or_else(|| ApiError::Conflict("the vehicle is not reserved".into()))?;
    deps.events
        .write(
            &mut tx,
            &ReservationConverted {
                reservation_id: reservation.id,
                vehicle_id: c.vehicle_id,
                customer_id: c.customer_id,
                contract_id: c.contract_id,
            },
        )
        .await?;
    deps.events
        .write(
            &mut tx,
            &VehicleStatusChanged {
                vehicle_id: c.vehicle_id,
                from: moved.from.as_str().into(),
                to: moved.to.as_str().into(),
                actor_id: None,
                reason,
                held_by: Some(c.customer_id),
            },
        )
        .await?;
    deps.events.commit(tx).await?;
    state.committed(&[c.vehicle_id]).await;
    Ok(Conversion::Converted)
}

/// The hook for a contract paid off: the vehicle under contract becomes the
/// customer's (`owned`), claimed in the inbox in the same transaction.
pub async fn mark_owned(
    state: &AppState,
    event: &Event,
    c: &ContractActivated,
) -> Result<(), ApiError> {
    let reason = format!("contract {} paid off", c.contract_id);
    leave_contract(state, event, c, Status::Owned, Some(c.customer_id), reason).await
}

/// The hook for an upgrade: the vehicle traded in comes back from the
/// customer to be serviced (`in_maintenance`) before it is listed again.
pub async fn take_back(
    state: &AppState,
    event: &Event,
    up: &ContractUpgraded,
) -> Result<(), ApiError> {
    let reason = format!(
        "traded in: contract {} upgraded to contract {}",
        up.contract_id, up.new_contract_id
    );
    let c = ContractActivated {
        contract_id: up.contract_id,
        customer_id: up.customer_id,
        vehicle_id: up.vehicle_id,
    };
    leave_contract(state, event, &c, Status::InMaintenance, None, reason).await
}

/// Moves the vehicle of an ended contract from `under_contract` to `to`,
/// claimed in the inbox in the same transaction.
async fn leave_contract(
    state: &AppState,
    event: &Event,
    c: &ContractActivated,
    to: Status,
    held_by: Option<Uuid>,
    reason: String,
) -> Result<(), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    if !inbox::claim(&mut tx, CONSUMER, event, now).await? {
        return Ok(());
    }
    let moved = store::set_status(
        &mut tx,
        c.vehicle_id,
        Status::UnderContract,
        to,
        held_by,
        None,
        &reason,
        now,
    )
    .await?
    .ok_or_else(|| ApiError::Conflict("the vehicle is not under contract".into()))?;
    deps.events
        .write(
            &mut tx,
            &VehicleStatusChanged {
                vehicle_id: c.vehicle_id,
                from: moved.from.as_str().into(),
                to: moved.to.as_str().into(),
                actor_id: None,
                reason,
                held_by,
            },
        )
        .await?;
    deps.events.commit(tx).await?;
    state.committed(&[c.vehicle_id]).await;
    Ok(())
}

/// Expires every reservation whose hold ended by the injected clock's now.
/// Safe with several replicas: each batch is claimed with row locks that
/// other replicas skip. Returns how many expired.
pub async fn expire_due(state: &AppState) -> Result<usize, ApiError> {
    let mut total = 0;
    loop {
        let n = expire_batch(state, state.deps.clock.now()).await?;
        total += n;
        if n < 100 {
            return Ok(total);
        }
    }
}

async fn expire_batch(state: &AppState, now: DateTime<Utc>) -> Result<usize, ApiError> {
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let due = store::claim_expired(&mut tx, &deps.db, now, 100).await?;
    for r in &due {
        if store::end_reservation(
            &mut tx,
            r.id,
            "expired",
            None,
            "the hold ran out",
            None,
            now,
        )
        .await?
        {
            crate::api::reservations::write_end_events(
                state,
                &mut tx,
                r,
                "expired",
                None,
                "the reservation expired",
                now,
            )
            .await?;
        }
    }
    deps.events.commit(tx).await?;
    if !due.is_empty() {
        let vehicles: Vec<_> = due.iter().map(|r| r.vehicle_id).collect();
        state.committed(&vehicles).await;
    }
    Ok(due.len())
}

/// The expiry job: polls on a real-time interval, decides by the injected clock.
pub async fn run_expiry(state: AppState, shutdown: CancellationToken) {
    let poll = state.config.expiry_poll;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        match expire_due(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "reservations expired"),
            Err(e) => tracing::warn!(error = %e, "reservation expiry failed; will retry"),
        }
    }
}

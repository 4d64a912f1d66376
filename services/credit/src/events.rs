//! What the credit service does when something happens elsewhere.
//!
//! - `users.*` keep the [`standing`] projection (KYC approved, suspended, who
//!   onboarded whom) that eligibility and access read.
//! - `vehicles.vehicle.listed.v1` records prices; `vehicles.reservation.*`
//!   who holds which vehicle, and an expired or cancelled reservation lapses
//!   the offer made on it.
//! - `payments.*` and `telematics.risk.detected.v1` keep the customer's
//!   history and recompute their living score.
//! - `support.upgrade.decided.v1` (approved) lets an application carry the
//!   upgrade's equity as its deposit: see [`crate::upgrades`].
//!
//! Every effect is claimed in the inbox in the same transaction, so a
//! redelivered event changes nothing twice.

use async_trait::async_trait;
use miliki_events::catalogue::payments::{
    ArrearsChanged, ContractActivated, ContractCreated, ContractDefaulted,
    ContractOwnershipTransferred, ContractPaidOff, ContractPaused, ContractResumed,
    ContractUpgraded, ContractWrittenOff, PaymentReceived, PaymentReversed,
};
use miliki_events::catalogue::support::UpgradeDecided;
use miliki_events::catalogue::telematics::RiskDetected;
use miliki_events::catalogue::vehicles::{
    ReservationCancelled, ReservationConverted, ReservationCreated, ReservationExpired,
    VehicleListed,
};
use miliki_events::{inbox, standing, Event, EventHandler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::living;
use crate::ops;
use crate::state::AppState;
use crate::store;

/// The consumer name: one queue, one inbox namespace.
pub const CONSUMER: &str = "credit";

/// The other services' events this service follows (kept equal to
/// `miliki_events::service::topology`).
pub const FOLLOWS: &[&str] = &[
    "vehicles.vehicle.listed.v1",
    "vehicles.reservation.created.v1",
    "vehicles.reservation.expired.v1",
    "vehicles.reservation.cancelled.v1",
    "vehicles.reservation.converted.v1",
    "payments.contract.created.v1",
    "payments.contract.activated.v1",
    "payments.contract.paused.v1",
    "payments.contract.resumed.v1",
    "payments.contract.arrears_changed.v1",
    "payments.contract.paid_off.v1",
    "payments.contract.ownership_transferred.v1",
    "payments.contract.defaulted.v1",
    "payments.contract.written_off.v1",
    "payments.payment.received.v1",
    "payments.payment.reversed.v1",
    "telematics.risk.detected.v1",
    "payments.contract.upgraded.v1",
    "support.upgrade.decided.v1",
];

pub fn patterns() -> Vec<String> {
    standing::PATTERNS
        .iter()
        .chain(FOLLOWS)
        .map(|s| (*s).to_owned())
        .collect()
}

pub struct Consumer {
    pub state: AppState,
}

#[async_trait]
impl EventHandler for Consumer {
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let state = &self.state;
        let deps = &state.deps;
        let mut tx = deps.db.begin().await?;
        if !inbox::claim(&mut tx, CONSUMER, event, deps.clock.now()).await? {
            return Ok(());
        }
        let at = event.time;
        // The customer whose score this event may move, and why.
        let mut rescore: Option<(Uuid, &str)> = None;
        if let Some(p) = event.payload::<VehicleListed>() {
            let p = p?;
            store::upsert_vehicle(
                &mut tx,
                p.vehicle_id,
                &p.vehicle_type,
                p.price_minor,
                &p.currency,
                at,
            )
            .await?;
        } else if let Some(p) = event.payload::<ReservationCreated>() {
            let p = p?;
            store::upsert_reservation(
                &mut tx,
                p.reservation_id,
                p.vehicle_id,
                p.customer_id,
                Some(p.expires_at),
                "active",
                at,
            )
            .await?;
        } else if let Some(p) = event.payload::<ReservationExpired>() {
            let p = p?;
            store::upsert_reservation(
                &mut tx,
                p.reservation_id,
                p.vehicle_id,
                p.customer_id,
                None,
                "expired",
                at,
            )
            .await?;
            ops::lapse(state, &mut tx, p.reservation_id, "the reservation expired").await?;
        } else if let Some(p) = event.payload::<ReservationCancelled>() {
            let p = p?;
            store::upsert_reservation(
                &mut tx,
                p.reservation_id,
                p.vehicle_id,
                p.customer_id,
                None,
                "cancelled",
                at,
            )
            .await?;
            ops::lapse(
                state,
                &mut tx,
                p.reservation_id,
                &format!("the reservation was cancelled: {}", p.reason),
            )
            .await?;
        } else if let Some(p) = event.payload::<ReservationConverted>() {
            let p = p?;
            store::upsert_reservation(
                &mut tx,
                p.reservation_id,
                p.vehicle_id,
                p.customer_id,
                None,
                "converted",
                at,
            )
            .await?;
        } else if let Some(p) = event.payload::<ContractCreated>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "pending_deposit",
                None,
                at,
            )
            .await?;
        } else if let Some(p) = event.payload::<ContractActivated>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "active",
                Some(at),
                at,
            )
            .await?;
            rescore = Some((p.customer_id, "contract_activated"));
        } else if let Some(p) = event.payload::<ContractPaused>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "paused",
                None,
                at,
            )
            .await?;
        } else if let Some(p) = event.payload::<ContractResumed>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "active",
                None,
                at,
            )
            .await?;
        } else if let Some(p) = event.payload::<ArrearsChanged>() {
            let p = p?;
            store::upsert_arrears(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                p.days_past_due,
                &p.bucket,
                at,
            )
            .await?;
            rescore = Some((p.customer_id, "arrears_changed"));
        } else if let Some(p) = event.payload::<ContractPaidOff>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "paid_off",
                None,
                at,
            )
            .await?;
            store::upsert_arrears(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                0,
                "current",
                at,
            )
            .await?;
            rescore = Some((p.customer_id, "contract_completed"));
        } else if let Some(p) = event.payload::<ContractUpgraded>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "upgraded",
                None,
                at,
            )
            .await?;
        } else if let Some(p) = event.payload::<UpgradeDecided>() {
            crate::upgrades::apply_decision(&mut tx, &p?, at).await?;
        } else if let Some(p) = event.payload::<ContractOwnershipTransferred>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "ownership_transferred",
                None,
                at,
            )
            .await?;
        } else if let Some(p) = event.payload::<ContractDefaulted>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "defaulted",
                None,
                at,
            )
            .await?;
            rescore = Some((p.customer_id, "contract_defaulted"));
        } else if let Some(p) = event.payload::<ContractWrittenOff>() {
            let p = p?;
            store::upsert_contract_status(
                &mut tx,
                p.contract_id,
                p.customer_id,
                p.vehicle_id,
                "written_off",
                None,
                at,
            )
            .await?;
            rescore = Some((p.customer_id, "contract_written_off"));
        } else if let Some(p) = event.payload::<PaymentReceived>() {
            let p = p?;
            store::record_payment(
                &mut tx,
                p.payment_id,
                p.contract_id,
                p.customer_id,
                p.days_late,
                at,
            )
            .await?;
            let cause = if p.days_late > 0 {
                "late_payment"
            } else {
                "on_time_payment"
            };
            rescore = Some((p.customer_id, cause));
        } else if let Some(p) = event.payload::<PaymentReversed>() {
            let p = p?;
            store::reverse_payment(
                &mut tx,
                p.payment_id,
                p.contract_id,
                p.customer_id,
                p.days_late,
                at,
            )
            .await?;
            rescore = Some((p.customer_id, "payment_reversed"));
        } else if let Some(p) = event.payload::<RiskDetected>() {
            let p = p?;
            // Only risk on a vehicle someone holds under contract is theirs.
            if let Some(customer) = store::holder_of(&mut tx, p.vehicle_id).await? {
                store::record_risk(
                    &mut tx,
                    p.event_id,
                    p.vehicle_id,
                    customer,
                    &p.kind,
                    &p.severity,
                    p.at,
                )
                .await?;
                rescore = Some((customer, "risk_event"));
            }
        } else {
            standing::apply(&mut tx, event).await?;
        }
        if let Some((customer, cause)) = rescore {
            living::recompute(state, &mut tx, customer, cause, Some(event.id)).await?;
        }
        deps.events.commit(tx).await?;
        Ok(())
    }
}

/// Lapses offers whose reservation hold has run out even before the
/// vehicles service's expiry event arrives (replicas may run it together:
/// each lapse rechecks the application under its row lock).
pub async fn run_lapse_job(state: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(1000)) => {}
        }
        if let Err(e) = lapse_expired(&state).await {
            tracing::warn!(error = %e, "lapsing expired offers");
        }
    }
}

pub async fn lapse_expired(state: &AppState) -> anyhow::Result<usize> {
    let deps = &state.deps;
    let due = store::lapsed_reservations(&deps.db, deps.clock.now(), 100).await?;
    let mut n = 0;
    for reservation in due {
        let mut tx = deps.db.begin().await?;
        n += ops::lapse(
            state,
            &mut tx,
            reservation,
            "the reservation's hold ran out",
        )
        .await?;
        deps.events.commit(tx).await?;
    }
    Ok(n)
}

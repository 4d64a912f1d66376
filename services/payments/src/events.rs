//! What the payments service does when something happens elsewhere.
//!
//! - `users.user.registered.v1` records who onboarded each customer (an
//!   agent's book); `users.kyc.approved.v1`, `users.user.suspended.v1` and
//!   `users.user.reinstated.v1` keep the [`standing`] projection.
//! - `users.phone.code_issued.v1` and `users.phone.verified.v1` record whose
//!   phone is unverified: no money prompt goes to a customer until it is.
//! - `vehicles.vehicle.listed.v1` records a vehicle's type and price, for quotes.
//! - `credit.application.accepted.v1` (the credit service's) writes the
//!   contract; one carrying an upgrade trades the old contract in (see
//!   [`crate::upgrade`]).

use async_trait::async_trait;
use miliki_events::catalogue::credit::ApplicationAccepted;
use miliki_events::catalogue::users::{PhoneCodeIssued, PhoneVerified, UserRegistered};
use miliki_events::catalogue::vehicles::VehicleListed;
use miliki_events::{inbox, standing, Event, EventHandler};
use miliki_platform::money::Currency;

use crate::ops::{self, NewContract};
use crate::state::AppState;
use crate::store;

/// The consumer name: one queue, one inbox namespace.
pub const CONSUMER: &str = "payments";

/// The credit service's event this service reacts to.
pub const APPLICATION_ACCEPTED: &str = "credit.application.accepted.v1";

/// Topic patterns this service consumes (kept equal to `miliki_events::service::topology`).
pub fn patterns() -> Vec<String> {
    standing::PATTERNS
        .iter()
        .copied()
        .chain([
            "users.user.registered.v1",
            "users.phone.code_issued.v1",
            "users.phone.verified.v1",
            "vehicles.vehicle.listed.v1",
            APPLICATION_ACCEPTED,
        ])
        .map(str::to_owned)
        .collect()
}

pub struct Consumer {
    pub state: AppState,
}

#[async_trait]
impl EventHandler for Consumer {
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let deps = &self.state.deps;
        let mut tx = deps.db.begin().await?;
        if !inbox::claim(&mut tx, CONSUMER, event, deps.clock.now()).await? {
            return Ok(());
        }
        if let Some(p) = event.payload::<UserRegistered>() {
            let p = p?;
            if p.role == "customer" {
                store::upsert_customer(&mut tx, p.user_id, p.onboarded_by, event.time).await?;
            }
        } else if let Some(p) = event.payload::<PhoneCodeIssued>() {
            store::set_phone_verified(&mut tx, p?.user_id, false, event.time).await?;
        } else if let Some(p) = event.payload::<PhoneVerified>() {
            store::set_phone_verified(&mut tx, p?.user_id, true, event.time).await?;
        } else if let Some(p) = event.payload::<VehicleListed>() {
            let p = p?;
            store::upsert_vehicle(
                &mut tx,
                p.vehicle_id,
                &p.vehicle_type,
                p.price_minor,
                &p.currency,
                event.time,
            )
            .await?;
        } else if event.event_type == APPLICATION_ACCEPTED {
            let a: ApplicationAccepted = serde_json::from_value(event.data.clone())?;
            // An upgrade's deposit is the trade-in of the old contract's vehicle.
            let currency: Currency = a.currency.parse()?;
            let input = NewContract {
                application_id: Some(a.application_id),
                customer_id: a.customer_id,
                vehicle_id: a.vehicle_id,
                reservation_id: a.reservation_id,
                product_id: a.product_id,
                price_minor: a.price_minor,
                currency,
                deposit_minor: a.deposit_minor,
                term_periods: a.term_periods,
                upgrade: a.upgrade.clone(),
            };
            ops::create_contract(&self.state, &mut tx, &input, None)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "writing the contract of application {}: {e}",
                        a.application_id
                    )
                })?;
        } else {
            standing::apply(&mut tx, event).await?;
        }
        deps.events.commit(tx).await?;
        Ok(())
    }
}

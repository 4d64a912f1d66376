//! What the telematics service does when something happens elsewhere, and
//! the work it does on its own schedule.
//!
//! - `users.*`: the [`standing`] projection (suspended callers) and which
//!   agent onboarded which customer (agents see their customers' vehicles).
//! - `vehicles.vehicle.listed.v1` (its type sets the speed limit) and
//!   `vehicles.vehicle.status_changed.v1`, `payments.contract.activated.v1`
//!   (who holds the vehicle).
//! - `payments.contract.arrears_changed.v1`, `.paused.v1`, `.resumed.v1`:
//!   the immobilization policy ([`on_arrears`]).
//! - `payments.contract.paid_off.v1`, `.ownership_transferred.v1`: the
//!   tracker is decommissioned and `telematics.device.decommissioned.v1` says so.
//! - Jobs: commands ([`crate::commands::run`]), offline detection, retention.

use async_trait::async_trait;
use miliki_events::catalogue::payments::{
    ArrearsChanged, ContractActivated, ContractOwnershipTransferred, ContractPaidOff,
    ContractPaused, ContractResumed,
};
use miliki_events::catalogue::telematics::{
    DeviceDecommissioned, ImmobilizationScheduled, RiskDetected,
};
use miliki_events::catalogue::users::UserRegistered;
use miliki_events::catalogue::vehicles::{VehicleListed, VehicleStatusChanged};
use miliki_events::{inbox, standing, Event, EventHandler};
use miliki_platform::clock::to_micros;
use miliki_platform::db::Tx;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::commands::{self, Request};
use crate::domain::{CommandAction, CommandSource};
use crate::ingest::Invalidate;
use crate::state::AppState;
use crate::store::{self, PolicyRecord};

pub const CONSUMER: &str = "telematics";

/// Topic patterns this service consumes (kept equal to `miliki_events::service::topology`).
pub fn patterns() -> Vec<String> {
    standing::PATTERNS
        .iter()
        .copied()
        .chain([
            "users.user.registered.v1",
            "vehicles.vehicle.listed.v1",
            "vehicles.vehicle.status_changed.v1",
            "payments.contract.activated.v1",
            "payments.contract.arrears_changed.v1",
            "payments.contract.paused.v1",
            "payments.contract.resumed.v1",
            "payments.contract.paid_off.v1",
            "payments.contract.ownership_transferred.v1",
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
        let state = &self.state;
        let deps = &state.deps;
        let mut tx = deps.db.begin().await?;
        if !inbox::claim(&mut tx, CONSUMER, event, deps.clock.now()).await? {
            return Ok(());
        }
        let mut after = Vec::new();
        if let Some(p) = event.payload::<UserRegistered>() {
            standing::apply(&mut tx, event).await?;
            let p = p?;
            if p.role == "customer" {
                store::set_agent(&mut tx, p.user_id, p.onboarded_by).await?;
            }
        } else if standing::apply(&mut tx, event).await? {
            // Nothing else to do.
        } else if let Some(p) = event.payload::<VehicleListed>() {
            let p = p?;
            store::set_vehicle_type(&mut tx, p.vehicle_id, &p.vehicle_type).await?;
            after.push(Invalidate::Vehicle(p.vehicle_id));
        } else if let Some(p) = event.payload::<VehicleStatusChanged>() {
            let p = p?;
            store::set_holder(&mut tx, p.vehicle_id, p.held_by, None, event.time).await?;
        } else if let Some(p) = event.payload::<ContractActivated>() {
            let p = p?;
            store::set_holder(
                &mut tx,
                p.vehicle_id,
                Some(p.customer_id),
                Some(p.contract_id),
                event.time,
            )
            .await?;
        } else if let Some(p) = event.payload::<ArrearsChanged>() {
            on_arrears(state, &mut tx, &p?, event).await?;
        } else if let Some(p) = event.payload::<ContractPaused>() {
            let p = p?;
            on_pause(
                state,
                &mut tx,
                p.contract_id,
                p.vehicle_id,
                p.customer_id,
                true,
                event,
            )
            .await?;
        } else if let Some(p) = event.payload::<ContractResumed>() {
            let p = p?;
            on_pause(
                state,
                &mut tx,
                p.contract_id,
                p.vehicle_id,
                p.customer_id,
                false,
                event,
            )
            .await?;
        } else if let Some(p) = event.payload::<ContractPaidOff>() {
            let p = p?;
            after.extend(
                contract_ended(
                    state,
                    &mut tx,
                    p.contract_id,
                    p.vehicle_id,
                    "contract paid off",
                )
                .await?,
            );
        } else if let Some(p) = event.payload::<ContractOwnershipTransferred>() {
            let p = p?;
            after.extend(
                contract_ended(
                    state,
                    &mut tx,
                    p.contract_id,
                    p.vehicle_id,
                    "ownership transferred",
                )
                .await?,
            );
        }
        deps.events.commit(tx).await?;
        for what in after {
            state.invalidate(what);
            if let Invalidate::Device(d) = what {
                state.sessions.disconnect(d);
            }
        }
        Ok(())
    }
}

fn fresh_policy(contract: Uuid, vehicle: Uuid, customer: Uuid) -> PolicyRecord {
    PolicyRecord {
        contract_id: contract,
        vehicle_id: vehicle,
        customer_id: customer,
        days_past_due: 0,
        paused: false,
        override_by: None,
        override_reason: None,
        as_of: 0,
    }
}

async fn immobilized_now(tx: &mut Tx, vehicle: Uuid) -> Result<bool, sqlx::Error> {
    Ok(store::last_acknowledged(tx, vehicle)
        .await?
        .is_some_and(|c| c.action == CommandAction::Immobilize))
}

/// Cancels the policy's pending immobilizations of a vehicle.
async fn cancel_policy_immobilizations(
    state: &AppState,
    tx: &mut Tx,
    vehicle: Uuid,
    why: &str,
) -> Result<(), sqlx::Error> {
    for c in store::open_commands(tx, vehicle).await? {
        if c.action == CommandAction::Immobilize && c.source == CommandSource::Policy {
            commands::cancel_in(state, tx, &c, None, why).await?;
        }
    }
    Ok(())
}

async fn restore_if_immobilized(
    state: &AppState,
    tx: &mut Tx,
    p: &PolicyRecord,
    why: &str,
) -> anyhow::Result<()> {
    let restoring = store::open_commands(tx, p.vehicle_id)
        .await?
        .iter()
        .any(|c| c.action == CommandAction::Restore);
    if immobilized_now(tx, p.vehicle_id).await? && !restoring {
        commands::request(
            state,
            tx,
            &Request {
                vehicle_id: p.vehicle_id,
                action: CommandAction::Restore,
                reason: why,
                source: CommandSource::Policy,
                requested_by: None,
                contract_id: Some(p.contract_id),
                not_before: state.deps.clock.now(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// The arrears policy. At the configured days past due it schedules an
/// immobilization after a warning (published for notifications); below it,
/// a pending one is cancelled; back at zero, an immobilized vehicle is
/// restored and any admin override ends. Paused contracts are exempt, and an
/// admin's restore holds the policy off until the contract is current.
pub async fn on_arrears(
    state: &AppState,
    tx: &mut Tx,
    a: &ArrearsChanged,
    event: &Event,
) -> anyhow::Result<()> {
    let at = to_micros(event.time);
    let mut p = store::policy(tx, a.contract_id)
        .await?
        .unwrap_or_else(|| fresh_policy(a.contract_id, a.vehicle_id, a.customer_id));
    if at < p.as_of {
        // An older state arriving late changes nothing.
        return Ok(());
    }
    p.days_past_due = a.days_past_due;
    p.as_of = at;
    p.vehicle_id = a.vehicle_id;
    let config = &state.config;
    if p.paused {
        store::save_policy(tx, &p).await?;
        return Ok(());
    }
    if a.days_past_due >= config.policy_days_past_due {
        let pending = store::open_commands(tx, a.vehicle_id)
            .await?
            .iter()
            .any(|c| c.action == CommandAction::Immobilize);
        if p.override_by.is_none() && !pending && !immobilized_now(tx, a.vehicle_id).await? {
            let not_before = state.deps.clock.now() + config.policy_warning;
            let reason = format!(
                "{} days past due (policy: {})",
                a.days_past_due, config.policy_days_past_due
            );
            match commands::request(
                state,
                tx,
                &Request {
                    vehicle_id: a.vehicle_id,
                    action: CommandAction::Immobilize,
                    reason: &reason,
                    source: CommandSource::Policy,
                    requested_by: None,
                    contract_id: Some(a.contract_id),
                    not_before,
                },
            )
            .await
            {
                Ok(c) => {
                    state
                        .deps
                        .events
                        .write(
                            tx,
                            &ImmobilizationScheduled {
                                command_id: c.id,
                                vehicle_id: a.vehicle_id,
                                contract_id: a.contract_id,
                                customer_id: a.customer_id,
                                days_past_due: a.days_past_due,
                                not_before,
                            },
                        )
                        .await?;
                }
                // No tracker to command: nothing to enforce, and nothing to retry.
                Err(miliki_platform::ApiError::Conflict(why)) => {
                    tracing::warn!(vehicle = %a.vehicle_id, why, "arrears policy cannot immobilize");
                }
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
        }
    } else {
        cancel_policy_immobilizations(
            state,
            tx,
            a.vehicle_id,
            &format!("paid: {} days past due now", a.days_past_due),
        )
        .await?;
        if a.days_past_due == 0 {
            p.override_by = None;
            p.override_reason = None;
            restore_if_immobilized(state, tx, &p, "contract back to current").await?;
        }
    }
    store::save_policy(tx, &p).await?;
    Ok(())
}

async fn on_pause(
    state: &AppState,
    tx: &mut Tx,
    contract: Uuid,
    vehicle: Uuid,
    customer: Uuid,
    paused: bool,
    event: &Event,
) -> anyhow::Result<()> {
    let mut p = store::policy(tx, contract)
        .await?
        .unwrap_or_else(|| fresh_policy(contract, vehicle, customer));
    p.paused = paused;
    p.as_of = p.as_of.max(to_micros(event.time));
    if paused {
        cancel_policy_immobilizations(state, tx, vehicle, "contract paused (hardship)").await?;
        restore_if_immobilized(state, tx, &p, "contract paused (hardship)").await?;
    }
    store::save_policy(tx, &p).await.map_err(Into::into)
}

/// Decommissions a finished contract's trackers, saying so for each.
async fn contract_ended(
    state: &AppState,
    tx: &mut Tx,
    contract: Uuid,
    vehicle: Uuid,
    reason: &str,
) -> anyhow::Result<Vec<Invalidate>> {
    let now = state.deps.clock.now();
    for c in store::open_commands(tx, vehicle).await? {
        commands::cancel_in(state, tx, &c, None, reason).await?;
    }
    let mut gone = Vec::new();
    for d in store::active_devices_of_vehicle(tx, vehicle).await? {
        if store::decommission(tx, d.id, reason, now).await? {
            state
                .deps
                .events
                .write(
                    tx,
                    &DeviceDecommissioned {
                        device_id: d.id,
                        vehicle_id: vehicle,
                        contract_id: Some(contract),
                        reason: reason.to_owned(),
                    },
                )
                .await?;
            gone.push(Invalidate::Device(d.id));
        }
    }
    Ok(gone)
}

/// Raises `device_offline` for trackers silent past the configured time.
pub async fn detect_offline(state: &AppState) -> anyhow::Result<usize> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let silent = store::silent_devices(&deps.db, now - state.config.offline_after).await?;
    if silent.is_empty() {
        return Ok(0);
    }
    let mut tx = deps.db.begin().await?;
    let mut live = Vec::new();
    for (device, vehicle, last_seen) in &silent {
        let latest = store::latest(deps.db.reader(), *vehicle).await?;
        let (lat, lon) = latest
            .map(|l| (l.position.lat, l.position.lon))
            .unwrap_or((0.0, 0.0));
        let finding = crate::domain::risk::Finding {
            kind: crate::domain::risk::RiskKind::DeviceOffline,
            severity: crate::domain::risk::Severity::Warning,
            at: now,
            lat,
            lon,
            details: serde_json::json!({ "last_seen_at": last_seen, "silent_secs": (now - *last_seen).num_seconds() }),
        };
        let id = miliki_platform::id::new_id();
        store::insert_risk(&mut tx, id, *vehicle, *device, &finding, now).await?;
        let event = RiskDetected {
            event_id: id,
            vehicle_id: *vehicle,
            device_id: *device,
            kind: finding.kind.as_str().into(),
            severity: finding.severity.as_str().into(),
            at: now,
            lat,
            lon,
            details: finding.details.clone(),
        };
        deps.events.write(&mut tx, &event).await?;
        let mut json = serde_json::to_value(&event).unwrap_or_default();
        json["type"] = "risk".into();
        live.push((*vehicle, json));
    }
    deps.events.commit(tx).await?;
    for (v, json) in live {
        state.hub.publish(v, &json);
    }
    Ok(silent.len())
}

/// Offline detection and retention, on a real-time poll; decisions by the injected clock.
pub async fn run_housekeeping(state: AppState, shutdown: CancellationToken) {
    let mut last_prune: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(state.config.job_poll) => {}
        }
        if let Err(e) = detect_offline(&state).await {
            tracing::warn!(error = %e, "offline detection failed; will retry");
        }
        let prune_due =
            last_prune.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3600));
        if prune_due {
            last_prune = Some(std::time::Instant::now());
            let now = state.deps.clock.now();
            let db = &state.deps.db;
            let postgres = db.backend() == miliki_platform::db::Backend::Postgres;
            if postgres {
                crate::partitions::ensure_days(db, now).await;
            }
            if state.config.retention_days == 0 {
                continue;
            }
            let before = now - chrono::Duration::days(state.config.retention_days);
            let pruned = if postgres {
                crate::partitions::drop_before(db, before).await
            } else {
                store::prune_positions(db, before).await
            };
            match pruned {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    n,
                    "old positions deleted (rows, or day partitions on PostgreSQL)"
                ),
                Err(e) => tracing::warn!(error = %e, "position retention failed"),
            }
        }
    }
}

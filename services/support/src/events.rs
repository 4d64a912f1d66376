//! What the support service does when something happens elsewhere: keeps the
//! users' standing and who holds which vehicle, opens an urgent accident
//! ticket on a crash, and turns the catalogue's events into notifications.
//! Every effect is claimed in the inbox in the transaction that applies it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use miliki_events::catalogue::{credit, payments, support, telematics, users, vehicles};
use miliki_events::{inbox, standing, Event, EventHandler};
use miliki_platform::db::Tx;
use serde::Deserialize;
use uuid::Uuid;

use crate::notify::{self, Message};
use crate::state::AppState;
use crate::templates;
use crate::tickets::{self, Category, Priority};

/// The consumer name: one queue, one inbox namespace.
pub const CONSUMER: &str = "support";

/// The credit service's decision event, matched by name: its payload here
/// names only the fields this service reads.
pub const APPLICATION_DECIDED: &str = "credit.application.decided.v1";

#[derive(Debug, Deserialize)]
pub struct ApplicationDecided {
    pub application_id: Uuid,
    pub customer_id: Uuid,
    pub status: String,
}

/// How long before a reservation ends its reminder goes out.
const RESERVATION_REMINDER_HOURS: i64 = 6;

/// Topic patterns this service consumes (kept equal to `miliki_events::service::topology`).
pub fn patterns() -> Vec<String> {
    standing::PATTERNS
        .iter()
        .copied()
        .chain(NOTIFIED)
        .map(str::to_owned)
        .collect()
}

/// The events beyond standing (which brings KYC approval) this service reacts
/// to; credit scores and upgrades also feed upgrade requests.
pub const NOTIFIED: [&str; 22] = [
    "users.kyc.rejected.v1",
    "users.kyc.resubmission_requested.v1",
    "users.phone.code_issued.v1",
    "users.phone.verified.v1",
    "vehicles.reservation.created.v1",
    "vehicles.reservation.expired.v1",
    "vehicles.reservation.cancelled.v1",
    "vehicles.reservation.converted.v1",
    "credit.application.decided.v1",
    "payments.contract.activated.v1",
    "payments.contract.paid_off.v1",
    "payments.contract.ownership_transferred.v1",
    "payments.contract.arrears_changed.v1",
    "payments.payment.received.v1",
    "payments.collection.failed.v1",
    "payments.installment.due.v1",
    "telematics.risk.detected.v1",
    "telematics.immobilization.scheduled.v1",
    "support.ticket.replied.v1",
    "credit.score.changed.v1",
    "payments.contract.upgraded.v1",
    "support.upgrade.decided.v1",
];

pub struct Consumer {
    pub state: AppState,
}

#[async_trait]
impl EventHandler for Consumer {
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let deps = &self.state.deps;
        let now = deps.clock.now();
        let mut tx = deps.db.begin().await?;
        if !inbox::claim(&mut tx, CONSUMER, event, now).await? {
            return Ok(());
        }
        if standing::PATTERNS.contains(&event.event_type.as_str()) {
            standing::apply(&mut tx, event).await?;
        }
        let woke = apply(&self.state, &mut tx, event, now).await?;
        deps.events.commit(tx).await?;
        if let Some(customer) = woke {
            self.state.hub.nudge(customer);
        }
        Ok(())
    }
}

fn message<'a>(
    event: &Event,
    customer: Uuid,
    template: &'a templates::Template,
    vars: serde_json::Value,
) -> Message<'a> {
    Message {
        event_id: event.id,
        customer,
        template,
        vars,
        at: None,
        cancel_key: None,
    }
}

fn template(name: &str) -> anyhow::Result<&'static templates::Template> {
    templates::find(name).ok_or_else(|| anyhow::anyhow!("no template {name}"))
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// Applies `event`; returns the customer whose in-app list changed.
async fn apply(
    state: &AppState,
    tx: &mut Tx,
    event: &Event,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Uuid>> {
    use serde_json::json;
    let ty = event.event_type.as_str();
    let msg: Option<Message<'_>> = match ty {
        "users.kyc.approved.v1" => {
            let p: users::KycApproved = serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.user_id,
                template("kyc_approved")?,
                json!({}),
            ))
        }
        "users.kyc.rejected.v1" => {
            let p: users::KycRejected = serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.user_id,
                template("kyc_rejected")?,
                json!({"reason": p.reason}),
            ))
        }
        "users.kyc.resubmission_requested.v1" => {
            let p: users::KycResubmissionRequested = serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.user_id,
                template("kyc_resubmission")?,
                json!({"reason": p.reason}),
            ))
        }
        "users.phone.code_issued.v1" => {
            crate::phone_codes::send_code(tx, &state.deps.keyring, event, now).await?;
            None
        }
        "users.phone.verified.v1" => {
            crate::phone_codes::adopt_verified(tx, &state.deps.keyring, event, now).await?;
            None
        }
        "vehicles.reservation.created.v1" => {
            let p: vehicles::ReservationCreated = serde_json::from_value(event.data.clone())?;
            let vars = json!({"expires_at": when(p.expires_at)});
            let key = format!("reservation:{}", p.reservation_id);
            let reminder_at = p.expires_at - chrono::Duration::hours(RESERVATION_REMINDER_HOURS);
            if reminder_at > now {
                notify::enqueue(
                    tx,
                    &Message {
                        event_id: event.id,
                        customer: p.customer_id,
                        template: template("reservation_expiring")?,
                        vars: vars.clone(),
                        at: Some(reminder_at),
                        cancel_key: Some(key),
                    },
                    now,
                    crate::digest::at(&state.deps.settings),
                )
                .await?;
            }
            Some(message(
                event,
                p.customer_id,
                template("reservation_made")?,
                vars,
            ))
        }
        "vehicles.reservation.expired.v1"
        | "vehicles.reservation.cancelled.v1"
        | "vehicles.reservation.converted.v1" => {
            #[derive(Deserialize)]
            struct Ended {
                reservation_id: Uuid,
            }
            let p: Ended = serde_json::from_value(event.data.clone())?;
            notify::cancel(tx, &format!("reservation:{}", p.reservation_id), now).await?;
            None
        }
        APPLICATION_DECIDED => {
            let p: ApplicationDecided = serde_json::from_value(event.data.clone())?;
            tracing::debug!(application = %p.application_id, "application decided");
            Some(message(
                event,
                p.customer_id,
                template("application_decided")?,
                json!({"status": p.status}),
            ))
        }
        "payments.contract.activated.v1" => {
            let p: payments::ContractActivated = serde_json::from_value(event.data.clone())?;
            sqlx::query(
                "INSERT INTO vehicle_holders (vehicle_id, customer_id, contract_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (vehicle_id) DO UPDATE SET customer_id = $2, contract_id = $3",
            )
            .bind(p.vehicle_id.to_string())
            .bind(p.customer_id.to_string())
            .bind(p.contract_id.to_string())
            .execute(&mut **tx)
            .await?;
            Some(message(
                event,
                p.customer_id,
                template("contract_active")?,
                json!({"contract_id": p.contract_id.to_string()}),
            ))
        }
        "payments.contract.paid_off.v1" => {
            let p: payments::ContractPaidOff = serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.customer_id,
                template("paid_off")?,
                json!({}),
            ))
        }
        "payments.contract.ownership_transferred.v1" => {
            let p: payments::ContractOwnershipTransferred =
                serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.customer_id,
                template("ownership_transferred")?,
                json!({}),
            ))
        }
        "payments.contract.arrears_changed.v1" => {
            let p: payments::ArrearsChanged = serde_json::from_value(event.data.clone())?;
            // Only a contract falling behind is news; catching up is told by the receipt.
            if p.days_past_due > 0 && p.overdue_minor > 0 {
                Some(message(
                    event,
                    p.customer_id,
                    template("arrears")?,
                    json!({
                        "days_past_due": p.days_past_due,
                        // Payments events name no currency here; contracts are in shillings.
                        "overdue": notify::format_money(p.overdue_minor, "KES"),
                    }),
                ))
            } else {
                None
            }
        }
        "payments.payment.received.v1" => {
            let p: payments::PaymentReceived = serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.customer_id,
                template("payment_received")?,
                json!({
                    "amount": notify::format_money(p.amount_minor, &p.currency),
                    "method": p.method,
                    "payment_id": p.payment_id.to_string(),
                }),
            ))
        }
        "payments.collection.failed.v1" => {
            let p: payments::CollectionFailed = serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.customer_id,
                template("collection_failed")?,
                json!({
                    "amount": notify::format_money(p.amount_minor, &p.currency),
                    "day": p.day,
                    "rail": if p.rail == "mtn_momo" { "MTN MoMo" } else { "M-Pesa" },
                }),
            ))
        }
        "payments.installment.due.v1" => {
            let p: payments::InstallmentDue = serde_json::from_value(event.data.clone())?;
            let name = if p.days_before == 0 {
                "installment_due_today"
            } else {
                "installment_due_soon"
            };
            Some(message(
                event,
                p.customer_id,
                template(name)?,
                json!({
                    "amount": notify::format_money(p.amount_due_minor, &p.currency),
                    "due_date": p.due_date,
                    "installment": p.installment,
                }),
            ))
        }
        "telematics.immobilization.scheduled.v1" => {
            let p: telematics::ImmobilizationScheduled =
                serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.customer_id,
                template("immobilization_warning")?,
                json!({"days_past_due": p.days_past_due, "not_before": when(p.not_before)}),
            ))
        }
        "telematics.risk.detected.v1" => {
            let p: telematics::RiskDetected = serde_json::from_value(event.data.clone())?;
            if p.kind == "crash" {
                open_crash_ticket(state, tx, event, &p).await?;
            }
            None
        }
        "support.ticket.replied.v1" => {
            let p: support::TicketReplied = serde_json::from_value(event.data.clone())?;
            Some(message(
                event,
                p.customer_id,
                template("ticket_reply")?,
                json!({"subject": p.subject}),
            ))
        }
        "credit.score.changed.v1" => {
            let p: credit::ScoreChanged = serde_json::from_value(event.data.clone())?;
            crate::upgrades::record_band(tx, p.customer_id, &p.band, p.score, event.time).await?;
            None
        }
        "support.upgrade.decided.v1" => {
            let p: support::UpgradeDecided = serde_json::from_value(event.data.clone())?;
            let (name, vars) = if p.decision == "approved" {
                (
                    "upgrade_approved",
                    json!({"equity": notify::format_money(p.equity_minor, &p.currency)}),
                )
            } else {
                ("upgrade_declined", json!({"reason": p.reason}))
            };
            Some(message(event, p.customer_id, template(name)?, vars))
        }
        "payments.contract.upgraded.v1" => {
            let p: payments::ContractUpgraded = serde_json::from_value(event.data.clone())?;
            crate::upgrades::complete(tx, p.upgrade_request_id, p.new_contract_id, now).await?;
            // The vehicle handed back is no longer the customer's to crash.
            sqlx::query("DELETE FROM vehicle_holders WHERE vehicle_id = $1 AND contract_id = $2")
                .bind(p.vehicle_id.to_string())
                .bind(p.contract_id.to_string())
                .execute(&mut **tx)
                .await?;
            Some(message(
                event,
                p.customer_id,
                template("upgrade_completed")?,
                json!({"equity": notify::format_money(p.equity_minor, &p.currency)}),
            ))
        }
        _ => None,
    };
    match msg {
        Some(m) => {
            let customer = m.customer;
            let ids = notify::enqueue(tx, &m, now, crate::digest::at(&state.deps.settings)).await?;
            Ok((!ids.is_empty()).then_some(customer))
        }
        None => Ok(None),
    }
}

/// A crash opens an urgent accident ticket for the vehicle's holder, once per event.
async fn open_crash_ticket(
    state: &AppState,
    tx: &mut Tx,
    event: &Event,
    p: &telematics::RiskDetected,
) -> anyhow::Result<()> {
    let holder: Option<(String, String)> = sqlx::query_as(
        "SELECT customer_id, contract_id FROM vehicle_holders WHERE vehicle_id = $1",
    )
    .bind(p.vehicle_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    let (customer, contract) = match holder {
        Some((c, k)) => (Uuid::parse_str(&c).ok(), Uuid::parse_str(&k).ok()),
        None => (None, None),
    };
    let t = tickets::new_record(
        state,
        tickets::NewTicket {
            customer,
            created_by: None,
            subject: format!("Crash detected on vehicle {}", p.vehicle_id),
            body: format!(
                "The tracker reported a crash at {} (UTC), at {:.5}, {:.5} (severity {}). \
                 Call the customer and dispatch help if needed.",
                p.at.format("%Y-%m-%d %H:%M:%S"),
                p.lat,
                p.lon,
                p.severity
            ),
            category: Category::Accident,
            priority: Priority::Urgent,
            contract,
            vehicle: Some(p.vehicle_id),
        },
    );
    tickets::open(state, tx, &t, Some(event.id))
        .await
        .map_err(|e| anyhow::anyhow!("opening a crash ticket: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn patterns_match_the_declared_topology() {
        let declared = miliki_events::service::topology()
            .into_iter()
            .find(|(name, _)| name == super::CONSUMER)
            .map(|(_, p)| p)
            .expect("support in the topology");
        assert_eq!(declared, super::patterns());
    }
}

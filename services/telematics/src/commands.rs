//! Immobilize and restore commands: created by staff or the arrears policy,
//! sent only when it is safe, retried until the tracker acknowledges, every
//! step recorded. Safe means: for an immobilization, the vehicle's latest
//! position shows it stopped with the engine off, and it has been so for
//! the configured time by the injected clock; a restore is always safe.

use chrono::{DateTime, Utc};
use miliki_events::catalogue::telematics::CommandStatusChanged;
use miliki_platform::db::Tx;
use miliki_platform::ApiError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{CommandAction, CommandSource, CommandStatus, DeviceStatus, Protocol};
use crate::sessions::Outgoing;
use crate::state::AppState;
use crate::store::{self, CommandRecord};

/// What is asked for.
pub struct Request<'a> {
    pub vehicle_id: Uuid,
    pub action: CommandAction,
    pub reason: &'a str,
    pub source: CommandSource,
    pub requested_by: Option<Uuid>,
    pub contract_id: Option<Uuid>,
    pub not_before: DateTime<Utc>,
}

async fn changed(
    state: &AppState,
    tx: &mut Tx,
    c: &CommandRecord,
    status: CommandStatus,
) -> Result<(), sqlx::Error> {
    state
        .deps
        .events
        .write(
            tx,
            &CommandStatusChanged {
                command_id: c.id,
                vehicle_id: c.vehicle_id,
                device_id: c.device_id,
                action: c.action.as_str().into(),
                status: status.as_str().into(),
                contract_id: c.contract_id,
            },
        )
        .await
        .map(|_| ())
}

/// Queues a command within `tx`; open commands of the vehicle are cancelled
/// (the newest wish wins).
pub async fn request(
    state: &AppState,
    tx: &mut Tx,
    r: &Request<'_>,
) -> Result<CommandRecord, ApiError> {
    let now = state.deps.clock.now();
    let device = store::active_devices_of_vehicle(tx, r.vehicle_id)
        .await?
        .into_iter()
        .find(|d| d.protocol != Protocol::Osmand)
        .ok_or_else(|| {
            ApiError::Conflict("the vehicle has no active tracker that takes commands".into())
        })?;
    let id = miliki_platform::id::new_id();
    for open in store::open_commands(tx, r.vehicle_id).await? {
        cancel_in(
            state,
            tx,
            &open,
            r.requested_by,
            &format!("superseded by command {id}"),
        )
        .await?;
    }
    let c = CommandRecord {
        id,
        vehicle_id: r.vehicle_id,
        device_id: device.id,
        action: r.action,
        reason: r.reason.to_owned(),
        source: r.source,
        status: CommandStatus::Queued,
        contract_id: r.contract_id,
        requested_by: r.requested_by,
        requested_at: now,
        not_before: r.not_before.max(now),
        attempts: 0,
        last_sent_at: None,
        acknowledged_at: None,
        response: None,
        wait_note: None,
        updated_at: now,
    };
    store::insert_command(tx, &c).await?;
    changed(state, tx, &c, CommandStatus::Queued).await?;
    Ok(c)
}

pub async fn cancel_in(
    state: &AppState,
    tx: &mut Tx,
    c: &CommandRecord,
    actor: Option<Uuid>,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let now = state.deps.clock.now();
    let moved = store::move_command(
        tx,
        c.id,
        c.status,
        CommandStatus::Cancelled,
        now,
        actor,
        reason,
        None,
    )
    .await?;
    if moved {
        changed(state, tx, c, CommandStatus::Cancelled).await?;
    }
    Ok(moved)
}

/// Whether the vehicle may be immobilized now.
async fn parked_long_enough(
    state: &AppState,
    vehicle: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let latest = store::latest(state.deps.db.reader(), vehicle).await?;
    Ok(latest.is_some_and(|l| {
        l.position.is_parked(state.config.stationary_max_kmh)
            && l.parked_since
                .is_some_and(|since| now - since >= state.config.stationary_for)
    }))
}

/// Sends what is due and safe, resends what went unacknowledged, fails what
/// ran out of attempts. Returns how many commands were sent.
pub async fn dispatch_due(state: &AppState) -> Result<usize, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let due = store::due_commands(&mut tx, &deps.db, now, 100).await?;
    let mut sends = Vec::new();
    for c in due {
        let Some(device) = store::find_device(&mut *tx, c.device_id).await? else {
            continue;
        };
        if device.status != DeviceStatus::Active {
            if store::move_command(
                &mut tx,
                c.id,
                c.status,
                CommandStatus::Failed,
                now,
                None,
                "the tracker was decommissioned",
                None,
            )
            .await?
            {
                changed(state, &mut tx, &c, CommandStatus::Failed).await?;
            }
            continue;
        }
        let safe = c.action == CommandAction::Restore
            || parked_long_enough(state, c.vehicle_id, now).await?;
        let connected = state.sessions.is_connected(c.device_id);
        match c.status {
            CommandStatus::Queued => {
                if !safe {
                    store::set_wait_note(
                        &mut tx,
                        c.id,
                        "waiting until the vehicle has been parked with its engine off",
                    )
                    .await?;
                    continue;
                }
                if !connected {
                    store::set_wait_note(&mut tx, c.id, "waiting for the tracker to connect")
                        .await?;
                    continue;
                }
                let note = format!("sent (attempt {})", c.attempts + 1);
                if store::move_command(
                    &mut tx,
                    c.id,
                    CommandStatus::Queued,
                    CommandStatus::Sent,
                    now,
                    None,
                    &note,
                    None,
                )
                .await?
                {
                    changed(state, &mut tx, &c, CommandStatus::Sent).await?;
                    sends.push((c, device));
                }
            }
            CommandStatus::Sent => {
                let waited = c
                    .last_sent_at
                    .is_none_or(|t| now - t >= state.config.command_ack_timeout);
                if !waited {
                    continue;
                }
                if c.attempts >= state.config.command_max_attempts {
                    let note = format!("no acknowledgement after {} attempts", c.attempts);
                    if store::move_command(
                        &mut tx,
                        c.id,
                        CommandStatus::Sent,
                        CommandStatus::Failed,
                        now,
                        None,
                        &note,
                        None,
                    )
                    .await?
                    {
                        changed(state, &mut tx, &c, CommandStatus::Failed).await?;
                    }
                } else if !safe {
                    store::move_command(
                        &mut tx,
                        c.id,
                        CommandStatus::Sent,
                        CommandStatus::Queued,
                        now,
                        None,
                        "not acknowledged and the vehicle is moving again; waiting",
                        None,
                    )
                    .await?;
                } else if connected {
                    let note = format!("not acknowledged; resent (attempt {})", c.attempts + 1);
                    if store::move_command(
                        &mut tx,
                        c.id,
                        CommandStatus::Sent,
                        CommandStatus::Sent,
                        now,
                        None,
                        &note,
                        None,
                    )
                    .await?
                    {
                        sends.push((c, device));
                    }
                }
            }
            _ => {}
        }
    }
    deps.events.commit(tx).await?;
    // Sent after the commit, so an acknowledgement always finds the command `sent`.
    let n = sends.len();
    for (c, device) in sends {
        let (on, off) = state
            .config
            .command_texts(device.protocol, device.model.as_deref());
        let text = match c.action {
            CommandAction::Immobilize => on,
            CommandAction::Restore => off,
        };
        state.sessions.send(
            device.id,
            Outgoing {
                command_id: c.id,
                action: c.action,
                text,
            },
        );
    }
    Ok(n)
}

/// A tracker answered a command: the named one, or its oldest unanswered one
/// (Codec 12 and GT06 replies carry no id).
pub async fn acknowledge(
    state: &AppState,
    device: Uuid,
    command: Option<Uuid>,
    response: &str,
) -> Result<(), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let c = match command {
        Some(id) => store::find_command(&mut *tx, id)
            .await?
            .filter(|c| c.device_id == device && c.status == CommandStatus::Sent),
        None => store::oldest_sent(&mut tx, device).await?,
    };
    let Some(c) = c else {
        tracing::info!(%device, response, "a command reply matched no sent command");
        return Ok(());
    };
    let response: String = response.chars().take(500).collect();
    if store::move_command(
        &mut tx,
        c.id,
        CommandStatus::Sent,
        CommandStatus::Acknowledged,
        now,
        None,
        "acknowledged by the tracker",
        Some(&response),
    )
    .await?
    {
        changed(state, &mut tx, &c, CommandStatus::Acknowledged).await?;
    }
    deps.events.commit(tx).await?;
    Ok(())
}

/// The dispatcher job: polls on a real-time interval, decides by the injected clock.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(state.config.job_poll) => {}
        }
        if let Err(e) = dispatch_due(&state).await {
            tracing::warn!(error = %e, "command dispatch failed; will retry");
        }
    }
}

//! Where every protocol's positions go: one writer task per replica takes
//! what the connections hand it, stores it in batches (one transaction,
//! multi-row inserts), moves each vehicle's latest position forward, runs
//! risk detection on what is new, and only then answers the connections, so
//! a tracker's acknowledgement means its records are on disk.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use miliki_events::catalogue::telematics::RiskDetected;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::position::Position;
use crate::domain::risk::{Fence, VehicleRisk};
use crate::domain::DeviceStatus;
use crate::state::AppState;
use crate::store;

/// What became of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Records taken (stored now or stored before): what a tracker is acknowledged.
    pub accepted: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("the device is not registered or was decommissioned")]
    UnknownDevice,
    #[error("positions could not be stored now")]
    Unavailable,
}

struct Submission {
    device_id: Uuid,
    positions: Vec<Position>,
    done: oneshot::Sender<Result<Outcome, IngestError>>,
}

/// The connections' handle on the writer.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Submission>,
}

/// The writer's end, handed to [`run`].
pub struct Queue(mpsc::Receiver<Submission>);

impl Ingestor {
    pub fn new(capacity: usize) -> (Self, Queue) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, Queue(rx))
    }

    /// Hands positions to the writer and waits until they are stored.
    pub async fn submit(
        &self,
        device_id: Uuid,
        positions: Vec<Position>,
    ) -> Result<Outcome, IngestError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Submission {
                device_id,
                positions,
                done,
            })
            .await
            .map_err(|_| IngestError::Unavailable)?;
        wait.await.map_err(|_| IngestError::Unavailable)?
    }
}

struct DeviceInfo {
    vehicle_id: Uuid,
    active: bool,
    fetched: Instant,
}

struct VehicleCtx {
    latest_at: Option<DateTime<Utc>>,
    parked_since: Option<DateTime<Utc>>,
    risk: VehicleRisk,
    limit_kmh: f64,
    fetched: Instant,
}

/// How long cached facts about devices, vehicles and geofences are trusted
/// before they are read again (changes made in this process apply at once).
const CACHE_TTL: Duration = Duration::from_secs(15);

struct Writer {
    state: AppState,
    devices: HashMap<Uuid, DeviceInfo>,
    vehicles: HashMap<Uuid, VehicleCtx>,
    fences: Vec<(Option<Uuid>, Fence)>,
    fences_at: Option<Instant>,
}

/// The writer task: runs until shut down, then stores what is still queued.
pub async fn run(state: AppState, queue: Queue, shutdown: CancellationToken) {
    let Queue(mut rx) = queue;
    let mut w = Writer {
        state,
        devices: HashMap::new(),
        vehicles: HashMap::new(),
        fences: Vec::new(),
        fences_at: None,
    };
    let mut invalidations = w.state.invalidations.subscribe();
    loop {
        let first = tokio::select! {
            biased;
            s = rx.recv() => match s { Some(s) => s, None => return },
            Ok(what) = invalidations.recv() => { w.invalidate(what); continue }
            _ = shutdown.cancelled() => {
                rx.close();
                match rx.recv().await { Some(s) => s, None => return }
            }
        };
        let mut batch = vec![first];
        let mut rows = batch[0].positions.len();
        while rows < w.state.config.batch_max {
            match rx.try_recv() {
                Ok(s) => {
                    rows += s.positions.len();
                    batch.push(s);
                }
                Err(_) => break,
            }
        }
        w.write(batch).await;
    }
}

/// What the API tells the writer to forget.
#[derive(Debug, Clone, Copy)]
pub enum Invalidate {
    Device(Uuid),
    Vehicle(Uuid),
    Geofences,
}

impl Writer {
    fn invalidate(&mut self, what: Invalidate) {
        match what {
            Invalidate::Device(d) => {
                self.devices.remove(&d);
            }
            Invalidate::Vehicle(v) => {
                if let Some(ctx) = self.vehicles.get_mut(&v) {
                    // Keep detection's memory; re-read the speed limit.
                    ctx.fetched = Instant::now() - CACHE_TTL * 2;
                }
            }
            Invalidate::Geofences => self.fences_at = None,
        }
    }

    async fn device(&mut self, id: Uuid) -> Result<Option<(Uuid, bool)>, sqlx::Error> {
        if let Some(d) = self.devices.get(&id) {
            if d.fetched.elapsed() < CACHE_TTL {
                return Ok(Some((d.vehicle_id, d.active)));
            }
        }
        let found = store::find_device(self.state.deps.db.writer(), id).await?;
        Ok(found.map(|d| {
            let active = d.status == DeviceStatus::Active;
            self.devices.insert(
                id,
                DeviceInfo {
                    vehicle_id: d.vehicle_id,
                    active,
                    fetched: Instant::now(),
                },
            );
            (d.vehicle_id, active)
        }))
    }

    async fn load_vehicle(&mut self, vehicle: Uuid) -> Result<(), sqlx::Error> {
        let fresh = self
            .vehicles
            .get(&vehicle)
            .is_some_and(|c| c.fetched.elapsed() < CACHE_TTL);
        if fresh {
            return Ok(());
        }
        let db = &self.state.deps.db;
        let kind = store::vehicle_type(db.writer(), vehicle).await?;
        let limit_kmh = self.state.config.speed_limit(kind.as_deref());
        if let Some(ctx) = self.vehicles.get_mut(&vehicle) {
            ctx.limit_kmh = limit_kmh;
            ctx.fetched = Instant::now();
            return Ok(());
        }
        let latest = store::latest(db.writer(), vehicle).await?;
        let risk = store::load_risk(db, vehicle).await?;
        self.vehicles.insert(
            vehicle,
            VehicleCtx {
                latest_at: latest.as_ref().map(|l| l.position.at),
                parked_since: latest.and_then(|l| l.parked_since),
                risk,
                limit_kmh,
                fetched: Instant::now(),
            },
        );
        Ok(())
    }

    async fn load_fences(&mut self) -> Result<(), sqlx::Error> {
        if self.fences_at.is_some_and(|t| t.elapsed() < CACHE_TTL) {
            return Ok(());
        }
        self.fences = store::geofences(&self.state.deps.db)
            .await?
            .into_iter()
            .map(|g| {
                (
                    g.vehicle_id,
                    Fence {
                        id: g.id,
                        name: g.name,
                        shape: g.shape,
                    },
                )
            })
            .collect();
        self.fences_at = Some(Instant::now());
        Ok(())
    }

    async fn write(&mut self, batch: Vec<Submission>) {
        let started = Instant::now();
        match self.try_write(&batch).await {
            Ok((outcomes, live)) => {
                for (s, o) in batch.into_iter().zip(outcomes) {
                    let _ = s.done.send(o);
                }
                for (vehicle, json) in live {
                    self.state.hub.publish(vehicle, &json);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "storing positions failed; trackers will resend");
                // Detection may have advanced in memory for a batch that was not stored.
                self.vehicles.clear();
                for s in batch {
                    let _ = s.done.send(Err(IngestError::Unavailable));
                }
            }
        }
        metrics::histogram!("telematics_batch_seconds").record(started.elapsed().as_secs_f64());
    }

    #[allow(clippy::type_complexity)]
    async fn try_write(
        &mut self,
        batch: &[Submission],
    ) -> Result<
        (
            Vec<Result<Outcome, IngestError>>,
            Vec<(Uuid, serde_json::Value)>,
        ),
        anyhow::Error,
    > {
        let now = self.state.deps.clock.now();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut rows = Vec::new();
        let mut devices = Vec::new();
        for s in batch {
            match self.device(s.device_id).await? {
                Some((vehicle, true)) => {
                    devices.push(s.device_id);
                    for p in &s.positions {
                        rows.push(store::PositionRow {
                            device_id: s.device_id,
                            vehicle_id: vehicle,
                            p,
                        });
                    }
                    outcomes.push(Ok(Outcome {
                        accepted: s.positions.len(),
                    }));
                }
                _ => {
                    self.state.stats.unknown_device();
                    outcomes.push(Err(IngestError::UnknownDevice));
                }
            }
        }
        if rows.is_empty() {
            return Ok((outcomes, Vec::new()));
        }
        self.load_fences().await?;
        // New positions per vehicle, in time order, for latest and detection.
        let mut per_vehicle: BTreeMap<Uuid, Vec<(Uuid, &Position)>> = BTreeMap::new();
        for r in &rows {
            per_vehicle
                .entry(r.vehicle_id)
                .or_default()
                .push((r.device_id, r.p));
        }
        for vehicle in per_vehicle.keys() {
            self.load_vehicle(*vehicle).await?;
        }

        let deps = self.state.deps.clone();
        let t_begin = Instant::now();
        let mut tx = deps.db.begin().await?;
        let per_statement = store::rows_per_statement(&deps.db);
        let stored = store::insert_positions(&mut tx, &rows, now, per_statement).await?;
        let t_inserted = Instant::now();
        let mut live = Vec::new();
        let mut latest_rows = Vec::new();
        // Building live messages costs; skip it when nobody watches.
        let watched = self.state.hub.has_listeners();
        let config = self.state.config.clone();
        for (vehicle, mut list) in per_vehicle {
            let Some(ctx) = self.vehicles.get_mut(&vehicle) else {
                continue;
            };
            list.sort_by_key(|(_, p)| p.at);
            let fences: Vec<Fence> = self
                .fences
                .iter()
                .filter(|(scope, _)| scope.is_none_or(|v| v == vehicle))
                .map(|(_, f)| f.clone())
                .collect();
            let before = ctx.risk.clone();
            let mut newest: Option<(Uuid, &Position)> = None;
            for (device, p) in list {
                // Resent and out-of-order records are stored but never move time back.
                if ctx.latest_at.is_some_and(|l| p.at <= l) {
                    continue;
                }
                ctx.latest_at = Some(p.at);
                ctx.parked_since = if p.is_parked(config.stationary_max_kmh) {
                    ctx.parked_since.or(Some(p.at))
                } else {
                    None
                };
                for f in ctx
                    .risk
                    .observe(p, ctx.limit_kmh, &fences, &config.thresholds)
                {
                    let id = miliki_platform::id::new_id();
                    store::insert_risk(&mut tx, id, vehicle, device, &f, now).await?;
                    let event = RiskDetected {
                        event_id: id,
                        vehicle_id: vehicle,
                        device_id: device,
                        kind: f.kind.as_str().into(),
                        severity: f.severity.as_str().into(),
                        at: f.at,
                        lat: f.lat,
                        lon: f.lon,
                        details: f.details.clone(),
                    };
                    deps.events.write(&mut tx, &event).await?;
                    let mut json = serde_json::to_value(&event).unwrap_or_default();
                    json["type"] = "risk".into();
                    live.push((vehicle, json));
                }
                if p.has_fix() {
                    newest = Some((device, p));
                }
            }
            if let Some((device, p)) = newest {
                latest_rows.push(store::LatestRow {
                    vehicle_id: vehicle,
                    device_id: device,
                    p,
                    parked_since: ctx.parked_since,
                });
                if watched {
                    live.push((
                        vehicle,
                        serde_json::json!({"type": "position", "vehicle_id": vehicle, "device_id": device, "position": p}),
                    ));
                }
            }
            // Only what detection must remember across restarts is written, not every speed.
            if ctx.risk.active != before.active
                || ctx.risk.last_raised != before.last_raised
                || ctx.risk.fences != before.fences
                || ctx.risk.overspeed_since.is_some() != before.overspeed_since.is_some()
            {
                store::save_risk(&mut tx, vehicle, &ctx.risk).await?;
            }
        }
        store::upsert_latest(&mut tx, &latest_rows, now, per_statement).await?;
        devices.sort();
        devices.dedup();
        store::touch_devices(&mut tx, &devices, now, per_statement).await?;
        let t_rest = Instant::now();
        deps.events.commit(tx).await?;
        tracing::debug!(
            rows = rows.len(),
            vehicles = devices.len(),
            insert_ms = (t_inserted - t_begin).as_secs_f64() * 1000.0,
            rest_ms = (t_rest - t_inserted).as_secs_f64() * 1000.0,
            commit_ms = t_rest.elapsed().as_secs_f64() * 1000.0,
            "batch stored"
        );

        let total = rows.len() as u64;
        let s = &self.state.stats;
        s.positions_stored
            .fetch_add(stored, std::sync::atomic::Ordering::Relaxed);
        s.duplicates.fetch_add(
            total - stored.min(total),
            std::sync::atomic::Ordering::Relaxed,
        );
        metrics::counter!("telematics_positions_stored_total").increment(stored);
        Ok((outcomes, live))
    }
}

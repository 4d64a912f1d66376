//! What every handler and listener can reach, the service's settings, and
//! the caller as this service sees them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use miliki_events::service::ServiceDeps;
use miliki_events::standing;
use miliki_platform::auth::{AuthUser, Role, Tokens};
use miliki_platform::config::Settings;
use miliki_platform::ApiError;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::risk::Thresholds;
use crate::domain::Protocol;
use crate::ingest::{Ingestor, Invalidate};
use crate::live::Hub;
use crate::sessions::Sessions;

/// Where a tracker listener should listen: off, or an address (port 0 asks
/// the system for a free port, as tests do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

/// The service's own settings, read from `telematics_*` keys
/// (`MILIKI_TELEMATICS_TELTONIKA_PORT`, …).
#[derive(Debug, Clone)]
pub struct Config {
    pub teltonika: Listen,
    pub gt06: Listen,
    pub osmand: Listen,
    /// Open tracker connections allowed at once, over all TCP listeners.
    pub max_connections: usize,
    /// A tracker connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The largest frame accepted from a tracker.
    pub max_frame_bytes: usize,
    /// Consecutive unusable frames after which a connection is closed.
    pub max_bad_frames: u32,
    /// Positions written per transaction at most.
    pub batch_max: usize,
    pub thresholds: Thresholds,
    /// Speed limits per vehicle type, km/h.
    pub speed_limits: BTreeMap<String, f64>,
    /// No data for this long from an active device raises `device_offline`.
    pub offline_after: chrono::Duration,
    /// Stopped with the engine off for this long before an immobilization is sent.
    pub stationary_for: chrono::Duration,
    /// Speed at or under which a vehicle counts as stopped.
    pub stationary_max_kmh: f64,
    /// How often the command, offline and retention jobs look for work (real
    /// time; their decisions use the injected clock).
    pub job_poll: Duration,
    /// A sent command not acknowledged within this is sent again.
    pub command_ack_timeout: chrono::Duration,
    pub command_max_attempts: i64,
    /// Commands per tracker model; otherwise each protocol's default.
    pub model_commands: BTreeMap<String, (String, String)>,
    /// The arrears policy: immobilize at this many days past due, after a warning this long before.
    pub policy_days_past_due: i64,
    pub policy_warning: chrono::Duration,
    /// Positions older than this are deleted; 0 keeps them forever.
    pub retention_days: i64,
}

fn extra<'a>(settings: &'a Settings, key: &str) -> Option<&'a serde_json::Value> {
    settings.extra.get(&format!("telematics_{key}"))
}

fn extra_f64(settings: &Settings, key: &str, default: f64) -> f64 {
    match extra(settings, key) {
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(default),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(default),
        _ => default,
    }
}

fn extra_u64(settings: &Settings, key: &str, default: u64) -> u64 {
    let v = extra_f64(settings, key, default as f64);
    if v.is_finite() && v >= 0.0 {
        v as u64
    } else {
        default
    }
}

fn extra_str(settings: &Settings, key: &str) -> Option<String> {
    match extra(settings, key)? {
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `5027` (on the tracker bind address), `0` (off) or `127.0.0.1:0`.
fn listen(settings: &Settings, key: &str, default_port: u16) -> Result<Listen, String> {
    let bind: IpAddr = match extra_str(settings, "bind") {
        Some(b) => b
            .parse()
            .map_err(|_| format!("telematics_bind: {b:?} is not an IP address"))?,
        None => settings.bind,
    };
    match extra_str(settings, key) {
        None => Ok(Listen::On(SocketAddr::new(bind, default_port))),
        Some(v) => {
            if let Ok(port) = v.parse::<u16>() {
                return Ok(if port == 0 {
                    Listen::Off
                } else {
                    Listen::On(SocketAddr::new(bind, port))
                });
            }
            v.parse::<SocketAddr>()
                .map(Listen::On)
                .map_err(|_| format!("telematics_{key}: {v:?} is neither a port nor an address"))
        }
    }
}

/// `22:00-05:00` as minutes after midnight.
fn curfew(raw: &str) -> Result<(u32, u32), String> {
    let minutes = |s: &str| -> Option<u32> {
        let (h, m) = s.trim().split_once(':')?;
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    raw.split_once('-')
        .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
        .ok_or_else(|| format!("telematics_curfew: {raw:?} is not HH:MM-HH:MM"))
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let secs = |key: &str, default: u64| extra_u64(settings, key, default);
        let mut speed_limits = BTreeMap::new();
        for (kind, default) in [
            ("motorcycle", 80.0),
            ("car", 110.0),
            ("van", 100.0),
            ("truck", 80.0),
        ] {
            let v = extra_f64(settings, &format!("overspeed_{kind}_kmh"), default);
            speed_limits.insert(kind.to_owned(), v.clamp(10.0, 300.0));
        }
        let thresholds = Thresholds {
            overspeed_sustain: chrono::Duration::seconds(
                secs("overspeed_sustain_secs", 30).min(3600) as i64,
            ),
            overspeed_clear_margin_kmh: extra_f64(settings, "overspeed_clear_margin_kmh", 10.0),
            harsh_braking_kmh_per_s: extra_f64(settings, "harsh_braking_kmh_per_s", 14.0),
            harsh_accel_kmh_per_s: extra_f64(settings, "harsh_accel_kmh_per_s", 12.0),
            low_battery_mv: secs("low_battery_mv", 11_500) as i64,
            coolant_max_c: extra_f64(settings, "coolant_max_c", 110.0),
            curfew: match extra_str(settings, "curfew") {
                Some(c) if !c.is_empty() => Some(curfew(&c)?),
                _ => None,
            },
            utc_offset_minutes: extra_f64(settings, "utc_offset_minutes", 180.0) as i32,
            cooldown: chrono::Duration::seconds(secs("risk_cooldown_secs", 120) as i64),
            ..Thresholds::default()
        };
        let mut model_commands = BTreeMap::new();
        if let Some(serde_json::Value::String(raw)) = extra(settings, "model_commands") {
            // {"FMB920": ["setdigout 1", "setdigout 0"], ...}
            let parsed: BTreeMap<String, (String, String)> =
                serde_json::from_str(raw).map_err(|e| format!("telematics_model_commands: {e}"))?;
            model_commands = parsed;
        }
        Ok(Self {
            teltonika: listen(settings, "teltonika_port", 5027)?,
            gt06: listen(settings, "gt06_port", 5023)?,
            osmand: listen(settings, "osmand_port", 5055)?,
            max_connections: secs("max_connections", 20_000).clamp(1, 1_000_000) as usize,
            idle_timeout: Duration::from_secs(secs("idle_timeout_secs", 600).max(1)),
            max_frame_bytes: secs("max_frame_bytes", 65_536).clamp(256, 16 * 1024 * 1024) as usize,
            max_bad_frames: secs("max_bad_frames", 3).clamp(1, 100) as u32,
            batch_max: secs("batch_max", 2000).clamp(1, 20_000) as usize,
            thresholds,
            speed_limits,
            offline_after: chrono::Duration::seconds(
                secs("offline_after_secs", 3600).max(60) as i64
            ),
            stationary_for: chrono::Duration::seconds(secs("stationary_secs", 60) as i64),
            stationary_max_kmh: extra_f64(settings, "stationary_max_kmh", 0.0),
            job_poll: Duration::from_millis(secs("job_poll_ms", 1000).max(10)),
            command_ack_timeout: chrono::Duration::seconds(
                secs("command_ack_timeout_secs", 30).max(1) as i64,
            ),
            command_max_attempts: secs("command_max_attempts", 5).clamp(1, 100) as i64,
            model_commands,
            policy_days_past_due: secs("policy_days_past_due", 7).max(1) as i64,
            policy_warning: chrono::Duration::hours(secs("policy_warning_hours", 24) as i64),
            retention_days: secs("retention_days", 365) as i64,
        })
    }

    pub fn speed_limit(&self, vehicle_type: Option<&str>) -> f64 {
        vehicle_type
            .and_then(|t| self.speed_limits.get(t))
            .copied()
            .unwrap_or(110.0)
    }

    /// The (immobilize, restore) texts for a device.
    pub fn command_texts(&self, protocol: Protocol, model: Option<&str>) -> (String, String) {
        if let Some((on, off)) = model.and_then(|m| self.model_commands.get(m)) {
            return (on.clone(), off.clone());
        }
        match protocol {
            Protocol::Gt06 => ("Relay,1#".into(), "Relay,0#".into()),
            _ => ("setdigout 1".into(), "setdigout 0".into()),
        }
    }
}

/// Where this replica's tracker listeners are bound, and what they have seen.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ListenerInfo {
    pub teltonika: Option<String>,
    pub gt06: Option<String>,
    pub osmand: Option<String>,
    pub open_connections: u64,
    /// Positions or logins from devices nobody registered (or decommissioned), dropped.
    pub unknown_device_reports: u64,
    pub bad_frames: u64,
    pub positions_stored: u64,
    pub duplicates: u64,
}

/// Counters shared by the listeners and the writer.
#[derive(Debug, Default)]
pub struct Stats {
    pub open_connections: AtomicU64,
    pub unknown_device_reports: AtomicU64,
    pub bad_frames: AtomicU64,
    pub positions_stored: AtomicU64,
    pub duplicates: AtomicU64,
}

impl Stats {
    pub fn unknown_device(&self) {
        self.unknown_device_reports.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("telematics_unknown_device_reports_total").increment(1);
    }

    pub fn bad_frame(&self) {
        self.bad_frames.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("telematics_bad_frames_total").increment(1);
    }
}

#[derive(Clone)]
pub struct AppState {
    pub deps: ServiceDeps,
    pub config: Arc<Config>,
    pub ingest: Ingestor,
    pub hub: Hub,
    pub sessions: Sessions,
    pub stats: Arc<Stats>,
    pub bound: Arc<RwLock<[Option<SocketAddr>; 3]>>,
    /// Tells the writer which cached facts changed.
    pub invalidations: tokio::sync::broadcast::Sender<Invalidate>,
}

impl AppState {
    pub fn invalidate(&self, what: Invalidate) {
        let _ = self.invalidations.send(what);
    }

    pub fn listener_info(&self) -> ListenerInfo {
        let bound = *self.bound.read().unwrap_or_else(|e| e.into_inner());
        let s = &self.stats;
        ListenerInfo {
            teltonika: bound[0].map(|a| a.to_string()),
            gt06: bound[1].map(|a| a.to_string()),
            osmand: bound[2].map(|a| a.to_string()),
            open_connections: s.open_connections.load(Ordering::Relaxed),
            unknown_device_reports: s.unknown_device_reports.load(Ordering::Relaxed),
            bad_frames: s.bad_frames.load(Ordering::Relaxed),
            positions_stored: s.positions_stored.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
        }
    }
}

// The one place the auth layer's state requirement is met.
impl FromRef<AppState> for Arc<Tokens> {
    fn from_ref(state: &AppState) -> Self {
        state.deps.tokens.clone()
    }
}

/// An authenticated caller who is not suspended, as far as this service has
/// learned from the users service's events.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub id: Uuid,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        miliki_platform::auth::require_role(self.role, roles)
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = AuthUser::from_request_parts(parts, state).await?;
        let standing = standing::standing(&state.deps.db, auth.id).await?;
        if standing.suspended {
            return Err(ApiError::Unauthenticated("the account is suspended".into()));
        }
        Ok(Caller {
            id: auth.id,
            role: auth.role,
        })
    }
}

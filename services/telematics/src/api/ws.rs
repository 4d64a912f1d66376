//! The two WebSockets: `/api/v1/telematics/ingest`, where phone apps and
//! custom gateways send JSON positions with their device token, and
//! `/api/v1/telematics/live`, which pushes positions and risk events to
//! whoever may see them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use miliki_platform::http::Query;
use miliki_platform::problem::Problem;
use miliki_platform::ApiError;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::scope;
use crate::domain::position::{Alarms, Position};
use crate::ingest::IngestError;
use crate::state::{AppState, Caller};
use crate::store::{self, Scope};
use crate::{commands, token};

/// The largest message either socket accepts.
const MAX_MESSAGE: usize = 256 * 1024;
/// Positions in one ingest message at most.
const MAX_BATCH: usize = 500;

#[derive(Debug, Deserialize)]
pub struct IngestParams {
    pub token: Option<String>,
}

/// One position as a JSON client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonPosition {
    pub time: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub speed_kmh: f64,
    pub heading: Option<f64>,
    pub altitude: Option<f64>,
    pub satellites: Option<i64>,
    pub ignition: Option<bool>,
    pub odometer_m: Option<i64>,
    pub ext_voltage_mv: Option<i64>,
    pub battery_mv: Option<i64>,
    pub battery_pct: Option<f64>,
    #[serde(default)]
    pub alarms: Alarms,
    #[serde(default)]
    pub io: serde_json::Map<String, serde_json::Value>,
}

impl JsonPosition {
    fn into_position(self) -> Result<Position, String> {
        if !(self.lat.is_finite() && (-90.0..=90.0).contains(&self.lat)) {
            return Err("lat must be between -90 and 90".into());
        }
        if !(self.lon.is_finite() && (-180.0..=180.0).contains(&self.lon)) {
            return Err("lon must be between -180 and 180".into());
        }
        if !(self.speed_kmh.is_finite() && (0.0..=500.0).contains(&self.speed_kmh)) {
            return Err("speed_kmh must be between 0 and 500".into());
        }
        if self.io.len() > 64 {
            return Err("io may hold at most 64 elements".into());
        }
        Ok(Position {
            at: self.time,
            lat: self.lat,
            lon: self.lon,
            speed_kmh: self.speed_kmh,
            heading: self.heading,
            altitude: self.altitude,
            satellites: self.satellites,
            ignition: self.ignition,
            odometer_m: self.odometer_m,
            ext_voltage_mv: self.ext_voltage_mv,
            battery_mv: self.battery_mv,
            battery_pct: self.battery_pct,
            alarms: self.alarms,
            io: self.io,
            ..Default::default()
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Incoming {
    Ack {
        #[serde(rename = "type")]
        kind: String,
        command_id: Uuid,
        #[serde(default)]
        response: Option<String>,
    },
    Batch {
        positions: Vec<serde_json::Value>,
    },
    Many(Vec<serde_json::Value>),
    One(serde_json::Value),
}

/// Parses one message into positions, or says what is wrong with it.
pub fn parse_message(text: &str) -> Result<Either, String> {
    let incoming: Incoming = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let values = match incoming {
        Incoming::Ack {
            kind,
            command_id,
            response,
        } if kind == "command_ack" => {
            return Ok(Either::Ack(command_id, response.unwrap_or_default()))
        }
        Incoming::Ack { .. } => return Err("unknown message type".into()),
        Incoming::Batch { positions } => positions,
        Incoming::Many(v) => v,
        Incoming::One(v) => vec![v],
    };
    if values.is_empty() || values.len() > MAX_BATCH {
        return Err(format!("send between 1 and {MAX_BATCH} positions"));
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value::<JsonPosition>(v)
                .map_err(|e| format!("positions[{i}]: {e}"))
                .and_then(|p| {
                    p.into_position()
                        .map_err(|e| format!("positions[{i}]: {e}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Either::Positions)
}

pub enum Either {
    Positions(Vec<Position>),
    Ack(Uuid, String),
}

/// Stream positions as a device: token in `X-Device-Token` or `?token=`.
#[utoipa::path(get, path = "/api/v1/telematics/ingest", tag = "telematics",
    params(("token" = Option<String>, Query, description = "The device token, if not in X-Device-Token")),
    responses(
        (status = 101, description = "WebSocket: send a position object, an array of them or {\"positions\": [...]}; each message is answered {\"type\":\"ack\",\"accepted\":n}"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<IngestParams>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let presented = headers
        .get("x-device-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.token)
        .ok_or_else(|| ApiError::Unauthenticated("a device token is required".into()))?;
    let device = store::active_device_by_token(&state.deps.db, &token::hash(&presented))
        .await?
        .ok_or_else(|| {
            state.stats.unknown_device();
            ApiError::Unauthenticated("unknown or decommissioned device token".into())
        })?;
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| device_session(state, device.id, socket)))
}

async fn device_session(state: AppState, device: Uuid, mut socket: WebSocket) {
    let (_guard, mut outgoing) = state.sessions.register(device);
    let mut bad = 0u32;
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout(state.config.idle_timeout, socket.recv()) => match m {
                Ok(Some(Ok(m))) => m,
                _ => return,
            },
            out = outgoing.recv() => {
                let Some(cmd) = out else { return };
                let json = serde_json::json!({"type": "command", "command_id": cmd.command_id, "action": cmd.action, "text": cmd.text});
                if socket.send(Message::Text(json.to_string().into())).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => return,
            Message::Binary(_) => {
                let _ = socket
                    .send(Message::Text(
                        r#"{"type":"error","message":"send JSON text"}"#.into(),
                    ))
                    .await;
                bad += 1;
                if bad >= state.config.max_bad_frames {
                    return;
                }
                continue;
            }
            _ => continue,
        };
        let reply = match parse_message(text.as_str()) {
            Ok(Either::Ack(id, response)) => {
                match commands::acknowledge(&state, device, Some(id), &response).await {
                    Ok(()) => serde_json::json!({"type": "ok"}),
                    Err(_) => serde_json::json!({"type": "error", "message": "try again"}),
                }
            }
            Ok(Either::Positions(ps)) => match state.ingest.submit(device, ps).await {
                Ok(o) => {
                    bad = 0;
                    serde_json::json!({"type": "ack", "accepted": o.accepted})
                }
                Err(IngestError::UnknownDevice) => return,
                Err(IngestError::Unavailable) => {
                    serde_json::json!({"type": "error", "message": "not stored; send again"})
                }
            },
            Err(e) => {
                state.stats.bad_frame();
                bad += 1;
                serde_json::json!({"type": "error", "message": e})
            }
        };
        if socket
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
            || bad >= state.config.max_bad_frames
        {
            return;
        }
    }
}

/// Live positions and risk events as JSON messages (`{"type":"position",...}`,
/// `{"type":"risk",...}`): admins get every vehicle, agents their customers',
/// customers their own.
#[utoipa::path(get, path = "/api/v1/telematics/live", tag = "telematics", security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket of position and risk messages"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn live(State(state): State<AppState>, caller: Caller, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(4096)
        .on_upgrade(move |socket| live_session(state, scope(&caller), socket))
}

/// How often a non-admin's visible vehicles are read again.
const VISIBILITY_REFRESH: Duration = Duration::from_secs(10);

async fn live_session(state: AppState, scope: Scope, mut socket: WebSocket) {
    let mut feed = state.hub.subscribe();
    let mut visible: Option<(HashSet<Uuid>, Instant)> = None;
    loop {
        let item = tokio::select! {
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => continue,
            },
            item = feed.recv() => item,
        };
        let item = match item {
            Ok(item) => item,
            Err(RecvError::Lagged(n)) => {
                let msg = serde_json::json!({"type": "lagged", "missed": n});
                if socket
                    .send(Message::Text(msg.to_string().into()))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if !matches!(scope, Scope::All) {
            let stale = visible
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() > VISIBILITY_REFRESH);
            if stale {
                match store::visible_vehicles(&state.deps.db, scope).await {
                    Ok(v) => visible = Some((v.into_iter().collect(), Instant::now())),
                    Err(_) => return,
                }
            }
            if !visible
                .as_ref()
                .is_some_and(|(set, _)| set.contains(&item.vehicle_id))
            {
                continue;
            }
        }
        if socket
            .send(Message::Text(item.json.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}

//! Helpers for telematics tests: IMEIs, registered devices, a Teltonika and
//! a GT06 tracker speaking over real sockets, and other services' events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use miliki_events::EventPayload;
use miliki_telematics::protocol::teltonika::{self, IoValue, Record};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::common::*;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh IMEI with a valid Luhn check digit.
pub fn imei() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let salt = (Uuid::now_v7().as_u128() % 1_000_000) as u64;
    let body = format!("35{:06}{:06}", salt, n % 1_000_000);
    for d in 0..10 {
        let candidate = format!("{body}{d}");
        if miliki_telematics::domain::luhn_ok(&candidate) {
            return candidate;
        }
    }
    unreachable!("one check digit always fits")
}

/// Settings for telematics tests: jobs that poll quickly.
pub async fn spawn() -> TestApp {
    TestApp::spawn_with(|s| {
        s.extra.insert("telematics_job_poll_ms".into(), "20".into());
        s.extra
            .insert("telematics_command_ack_timeout_secs".into(), "30".into());
    })
    .await
}

pub struct Listeners {
    pub teltonika: SocketAddr,
    pub gt06: SocketAddr,
    pub osmand: SocketAddr,
}

pub async fn listeners(app: &TestApp, admin: &Account) -> Listeners {
    let (status, body) = app
        .get("/api/v1/telematics/listeners", Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let addr = |k: &str| body[k].as_str().unwrap().parse().unwrap();
    Listeners {
        teltonika: addr("teltonika"),
        gt06: addr("gt06"),
        osmand: addr("osmand"),
    }
}

pub struct Device {
    pub id: String,
    pub imei: String,
    pub token: Option<String>,
}

pub async fn register(app: &TestApp, admin: &Account, protocol: &str, vehicle: Uuid) -> Device {
    let imei = imei();
    let (status, body) = app
        .post(
            "/api/v1/devices",
            Some(&admin.token),
            json!({"imei": imei, "protocol": protocol, "vehicle_id": vehicle, "model": "FMB920"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Device {
        id: body["id"].as_str().unwrap().to_owned(),
        imei,
        token: body["token"].as_str().map(str::to_owned),
    }
}

/// Publishes an event as its owning service would: through an outbox and
/// the relay, onto the same bus the services use. (The payments service is
/// not in this build; its events are published from the users service's
/// outbox, which telematics cannot tell apart.)
pub async fn publish<P: EventPayload>(app: &TestApp, payload: &P) {
    let deps = app.users();
    let mut tx = deps.db.begin().await.unwrap();
    deps.events.write(&mut tx, payload).await.unwrap();
    deps.events.commit(tx).await.unwrap();
}

/// Makes `customer` the holder of `vehicle`, as a contract activation does,
/// and waits until telematics knows.
pub async fn hold(app: &TestApp, vehicle: Uuid, customer: &Account) -> Uuid {
    let contract = Uuid::now_v7();
    publish(
        app,
        &miliki_events::catalogue::payments::ContractActivated {
            contract_id: contract,
            customer_id: customer.id,
            vehicle_id: vehicle,
        },
    )
    .await;
    let db = telematics(app).db.clone();
    app.eventually("telematics to learn the holder", || {
        let db = db.clone();
        async move {
            let holder: Option<Option<String>> =
                sqlx::query_scalar("SELECT customer_id FROM vehicles WHERE vehicle_id = $1")
                    .bind(vehicle.to_string())
                    .fetch_optional(db.reader())
                    .await
                    .ok()?;
            (holder.flatten() == Some(customer.id.to_string())).then_some(())
        }
    })
    .await;
    contract
}

pub fn telematics(app: &TestApp) -> &miliki_events::service::ServiceDeps {
    app.runtime()
        .deps("telematics")
        .expect("telematics service")
}

/// A record at `at`, with ignition, speed and extra IO elements.
pub fn record(
    at: DateTime<Utc>,
    lat: f64,
    lon: f64,
    speed: u16,
    ignition: bool,
    io: &[(u16, u64)],
) -> Record {
    let mut elements = vec![
        (239u16, IoValue::Int(u64::from(ignition))),
        (66, IoValue::Int(12_800)),
    ];
    elements.extend(io.iter().map(|(k, v)| (*k, IoValue::Int(*v))));
    Record {
        at,
        priority: 0,
        lon,
        lat,
        altitude: 1650,
        angle: 90,
        satellites: 10,
        speed_kmh: speed,
        event_io: 0,
        io: elements,
    }
}

/// A Teltonika tracker on a real TCP connection.
pub struct Tracker {
    pub stream: TcpStream,
}

impl Tracker {
    /// Connects and sends the IMEI; returns the tracker and the server's answer byte.
    pub async fn connect(addr: SocketAddr, imei: &str) -> (Self, u8) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&teltonika::encode_imei(imei))
            .await
            .unwrap();
        let mut answer = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer))
            .await
            .expect("handshake answer")
            .expect("read");
        (Self { stream }, answer[0])
    }

    pub async fn online(addr: SocketAddr, imei: &str) -> Self {
        let (t, answer) = Self::connect(addr, imei).await;
        assert_eq!(answer, 1, "the server refused the IMEI");
        t
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The server's 4-byte acknowledgement, or None if none came in time.
    pub async fn ack(&mut self, wait: Duration) -> Option<u32> {
        let mut b = [0u8; 4];
        match tokio::time::timeout(wait, self.stream.read_exact(&mut b)).await {
            Ok(Ok(_)) => Some(u32::from_be_bytes(b)),
            _ => None,
        }
    }

    /// Sends records (Codec 8 Extended) and returns the acknowledged count.
    pub async fn report(&mut self, records: &[Record]) -> u32 {
        self.send(&teltonika::encode_avl(teltonika::CODEC_8E, records))
            .await;
        self.ack(Duration::from_secs(5))
            .await
            .expect("acknowledged")
    }

    /// A Codec 12 command from the server, if one arrives in time.
    pub async fn command(&mut self, wait: Duration) -> Option<String> {
        let mut head = [0u8; 8];
        tokio::time::timeout(wait, self.stream.read_exact(&mut head))
            .await
            .ok()?
            .ok()?;
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut rest = vec![0u8; len + 4];
        self.stream.read_exact(&mut rest).await.ok()?;
        let mut frame = head.to_vec();
        frame.extend(rest);
        // Codec 12, one command (type 0x05): the text follows its 4-byte size.
        if frame.get(8) != Some(&teltonika::CODEC_12) || frame.get(10) != Some(&0x05) || len < 8 {
            return None;
        }
        Some(String::from_utf8_lossy(&frame[15..15 + (len - 8)]).into_owned())
    }

    /// Answers a command as the device does (Codec 12, type 0x06).
    pub async fn reply(&mut self, text: &str) {
        let body = text.as_bytes();
        let mut data = vec![teltonika::CODEC_12, 1, 0x06];
        data.extend_from_slice(&(body.len() as u32).to_be_bytes());
        data.extend_from_slice(body);
        data.push(1);
        self.send(&teltonika::frame(&data)).await;
    }
}

/// Waits until the vehicle's latest position is at `at`.
pub async fn wait_latest(app: &TestApp, token: &str, vehicle: Uuid, at: DateTime<Utc>) -> Value {
    let path = format!("/api/v1/telematics/vehicles/{vehicle}/position");
    app.eventually("the latest position", || async {
        let (status, body) = app.get(&path, Some(token)).await;
        (status == StatusCode::OK
            && body["position"]["at"]
                .as_str()
                .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                == Some(at))
        .then_some(body)
    })
    .await
}

/// The risk events of a vehicle, newest first.
pub async fn risks(app: &TestApp, token: &str, vehicle: Uuid) -> Vec<Value> {
    let (status, body) = app
        .get(
            &format!("/api/v1/telematics/events?vehicle_id={vehicle}&limit=100"),
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

pub fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// RFC 3339 with `Z`, safe in a query string.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

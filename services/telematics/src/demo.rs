//! The simulated fleet: trackers driving loops around Nairobi over the real
//! listeners (Teltonika over TCP, OsmAnd over HTTP), one of them speeding
//! now and then, so the live feed and risk events have something to show.
//! The same simulator feeds `miliki bench telematics`.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::geo::haversine_m;
use crate::domain::{luhn_ok, Protocol};
use crate::protocol::teltonika::{self, IoValue, Record};
use crate::state::AppState;
use crate::store;

/// Places around Nairobi the simulated vehicles drive between.
pub const NAIROBI: &[(f64, f64)] = &[
    (-1.2864, 36.8172), // CBD
    (-1.2676, 36.8108), // Westlands
    (-1.2890, 36.7830), // Kilimani
    (-1.2990, 36.8150), // Upper Hill
    (-1.3080, 36.8500), // Industrial Area
    (-1.2740, 36.8510), // Eastleigh
    (-1.2180, 36.8880), // Roysambu, Thika Road
    (-1.2590, 36.8470), // Pangani
];

/// One simulated vehicle on a loop of waypoints.
#[derive(Debug, Clone)]
pub struct Sim {
    points: Vec<(f64, f64)>,
    leg: usize,
    /// Metres travelled along the current leg.
    along: f64,
    /// Seconds left parked at a stop.
    parked: f64,
    speeding: bool,
    laps: u64,
    odometer: f64,
}

/// Where a simulated vehicle is after a step.
#[derive(Debug, Clone, Copy)]
pub struct Fix {
    pub lat: f64,
    pub lon: f64,
    pub speed_kmh: f64,
    pub heading: f64,
    pub ignition: bool,
    pub odometer_m: f64,
}

impl Sim {
    /// A loop starting at waypoint `start`; a `speeding` one does 95 km/h on every third leg.
    pub fn new(start: usize, speeding: bool) -> Self {
        let n = NAIROBI.len();
        let points = (0..n).map(|i| NAIROBI[(start + i * 3) % n]).collect();
        Self {
            points,
            leg: 0,
            along: 0.0,
            parked: 0.0,
            speeding,
            laps: 0,
            odometer: 0.0,
        }
    }

    fn leg_speed(&self) -> f64 {
        if self.speeding && self.leg % 3 == 1 {
            95.0
        } else {
            32.0 + 6.0 * (self.leg % 4) as f64
        }
    }

    /// Advances `dt` seconds.
    pub fn step(&mut self, dt: f64) -> Fix {
        let n = self.points.len();
        let (a, b) = (self.points[self.leg % n], self.points[(self.leg + 1) % n]);
        let heading = (b.1 - a.1).atan2(b.0 - a.0).to_degrees().rem_euclid(360.0);
        if self.parked > 0.0 {
            self.parked -= dt;
            return Fix {
                lat: a.0,
                lon: a.1,
                speed_kmh: 0.0,
                heading,
                ignition: false,
                odometer_m: self.odometer,
            };
        }
        let speed = self.leg_speed();
        let length = haversine_m(a.0, a.1, b.0, b.1).max(1.0);
        let step = speed / 3.6 * dt;
        self.along += step;
        self.odometer += step;
        if self.along >= length {
            self.along = 0.0;
            self.leg = (self.leg + 1) % n;
            if self.leg == 0 {
                self.laps += 1;
                // A stop at the end of each lap: engine off for two minutes.
                self.parked = 120.0;
            }
        }
        let f = (self.along / length).min(1.0);
        Fix {
            lat: a.0 + (b.0 - a.0) * f,
            lon: a.1 + (b.1 - a.1) * f,
            speed_kmh: speed,
            heading,
            ignition: true,
            odometer_m: self.odometer,
        }
    }
}

/// A Teltonika record for a fix.
pub fn record(at: DateTime<Utc>, fix: &Fix) -> Record {
    Record {
        at,
        priority: 0,
        lon: fix.lon,
        lat: fix.lat,
        altitude: 1660,
        angle: fix.heading as u16,
        satellites: 11,
        speed_kmh: fix.speed_kmh.round() as u16,
        event_io: 0,
        io: vec![
            (239, IoValue::Int(u64::from(fix.ignition))),
            (240, IoValue::Int(u64::from(fix.speed_kmh > 0.0))),
            (66, IoValue::Int(12_700)),
            (16, IoValue::Int(fix.odometer_m as u64)),
        ],
    }
}

/// A deterministic IMEI (with its check digit) for simulated tracker `n`.
pub fn imei(n: u64) -> String {
    let body = format!("35999900{n:06}");
    (0..10)
        .map(|d| format!("{body}{d}"))
        .find(|c| luhn_ok(c))
        .unwrap_or_default()
}

/// Drives one Teltonika tracker until shut down, reconnecting after failures.
pub async fn drive_teltonika(
    addr: SocketAddr,
    imei: String,
    mut sim: Sim,
    every: Duration,
    clock: miliki_platform::clock::SharedClock,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let session = async {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(&teltonika::encode_imei(&imei)).await?;
            let mut answer = [0u8; 1];
            s.read_exact(&mut answer).await?;
            if answer[0] != 1 {
                anyhow::bail!("the server refused simulated tracker {imei}");
            }
            loop {
                let fix = sim.step(every.as_secs_f64());
                let packet =
                    teltonika::encode_avl(teltonika::CODEC_8E, &[record(clock.now(), &fix)]);
                s.write_all(&packet).await?;
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).await?;
                tokio::time::sleep(every).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), anyhow::Error>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session => if let Err(e) = r { tracing::debug!(error = %e, "simulated tracker reconnecting") },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Drives one OsmAnd phone (plain HTTP GET, speed in knots) until shut down.
pub async fn drive_osmand(
    addr: SocketAddr,
    token: String,
    mut sim: Sim,
    every: Duration,
    clock: miliki_platform::clock::SharedClock,
    shutdown: CancellationToken,
) {
    loop {
        let fix = sim.step(every.as_secs_f64());
        let query = format!(
            "id={token}&lat={:.6}&lon={:.6}&timestamp={}&speed={:.2}&bearing={:.0}&batt=87",
            fix.lat,
            fix.lon,
            clock.now().timestamp(),
            fix.speed_kmh / 1.852,
            fix.heading
        );
        let request =
            format!("GET /?{query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let sent = async {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(request.as_bytes()).await?;
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).await?;
            Ok::<(), std::io::Error>(())
        };
        if let Err(e) = sent.await {
            tracing::debug!(error = %e, "simulated phone could not report");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Where a listener bound on any address is reached from this machine.
fn local(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), addr.port())
    } else {
        addr
    }
}

/// The demo job: waits for the vehicles service's demo stock to be known
/// (from its events), puts trackers on five vehicles (idempotently), and drives them.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let db = state.deps.db.clone();
    let mut vehicles: Vec<Uuid> = Vec::new();
    for _ in 0..120 {
        vehicles = sqlx::query_scalar::<_, String>(
            "SELECT vehicle_id FROM vehicles WHERE vehicle_type IS NOT NULL ORDER BY vehicle_type DESC, vehicle_id LIMIT 5",
        )
        .fetch_all(db.reader())
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Uuid::parse_str(s).ok())
        .collect();
        if vehicles.len() >= 5 {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    if vehicles.is_empty() {
        tracing::warn!(
            "simulated fleet: no vehicles known (is the vehicles service running here?)"
        );
        return;
    }
    let bound = *state.bound.read().unwrap_or_else(|e| e.into_inner());
    let every = Duration::from_secs(5);
    for (i, vehicle) in vehicles.iter().enumerate() {
        let protocol = if i == 4 {
            Protocol::Osmand
        } else {
            Protocol::Teltonika
        };
        let imei = imei(i as u64);
        let token = crate::token::generate();
        match ensure_device(&state, &imei, protocol, *vehicle, &token).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "simulated fleet: could not register a tracker");
                continue;
            }
        }
        let sim = Sim::new(i * 2, i == 1);
        let clock = state.deps.clock.clone();
        match (protocol, bound[0], bound[2]) {
            (Protocol::Teltonika, Some(addr), _) => {
                tokio::spawn(drive_teltonika(
                    local(addr),
                    imei,
                    sim,
                    every,
                    clock,
                    shutdown.clone(),
                ));
            }
            (Protocol::Osmand, _, Some(addr)) => {
                tokio::spawn(drive_osmand(
                    local(addr),
                    token,
                    sim,
                    every,
                    clock,
                    shutdown.clone(),
                ));
            }
            _ => {}
        }
    }
    tracing::info!(
        vehicles = vehicles.len(),
        "simulated fleet driving around Nairobi"
    );
}

async fn ensure_device(
    state: &AppState,
    imei: &str,
    protocol: Protocol,
    vehicle: Uuid,
    token: &str,
) -> anyhow::Result<()> {
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    match store::active_device_by_imei(&deps.db, imei).await? {
        Some(d) => store::set_token_hash(&mut tx, d.id, &crate::token::hash(token)).await?,
        None => {
            store::insert_device(
                &mut tx,
                &store::NewDevice {
                    id: miliki_platform::id::new_id(),
                    imei,
                    protocol,
                    vehicle_id: vehicle,
                    sim_phone: None,
                    model: Some("simulator"),
                    token_hash: Some(crate::token::hash(token)),
                    created_by: Uuid::nil(),
                },
                deps.clock.now(),
            )
            .await?
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulator_moves_parks_and_speeds() {
        let mut s = Sim::new(0, true);
        let fixes: Vec<Fix> = (0..5000).map(|_| s.step(5.0)).collect();
        assert!(fixes.iter().any(|f| f.speed_kmh > 90.0));
        assert!(fixes.iter().any(|f| !f.ignition && f.speed_kmh == 0.0));
        assert!(fixes
            .iter()
            .all(|f| (-1.4..-1.1).contains(&f.lat) && (36.7..36.95).contains(&f.lon)));
        assert!(luhn_ok(&imei(3)));
    }
}

//! SQL. Ids are text, instants are microseconds, and every statement runs
//! unchanged on SQLite and PostgreSQL.

use chrono::{DateTime, Utc};
use miliki_platform::clock::to_micros;
use miliki_platform::db::{Db, RowExt, Tx};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};
use uuid::Uuid;

use crate::domain::geo::Shape;
use crate::domain::position::Position;
use crate::domain::risk::{Finding, VehicleRisk};
use crate::domain::{CommandAction, CommandSource, CommandStatus, DeviceStatus, Protocol};

// ---------------------------------------------------------------- devices

#[derive(Debug, Clone)]
pub struct DeviceRecord {
    pub id: Uuid,
    pub imei: String,
    pub protocol: Protocol,
    pub vehicle_id: Uuid,
    pub sim_phone: Option<String>,
    pub model: Option<String>,
    pub status: DeviceStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub decommissioned_at: Option<DateTime<Utc>>,
    pub decommission_reason: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

const DEVICE_COLUMNS: &str =
    "id, imei, protocol, vehicle_id, sim_phone, model, status, created_at, \
    updated_at, decommissioned_at, decommission_reason, last_seen_at";

fn device(row: &AnyRow) -> Result<DeviceRecord, sqlx::Error> {
    Ok(DeviceRecord {
        id: row.uuid("id")?,
        imei: row.try_get("imei")?,
        protocol: row.parsed("protocol")?,
        vehicle_id: row.uuid("vehicle_id")?,
        sim_phone: row.try_get("sim_phone")?,
        model: row.try_get("model")?,
        status: row.parsed("status")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        decommissioned_at: row.opt_time("decommissioned_at")?,
        decommission_reason: row.try_get("decommission_reason")?,
        last_seen_at: row.opt_time("last_seen_at")?,
    })
}

pub struct NewDevice<'a> {
    pub id: Uuid,
    pub imei: &'a str,
    pub protocol: Protocol,
    pub vehicle_id: Uuid,
    pub sim_phone: Option<&'a str>,
    pub model: Option<&'a str>,
    pub token_hash: Option<String>,
    pub created_by: Uuid,
}

pub async fn insert_device(
    tx: &mut Tx,
    d: &NewDevice<'_>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO devices (id, imei, protocol, vehicle_id, sim_phone, model, token_hash, status, \
         created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $9)",
    )
    .bind(d.id.to_string())
    .bind(d.imei)
    .bind(d.protocol.as_str())
    .bind(d.vehicle_id.to_string())
    .bind(d.sim_phone)
    .bind(d.model)
    .bind(d.token_hash.clone())
    .bind(d.created_by.to_string())
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

pub async fn find_device<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    id: Uuid,
) -> Result<Option<DeviceRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(device)
    .transpose()
}

/// The active device with this IMEI.
pub async fn active_device_by_imei(
    db: &Db,
    imei: &str,
) -> Result<Option<DeviceRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE imei = $1 AND status = 'active'"
    ))
    .bind(imei)
    .fetch_optional(db.reader())
    .await?
    .as_ref()
    .map(device)
    .transpose()
}

pub async fn active_device_by_token(
    db: &Db,
    token_hash: &str,
) -> Result<Option<DeviceRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = $1 AND status = 'active'"
    ))
    .bind(token_hash)
    .fetch_optional(db.reader())
    .await?
    .as_ref()
    .map(device)
    .transpose()
}

/// Who may see what: `None` is everything (admins).
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    All,
    /// Vehicles held by this customer.
    Customer(Uuid),
    /// Vehicles held by this agent's customers.
    Agent(Uuid),
}

impl Scope {
    /// A clause over a `vehicle_id` column, with the scope's one value as `?`.
    fn clause(&self, column: &str) -> Option<(String, String)> {
        match self {
            Scope::All => None,
            Scope::Customer(c) => Some((
                format!("{column} IN (SELECT vehicle_id FROM vehicles WHERE customer_id = ?)"),
                c.to_string(),
            )),
            Scope::Agent(a) => Some((
                format!(
                    "{column} IN (SELECT v.vehicle_id FROM vehicles v JOIN customers c \
                     ON c.customer_id = v.customer_id WHERE c.agent_id = ?)"
                ),
                a.to_string(),
            )),
        }
    }
}

pub struct DeviceFilter {
    pub vehicle_id: Option<Uuid>,
    pub status: Option<DeviceStatus>,
    pub after: Option<Uuid>,
    pub limit: u32,
}

pub async fn list_devices(
    db: &Db,
    scope: Scope,
    f: &DeviceFilter,
) -> Result<Vec<DeviceRecord>, sqlx::Error> {
    let mut q =
        miliki_platform::db::FilteredQuery::new(&format!("SELECT {DEVICE_COLUMNS} FROM devices"));
    if let Some((clause, v)) = scope.clause("vehicle_id") {
        q.and(&clause, v);
    }
    if let Some(v) = f.vehicle_id {
        q.and("vehicle_id = ?", v.to_string());
    }
    if let Some(s) = f.status {
        q.and("status = ?", s.as_str());
    }
    if let Some(a) = f.after {
        q.and("id > ?", a.to_string());
    }
    q.push(&format!(" ORDER BY id LIMIT {}", f.limit + 1));
    q.fetch_all(db.reader()).await?.iter().map(device).collect()
}

pub async fn rebind_device(
    tx: &mut Tx,
    id: Uuid,
    vehicle_id: Option<Uuid>,
    sim_phone: Option<Option<&str>>,
    model: Option<Option<&str>>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let current = find_device(&mut **tx, id).await?;
    let Some(current) = current else {
        return Ok(false);
    };
    let vehicle = vehicle_id.unwrap_or(current.vehicle_id);
    let sim = sim_phone
        .map(|s| s.map(str::to_owned))
        .unwrap_or(current.sim_phone);
    let model = model.map(|s| s.map(str::to_owned)).unwrap_or(current.model);
    sqlx::query(
        "UPDATE devices SET vehicle_id = $2, sim_phone = $3, model = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(vehicle.to_string())
    .bind(sim)
    .bind(model)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Decommissions an active device; false if it was not active.
pub async fn decommission(
    tx: &mut Tx,
    id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE devices SET status = 'decommissioned', decommissioned_at = $2, decommission_reason = $3, \
         updated_at = $2, token_hash = NULL WHERE id = $1 AND status = 'active'",
    )
    .bind(id.to_string())
    .bind(to_micros(now))
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn active_devices_of_vehicle(
    tx: &mut Tx,
    vehicle: Uuid,
) -> Result<Vec<DeviceRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE vehicle_id = $1 AND status = 'active' ORDER BY id"
    ))
    .bind(vehicle.to_string())
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(device)
    .collect()
}

// ---------------------------------------------------------------- positions

/// One position ready to store.
pub struct PositionRow<'a> {
    pub device_id: Uuid,
    pub vehicle_id: Uuid,
    pub p: &'a Position,
}

/// The rest of a position, as stored in `facts`.
#[derive(serde::Serialize)]
struct Facts<'a> {
    movement: Option<bool>,
    battery_pct: Option<f64>,
    alarms: &'a crate::domain::position::Alarms,
    coolant_temp_c: Option<f64>,
    dtc_count: Option<i64>,
    engine_rpm: Option<i64>,
    io: &'a serde_json::Map<String, serde_json::Value>,
}

fn facts(p: &Position) -> String {
    serde_json::to_string(&Facts {
        movement: p.movement,
        battery_pct: p.battery_pct,
        alarms: &p.alarms,
        coolant_temp_c: p.coolant_temp_c,
        dtc_count: p.dtc_count,
        engine_rpm: p.engine_rpm,
        io: &p.io,
    })
    .unwrap_or_default()
}

const POSITION_COLUMNS: &str =
    "device_id, at, vehicle_id, received_at, lat, lon, speed_kmh, heading, \
    altitude, satellites, ignition, odometer_m, ext_voltage_mv, battery_mv, facts";

/// Rows per multi-row statement. SQLite (through sqlx) binds parameters in
/// time that grows faster than their number (measured: 100 µs a row at 400
/// rows a statement, 11 µs at 20), so it gets short statements; PostgreSQL long ones.
pub fn rows_per_statement(db: &Db) -> usize {
    match db.backend() {
        miliki_platform::db::Backend::Sqlite => 20,
        miliki_platform::db::Backend::Postgres => 400,
    }
}

/// Stores positions with multi-row inserts of `per_statement` rows; a
/// (device, time) already stored is skipped. Returns how many rows were new.
pub async fn insert_positions(
    tx: &mut Tx,
    rows: &[PositionRow<'_>],
    now: DateTime<Utc>,
    per_statement: usize,
) -> Result<u64, sqlx::Error> {
    let received = to_micros(now);
    let mut inserted = 0;
    // 15 columns × 400 rows stays under every engine's bound-parameter limit.
    for chunk in rows.chunks(per_statement.clamp(1, 400)) {
        let mut sql = format!("INSERT INTO positions ({POSITION_COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let b = i * 15;
            sql.push('(');
            for c in 1..=15 {
                if c > 1 {
                    sql.push(',');
                }
                sql.push('$');
                sql.push_str(&(b + c).to_string());
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (device_id, at) DO NOTHING");
        let mut q = sqlx::query(&sql);
        for r in chunk {
            let p = r.p;
            q = q
                .bind(r.device_id.to_string())
                .bind(to_micros(p.at))
                .bind(r.vehicle_id.to_string())
                .bind(received)
                .bind(p.lat)
                .bind(p.lon)
                .bind(p.speed_kmh)
                .bind(p.heading)
                .bind(p.altitude)
                .bind(p.satellites)
                .bind(p.ignition.map(i64::from))
                .bind(p.odometer_m)
                .bind(p.ext_voltage_mv)
                .bind(p.battery_mv)
                .bind(facts(p));
        }
        inserted += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}

fn position(row: &AnyRow) -> Result<Position, sqlx::Error> {
    let facts: String = row.try_get("facts")?;
    let f: serde_json::Value = serde_json::from_str(&facts).unwrap_or_default();
    Ok(Position {
        at: row.time("at")?,
        lat: row.try_get("lat")?,
        lon: row.try_get("lon")?,
        speed_kmh: row.try_get("speed_kmh")?,
        heading: row.try_get("heading")?,
        altitude: row.try_get("altitude")?,
        satellites: row.try_get("satellites")?,
        ignition: row.try_get::<Option<i64>, _>("ignition")?.map(|i| i != 0),
        odometer_m: row.try_get("odometer_m")?,
        ext_voltage_mv: row.try_get("ext_voltage_mv")?,
        battery_mv: row.try_get("battery_mv")?,
        movement: f["movement"].as_bool(),
        battery_pct: f["battery_pct"].as_f64(),
        alarms: serde_json::from_value(f["alarms"].clone()).unwrap_or_default(),
        coolant_temp_c: f["coolant_temp_c"].as_f64(),
        dtc_count: f["dtc_count"].as_i64(),
        engine_rpm: f["engine_rpm"].as_i64(),
        io: f["io"].as_object().cloned().unwrap_or_default(),
    })
}

/// A vehicle's positions in `[from, to)`, oldest first, at most `limit`.
pub async fn positions(
    db: &Db,
    vehicle: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, Position)>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {POSITION_COLUMNS} FROM positions WHERE vehicle_id = $1 AND at >= $2 AND at < $3 \
         ORDER BY at, device_id LIMIT $4"
    ))
    .bind(vehicle.to_string())
    .bind(to_micros(from))
    .bind(to_micros(to))
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| Ok((r.uuid("device_id")?, position(r)?)))
        .collect()
}

/// The newest stored position of a vehicle and what the latest table knows about it.
#[derive(Debug, Clone)]
pub struct Latest {
    pub device_id: Uuid,
    pub position: Position,
    pub parked_since: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

pub async fn latest<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    vehicle: Uuid,
) -> Result<Option<Latest>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT device_id, position, parked_since, received_at FROM vehicle_latest WHERE vehicle_id = $1",
    )
    .bind(vehicle.to_string())
    .fetch_optional(ex)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get("position")?;
    let position = serde_json::from_str(&text)
        .map_err(|e| sqlx::Error::Decode(format!("stored position: {e}").into()))?;
    Ok(Some(Latest {
        device_id: row.uuid("device_id")?,
        position,
        parked_since: row.opt_time("parked_since")?,
        received_at: row.time("received_at")?,
    }))
}

/// One vehicle's newest position of a batch.
pub struct LatestRow<'a> {
    pub vehicle_id: Uuid,
    pub device_id: Uuid,
    pub p: &'a Position,
    pub parked_since: Option<DateTime<Utc>>,
}

/// Moves vehicles' latest positions forward, many per statement; an older
/// position changes nothing.
pub async fn upsert_latest(
    tx: &mut Tx,
    rows: &[LatestRow<'_>],
    now: DateTime<Utc>,
    per_statement: usize,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(per_statement.clamp(1, 500)) {
        let mut sql = String::from(
            "INSERT INTO vehicle_latest (vehicle_id, device_id, at, position, parked_since, received_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 6;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            ));
        }
        sql.push_str(
            " ON CONFLICT (vehicle_id) DO UPDATE SET device_id = excluded.device_id, at = excluded.at, \
             position = excluded.position, parked_since = excluded.parked_since, received_at = excluded.received_at \
             WHERE vehicle_latest.at < excluded.at",
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.vehicle_id.to_string())
                .bind(r.device_id.to_string())
                .bind(to_micros(r.p.at))
                .bind(serde_json::to_string(r.p).unwrap_or_default())
                .bind(r.parked_since.map(to_micros))
                .bind(to_micros(now));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records that devices reported now, many per statement.
pub async fn touch_devices(
    tx: &mut Tx,
    devices: &[Uuid],
    now: DateTime<Utc>,
    per_statement: usize,
) -> Result<(), sqlx::Error> {
    for chunk in devices.chunks((per_statement * 5).clamp(1, 500)) {
        let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE devices SET last_seen_at = $1 WHERE id IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(to_micros(now));
        for d in chunk {
            q = q.bind(d.to_string());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes positions older than `before`, a batch at a time.
pub async fn prune_positions(db: &Db, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM positions WHERE at < $1")
        .bind(to_micros(before))
        .execute(db.writer())
        .await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------- projections

pub async fn vehicle_type<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    vehicle: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    Ok(
        sqlx::query("SELECT vehicle_type FROM vehicles WHERE vehicle_id = $1")
            .bind(vehicle.to_string())
            .fetch_optional(ex)
            .await?
            .and_then(|r| {
                r.try_get::<Option<String>, _>("vehicle_type")
                    .ok()
                    .flatten()
            }),
    )
}

pub async fn set_vehicle_type(tx: &mut Tx, vehicle: Uuid, kind: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vehicles (vehicle_id, vehicle_type) VALUES ($1, $2) \
         ON CONFLICT (vehicle_id) DO UPDATE SET vehicle_type = $2",
    )
    .bind(vehicle.to_string())
    .bind(kind)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Records who holds a vehicle, unless a newer fact is already known.
pub async fn set_holder(
    tx: &mut Tx,
    vehicle: Uuid,
    customer: Option<Uuid>,
    contract: Option<Uuid>,
    as_of: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vehicles (vehicle_id, customer_id, contract_id, holder_as_of) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (vehicle_id) DO UPDATE SET customer_id = $2, contract_id = COALESCE($3, vehicles.contract_id), \
         holder_as_of = $4 WHERE vehicles.holder_as_of <= $4",
    )
    .bind(vehicle.to_string())
    .bind(customer.map(|c| c.to_string()))
    .bind(contract.map(|c| c.to_string()))
    .bind(to_micros(as_of))
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

pub async fn set_agent(
    tx: &mut Tx,
    customer: Uuid,
    agent: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customers (customer_id, agent_id) VALUES ($1, $2) \
         ON CONFLICT (customer_id) DO UPDATE SET agent_id = $2",
    )
    .bind(customer.to_string())
    .bind(agent.map(|a| a.to_string()))
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// The customer holding a vehicle, and their agent.
pub async fn holder(db: &Db, vehicle: Uuid) -> Result<(Option<Uuid>, Option<Uuid>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT v.customer_id, c.agent_id FROM vehicles v LEFT JOIN customers c ON c.customer_id = v.customer_id \
         WHERE v.vehicle_id = $1",
    )
    .bind(vehicle.to_string())
    .fetch_optional(db.reader())
    .await?;
    match row {
        Some(r) => Ok((r.opt_uuid("customer_id")?, r.opt_uuid("agent_id")?)),
        None => Ok((None, None)),
    }
}

/// Vehicles a scope covers (for live feeds).
pub async fn visible_vehicles(db: &Db, scope: Scope) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut q = miliki_platform::db::FilteredQuery::new("SELECT vehicle_id FROM vehicles");
    if let Some((clause, v)) = scope.clause("vehicle_id") {
        q.and(&clause, v);
    }
    q.fetch_all(db.reader())
        .await?
        .iter()
        .map(|r| r.uuid("vehicle_id"))
        .collect()
}

// ---------------------------------------------------------------- risk

pub async fn load_risk(db: &Db, vehicle: Uuid) -> Result<VehicleRisk, sqlx::Error> {
    let row = sqlx::query("SELECT state FROM risk_state WHERE vehicle_id = $1")
        .bind(vehicle.to_string())
        .fetch_optional(db.writer())
        .await?;
    Ok(row
        .and_then(|r| r.try_get::<String, _>("state").ok())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

pub async fn save_risk(tx: &mut Tx, vehicle: Uuid, state: &VehicleRisk) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO risk_state (vehicle_id, state) VALUES ($1, $2) \
         ON CONFLICT (vehicle_id) DO UPDATE SET state = $2",
    )
    .bind(vehicle.to_string())
    .bind(serde_json::to_string(state).unwrap_or_default())
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

pub async fn insert_risk(
    tx: &mut Tx,
    id: Uuid,
    vehicle: Uuid,
    device: Uuid,
    f: &Finding,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO risk_events (id, vehicle_id, device_id, kind, severity, at, lat, lon, details, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.to_string())
    .bind(vehicle.to_string())
    .bind(device.to_string())
    .bind(f.kind.as_str())
    .bind(f.severity.as_str())
    .bind(to_micros(f.at))
    .bind(f.lat)
    .bind(f.lon)
    .bind(f.details.to_string())
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

#[derive(Debug, Clone)]
pub struct RiskRecord {
    pub id: Uuid,
    pub vehicle_id: Uuid,
    pub device_id: Uuid,
    pub kind: String,
    pub severity: String,
    pub at: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    pub details: serde_json::Value,
    pub acknowledged_by: Option<Uuid>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledge_note: Option<String>,
}

const RISK_COLUMNS: &str = "id, vehicle_id, device_id, kind, severity, at, lat, lon, details, \
    acknowledged_by, acknowledged_at, acknowledge_note";

fn risk(row: &AnyRow) -> Result<RiskRecord, sqlx::Error> {
    let details: String = row.try_get("details")?;
    Ok(RiskRecord {
        id: row.uuid("id")?,
        vehicle_id: row.uuid("vehicle_id")?,
        device_id: row.uuid("device_id")?,
        kind: row.try_get("kind")?,
        severity: row.try_get("severity")?,
        at: row.time("at")?,
        lat: row.try_get("lat")?,
        lon: row.try_get("lon")?,
        details: serde_json::from_str(&details).unwrap_or_default(),
        acknowledged_by: row.opt_uuid("acknowledged_by")?,
        acknowledged_at: row.opt_time("acknowledged_at")?,
        acknowledge_note: row.try_get("acknowledge_note")?,
    })
}

pub struct RiskFilter {
    pub vehicle_id: Option<Uuid>,
    pub kind: Option<String>,
    pub acknowledged: Option<bool>,
    /// Newest first: ids below this.
    pub before: Option<Uuid>,
    pub limit: u32,
}

pub async fn list_risks(
    db: &Db,
    scope: Scope,
    f: &RiskFilter,
) -> Result<Vec<RiskRecord>, sqlx::Error> {
    let mut q =
        miliki_platform::db::FilteredQuery::new(&format!("SELECT {RISK_COLUMNS} FROM risk_events"));
    if let Some((clause, v)) = scope.clause("vehicle_id") {
        q.and(&clause, v);
    }
    if let Some(v) = f.vehicle_id {
        q.and("vehicle_id = ?", v.to_string());
    }
    if let Some(k) = &f.kind {
        q.and("kind = ?", k.clone());
    }
    match f.acknowledged {
        Some(true) => {
            q.push(" AND acknowledged_at IS NOT NULL");
        }
        Some(false) => {
            q.push(" AND acknowledged_at IS NULL");
        }
        None => {}
    }
    if let Some(b) = f.before {
        q.and("id < ?", b.to_string());
    }
    q.push(&format!(" ORDER BY id DESC LIMIT {}", f.limit + 1));
    q.fetch_all(db.reader()).await?.iter().map(risk).collect()
}

pub async fn find_risk<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    id: Uuid,
) -> Result<Option<RiskRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {RISK_COLUMNS} FROM risk_events WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(risk)
    .transpose()
}

pub async fn acknowledge_risk(
    tx: &mut Tx,
    id: Uuid,
    by: Uuid,
    note: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE risk_events SET acknowledged_by = $2, acknowledged_at = $3, acknowledge_note = $4 \
         WHERE id = $1 AND acknowledged_at IS NULL",
    )
    .bind(id.to_string())
    .bind(by.to_string())
    .bind(to_micros(now))
    .bind(note)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Active devices that reported once but not since `before`, with their
/// vehicles and last report, that were not reported offline since.
pub async fn silent_devices(
    db: &Db,
    before: DateTime<Utc>,
) -> Result<Vec<(Uuid, Uuid, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query(
        "SELECT d.id, d.vehicle_id, d.last_seen_at FROM devices d WHERE d.status = 'active' \
         AND d.last_seen_at IS NOT NULL AND d.last_seen_at < $1 AND NOT EXISTS (SELECT 1 FROM risk_events r \
         WHERE r.device_id = d.id AND r.kind = 'device_offline' AND r.created_at >= d.last_seen_at) LIMIT 500",
    )
    .bind(to_micros(before))
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|r| Ok((r.uuid("id")?, r.uuid("vehicle_id")?, r.time("last_seen_at")?)))
    .collect()
}

// ---------------------------------------------------------------- geofences

#[derive(Debug, Clone)]
pub struct GeofenceRecord {
    pub id: Uuid,
    pub name: String,
    pub shape: Shape,
    pub vehicle_id: Option<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_geofence(tx: &mut Tx, g: &GeofenceRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO geofences (id, name, shape, vehicle_id, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(g.id.to_string())
    .bind(&g.name)
    .bind(serde_json::to_string(&g.shape).unwrap_or_default())
    .bind(g.vehicle_id.map(|v| v.to_string()))
    .bind(g.created_by.to_string())
    .bind(to_micros(g.created_at))
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

pub async fn geofences(db: &Db) -> Result<Vec<GeofenceRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, shape, vehicle_id, created_by, created_at FROM geofences WHERE deleted_at IS NULL ORDER BY id",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            let shape: String = r.try_get("shape")?;
            Ok(GeofenceRecord {
                id: r.uuid("id")?,
                name: r.try_get("name")?,
                shape: serde_json::from_str(&shape)
                    .map_err(|e| sqlx::Error::Decode(format!("geofence shape: {e}").into()))?,
                vehicle_id: r.opt_uuid("vehicle_id")?,
                created_by: r.uuid("created_by")?,
                created_at: r.time("created_at")?,
            })
        })
        .collect()
}

pub async fn delete_geofence(
    tx: &mut Tx,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("UPDATE geofences SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
            .bind(id.to_string())
            .bind(to_micros(now))
            .execute(&mut **tx)
            .await?;
    Ok(r.rows_affected() == 1)
}

// ---------------------------------------------------------------- commands

#[derive(Debug, Clone)]
pub struct CommandRecord {
    pub id: Uuid,
    pub vehicle_id: Uuid,
    pub device_id: Uuid,
    pub action: CommandAction,
    pub reason: String,
    pub source: CommandSource,
    pub status: CommandStatus,
    pub contract_id: Option<Uuid>,
    pub requested_by: Option<Uuid>,
    pub requested_at: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub attempts: i64,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub response: Option<String>,
    pub wait_note: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const COMMAND_COLUMNS: &str = "id, vehicle_id, device_id, action, reason, source, status, contract_id, \
    requested_by, requested_at, not_before, attempts, last_sent_at, acknowledged_at, response, wait_note, updated_at";

fn command(row: &AnyRow) -> Result<CommandRecord, sqlx::Error> {
    Ok(CommandRecord {
        id: row.uuid("id")?,
        vehicle_id: row.uuid("vehicle_id")?,
        device_id: row.uuid("device_id")?,
        action: row.parsed("action")?,
        reason: row.try_get("reason")?,
        source: row.parsed("source")?,
        status: row.parsed("status")?,
        contract_id: row.opt_uuid("contract_id")?,
        requested_by: row.opt_uuid("requested_by")?,
        requested_at: row.time("requested_at")?,
        not_before: row.time("not_before")?,
        attempts: row.try_get("attempts")?,
        last_sent_at: row.opt_time("last_sent_at")?,
        acknowledged_at: row.opt_time("acknowledged_at")?,
        response: row.try_get("response")?,
        wait_note: row.try_get("wait_note")?,
        updated_at: row.time("updated_at")?,
    })
}

pub async fn insert_command(tx: &mut Tx, c: &CommandRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO commands (id, vehicle_id, device_id, action, reason, source, status, contract_id, \
         requested_by, requested_at, not_before, attempts, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $10)",
    )
    .bind(c.id.to_string())
    .bind(c.vehicle_id.to_string())
    .bind(c.device_id.to_string())
    .bind(c.action.as_str())
    .bind(&c.reason)
    .bind(c.source.as_str())
    .bind(c.status.as_str())
    .bind(c.contract_id.map(|i| i.to_string()))
    .bind(c.requested_by.map(|i| i.to_string()))
    .bind(to_micros(c.requested_at))
    .bind(to_micros(c.not_before))
    .execute(&mut **tx)
    .await?;
    add_step(
        tx,
        c.id,
        c.status,
        c.requested_at,
        c.requested_by,
        &c.reason,
    )
    .await
}

pub async fn add_step(
    tx: &mut Tx,
    command: Uuid,
    status: CommandStatus,
    at: DateTime<Utc>,
    actor: Option<Uuid>,
    note: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO command_steps (id, command_id, status, at, actor_id, note) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(miliki_platform::id::new_id().to_string())
        .bind(command.to_string())
        .bind(status.as_str())
        .bind(to_micros(at))
        .bind(actor.map(|a| a.to_string()))
        .bind(note)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

pub async fn find_command<'e, E: Executor<'e, Database = Any>>(
    ex: E,
    id: Uuid,
) -> Result<Option<CommandRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COMMAND_COLUMNS} FROM commands WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(command)
    .transpose()
}

/// Commands of a vehicle, newest first.
pub async fn commands_of(
    db: &Db,
    scope: Scope,
    vehicle: Option<Uuid>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<CommandRecord>, sqlx::Error> {
    let mut q =
        miliki_platform::db::FilteredQuery::new(&format!("SELECT {COMMAND_COLUMNS} FROM commands"));
    if let Some((clause, v)) = scope.clause("vehicle_id") {
        q.and(&clause, v);
    }
    if let Some(v) = vehicle {
        q.and("vehicle_id = ?", v.to_string());
    }
    if let Some(b) = before {
        q.and("id < ?", b.to_string());
    }
    q.push(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    q.fetch_all(db.reader())
        .await?
        .iter()
        .map(command)
        .collect()
}

/// The steps of a command, oldest first: (status, at, actor, note).
pub async fn steps(
    db: &Db,
    command: Uuid,
) -> Result<Vec<(String, DateTime<Utc>, Option<Uuid>, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT status, at, actor_id, note FROM command_steps WHERE command_id = $1 ORDER BY id",
    )
    .bind(command.to_string())
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get("status")?,
            r.time("at")?,
            r.opt_uuid("actor_id")?,
            r.try_get("note")?,
        ))
    })
    .collect()
}

/// Open commands of a vehicle, oldest first.
pub async fn open_commands(tx: &mut Tx, vehicle: Uuid) -> Result<Vec<CommandRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COMMAND_COLUMNS} FROM commands WHERE vehicle_id = $1 AND status IN ('queued', 'sent') ORDER BY id"
    ))
    .bind(vehicle.to_string())
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(command)
    .collect()
}

/// Open commands due by `now`, claimed for this replica where the engine can.
pub async fn due_commands(
    tx: &mut Tx,
    db: &Db,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<CommandRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COMMAND_COLUMNS} FROM commands WHERE status IN ('queued', 'sent') AND not_before <= $1 \
         ORDER BY id LIMIT $2{}",
        db.skip_locked()
    ))
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(command)
    .collect()
}

/// The last acknowledged command of a vehicle: whether it is immobilized now.
pub async fn last_acknowledged(
    tx: &mut Tx,
    vehicle: Uuid,
) -> Result<Option<CommandRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COMMAND_COLUMNS} FROM commands WHERE vehicle_id = $1 AND status = 'acknowledged' \
         ORDER BY acknowledged_at DESC, id DESC LIMIT 1"
    ))
    .bind(vehicle.to_string())
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(command)
    .transpose()
}

/// Moves a command from `from` to `to` (refusing moves the state machine
/// forbids, and moves from a status it is no longer in), recording the step.
#[allow(clippy::too_many_arguments)]
pub async fn move_command(
    tx: &mut Tx,
    id: Uuid,
    from: CommandStatus,
    to: CommandStatus,
    now: DateTime<Utc>,
    actor: Option<Uuid>,
    note: &str,
    response: Option<&str>,
) -> Result<bool, sqlx::Error> {
    if !from.can_move_to(to) {
        return Ok(false);
    }
    let sent = to == CommandStatus::Sent;
    let r = sqlx::query(
        "UPDATE commands SET status = $3, updated_at = $4, \
         attempts = attempts + $5, last_sent_at = CASE WHEN $5 = 1 THEN $4 ELSE last_sent_at END, \
         acknowledged_at = CASE WHEN $3 = 'acknowledged' THEN $4 ELSE acknowledged_at END, \
         response = COALESCE($6, response), wait_note = NULL WHERE id = $1 AND status = $2",
    )
    .bind(id.to_string())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(to_micros(now))
    .bind(i64::from(sent))
    .bind(response)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    add_step(tx, id, to, now, actor, note).await?;
    Ok(true)
}

/// Why a queued command is still waiting (shown to staff; not a step).
pub async fn set_wait_note(tx: &mut Tx, id: Uuid, note: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE commands SET wait_note = $2 WHERE id = $1 AND (wait_note IS NULL OR wait_note <> $2)")
        .bind(id.to_string())
        .bind(note)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// The oldest sent command of a device (Codec 12 and GT06 replies carry no id).
pub async fn oldest_sent(tx: &mut Tx, device: Uuid) -> Result<Option<CommandRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COMMAND_COLUMNS} FROM commands WHERE device_id = $1 AND status = 'sent' ORDER BY id LIMIT 1"
    ))
    .bind(device.to_string())
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(command)
    .transpose()
}

// ---------------------------------------------------------------- policy

#[derive(Debug, Clone)]
pub struct PolicyRecord {
    pub contract_id: Uuid,
    pub vehicle_id: Uuid,
    pub customer_id: Uuid,
    pub days_past_due: i64,
    pub paused: bool,
    pub override_by: Option<Uuid>,
    pub override_reason: Option<String>,
    pub as_of: i64,
}

pub async fn policy(tx: &mut Tx, contract: Uuid) -> Result<Option<PolicyRecord>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT contract_id, vehicle_id, customer_id, days_past_due, paused, override_by, override_reason, as_of \
         FROM contract_policy WHERE contract_id = $1",
    )
    .bind(contract.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(PolicyRecord {
            contract_id: r.uuid("contract_id")?,
            vehicle_id: r.uuid("vehicle_id")?,
            customer_id: r.uuid("customer_id")?,
            days_past_due: r.try_get("days_past_due")?,
            paused: r.try_get::<i64, _>("paused")? != 0,
            override_by: r.opt_uuid("override_by")?,
            override_reason: r.try_get("override_reason")?,
            as_of: r.try_get("as_of")?,
        })
    })
    .transpose()
}

pub async fn policy_for_vehicle(tx: &mut Tx, vehicle: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT contract_id FROM contract_policy WHERE vehicle_id = $1 ORDER BY as_of DESC LIMIT 1",
    )
    .bind(vehicle.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| r.uuid("contract_id")).transpose()
}

pub async fn save_policy(tx: &mut Tx, p: &PolicyRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contract_policy (contract_id, vehicle_id, customer_id, days_past_due, paused, override_by, \
         override_reason, as_of) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (contract_id) DO UPDATE SET \
         vehicle_id = $2, customer_id = $3, days_past_due = $4, paused = $5, override_by = $6, override_reason = $7, as_of = $8",
    )
    .bind(p.contract_id.to_string())
    .bind(p.vehicle_id.to_string())
    .bind(p.customer_id.to_string())
    .bind(p.days_past_due)
    .bind(i64::from(p.paused))
    .bind(p.override_by.map(|u| u.to_string()))
    .bind(p.override_reason.clone())
    .bind(p.as_of)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Replaces a device's token (the simulated fleet gets a fresh one each start).
pub async fn set_token_hash(tx: &mut Tx, id: Uuid, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE devices SET token_hash = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(hash)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

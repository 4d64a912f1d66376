//! The vehicles service's SQL for single rows: vehicles, their lifecycle,
//! photos and reservations. Search lives in [`crate::search`].

use chrono::{DateTime, Utc};
use miliki_platform::clock::to_micros;
use miliki_platform::db::{is_unique_violation, Backend, Db, RowExt, Tx};
use miliki_platform::money::Currency;
use miliki_platform::ApiError;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{
    self, Condition, Fuel, GeoPoint, NewVehicle, Specs, Status, Transmission, VehicleType,
};

/// A vehicle as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleRecord {
    pub id: Uuid,
    pub vehicle_type: VehicleType,
    pub make: String,
    pub model: String,
    pub year: i32,
    pub colour: String,
    pub vin: String,
    pub registration: String,
    pub mileage_km: i64,
    pub condition: Condition,
    pub fuel: Fuel,
    pub branch: String,
    pub location: GeoPoint,
    pub price_minor: i64,
    pub currency: Currency,
    pub cost_price_minor: Option<i64>,
    pub notes: Option<String>,
    pub description: String,
    pub specs: Specs,
    pub status: Status,
    pub held_by: Option<Uuid>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const COLUMNS: &str = "id, vehicle_type, make, model, year, colour, vin, registration, \
    mileage_km, condition, fuel, branch, latitude, longitude, price_minor, currency, \
    cost_price_minor, notes, description, engine_cc, seats, transmission, cargo_volume_litres, \
    payload_kg, axles, status, held_by, version, created_at, updated_at";

impl VehicleRecord {
    pub fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let transmission: Option<String> = row.try_get("transmission")?;
        Ok(Self {
            id: row.uuid("id")?,
            vehicle_type: row.parsed("vehicle_type")?,
            make: row.try_get("make")?,
            model: row.try_get("model")?,
            year: row.try_get::<i64, _>("year")? as i32,
            colour: row.try_get("colour")?,
            vin: row.try_get("vin")?,
            registration: row.try_get("registration")?,
            mileage_km: row.try_get("mileage_km")?,
            condition: row.parsed("condition")?,
            fuel: row.parsed("fuel")?,
            branch: row.try_get("branch")?,
            location: GeoPoint {
                latitude: row.try_get("latitude")?,
                longitude: row.try_get("longitude")?,
            },
            price_minor: row.try_get("price_minor")?,
            currency: row
                .try_get::<String, _>("currency")?
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            cost_price_minor: row.try_get("cost_price_minor")?,
            notes: row.try_get("notes")?,
            description: row.try_get("description")?,
            specs: Specs {
                engine_cc: row.try_get("engine_cc")?,
                seats: row.try_get("seats")?,
                transmission: transmission
                    .map(|t| t.parse::<Transmission>())
                    .transpose()
                    .map_err(|e| sqlx::Error::Decode(e.into()))?,
                cargo_volume_litres: row.try_get("cargo_volume_litres")?,
                payload_kg: row.try_get("payload_kg")?,
                axles: row.try_get("axles")?,
            },
            status: row.parsed("status")?,
            held_by: row.opt_uuid("held_by")?,
            version: row.try_get("version")?,
            created_at: row.time("created_at")?,
            updated_at: row.time("updated_at")?,
        })
    }

    /// The record's facts as a [`NewVehicle`], the shape validation works on.
    pub fn facts(&self) -> Result<NewVehicle, String> {
        Ok(NewVehicle {
            vehicle_type: self.vehicle_type,
            make: self.make.clone(),
            model: self.model.clone(),
            year: self.year,
            colour: self.colour.clone(),
            vin: domain::Vin::parse(&self.vin)?,
            registration: domain::Registration::parse(&self.registration)?,
            mileage_km: self.mileage_km,
            condition: self.condition,
            fuel: self.fuel,
            branch: self.branch.clone(),
            location: self.location,
            price_minor: self.price_minor,
            currency: self.currency,
            cost_price_minor: self.cost_price_minor,
            notes: self.notes.clone(),
            description: self.description.clone(),
            specs: self.specs,
        })
    }
}

/// `FOR UPDATE` where the engine has row locks; SQLite's single writer needs none.
pub fn for_update(db: &Db) -> &'static str {
    match db.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

/// Which unique fact a violation was about, for the 409's wording.
fn duplicate(err: &sqlx::Error) -> Option<ApiError> {
    if !is_unique_violation(err) {
        return None;
    }
    let text = err.to_string();
    let what = if text.contains("registration") {
        "registration"
    } else {
        "vin"
    };
    Some(ApiError::Conflict(format!(
        "a vehicle with this {what} is already in the inventory"
    )))
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds the facts an INSERT and an UPDATE both write, in the order both
/// statements list them: make … search_text, then the time of the write.
fn bind_facts<'q>(query: AnyQuery<'q>, v: &'q NewVehicle, now: DateTime<Utc>) -> AnyQuery<'q> {
    query
        .bind(&v.make)
        .bind(v.make.to_lowercase())
        .bind(&v.model)
        .bind(v.model.to_lowercase())
        .bind(i64::from(v.year))
        .bind(&v.colour)
        .bind(v.vin.as_str())
        .bind(v.registration.as_str())
        .bind(v.registration.key())
        .bind(v.mileage_km)
        .bind(v.condition.as_str())
        .bind(v.fuel.as_str())
        .bind(&v.branch)
        .bind(v.location.latitude)
        .bind(v.location.longitude)
        .bind(v.price_minor)
        .bind(v.currency.code())
        .bind(v.cost_price_minor)
        .bind(v.notes.as_deref())
        .bind(&v.description)
        .bind(v.specs.engine_cc)
        .bind(v.specs.seats)
        .bind(v.specs.transmission.map(|t| t.as_str()))
        .bind(v.specs.cargo_volume_litres)
        .bind(v.specs.payload_kg)
        .bind(v.specs.axles)
        .bind(search_text(v))
        .bind(to_micros(now))
}

/// Inserts a vehicle (status `available`, version 1) and its search terms.
pub async fn insert_vehicle(
    tx: &mut Tx,
    id: Uuid,
    v: &NewVehicle,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let query = sqlx::query(
        "INSERT INTO vehicles (id, vehicle_type, make, make_key, model, model_key, year, colour, \
         vin, registration, registration_key, mileage_km, condition, fuel, branch, latitude, \
         longitude, price_minor, currency, cost_price_minor, notes, description, engine_cc, seats, \
         transmission, cargo_volume_litres, payload_kg, axles, status, held_by, search_text, \
         version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, \
         'available', NULL, $29, 1, $30, $30)",
    )
    .bind(id.to_string())
    .bind(v.vehicle_type.as_str());
    let result = bind_facts(query, v, now).execute(&mut **tx).await;
    if let Err(e) = result {
        return Err(duplicate(&e).unwrap_or_else(|| e.into()));
    }
    insert_terms(tx, id, v).await?;
    record_change(tx, id, None).await?;
    Ok(())
}

/// The columns [`insert_vehicles`] writes: the 31 it binds, in the order it
/// binds them ([`bind_facts`] ends with the time, bound again for
/// `created_at`), then the two every new vehicle starts with.
const INSERT_COLUMNS: &str = "id, vehicle_type, make, make_key, model, model_key, year, colour, \
    vin, registration, registration_key, mileage_km, condition, fuel, branch, latitude, \
    longitude, price_minor, currency, cost_price_minor, notes, description, engine_cc, seats, \
    transmission, cargo_volume_litres, payload_kg, axles, search_text, updated_at, created_at, \
    status, version";
const INSERT_PARAMS: usize = 31;

/// Inserts many vehicles (status `available`, version 1) and their search
/// terms with multi-row statements inside `tx`: the bulk path of an import.
/// A VIN or plate already listed fails the whole call with a 409 (the
/// caller filters those out first).
pub async fn insert_vehicles(
    tx: &mut Tx,
    vehicles: &[(Uuid, &NewVehicle)],
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let backend = miliki_platform::db::backend_of(tx);
    // 31 parameters a row: 500 rows (15,500) stay under SQLite's 32,766 and PostgreSQL's 65,535.
    for chunk in vehicles.chunks(500) {
        let values = miliki_platform::db::values_list(backend, chunk.len(), INSERT_PARAMS)
            .replace(')', ", 'available', 1)");
        let sql = format!("INSERT INTO vehicles ({INSERT_COLUMNS}) VALUES {values}");
        let mut query = sqlx::query(&sql);
        for (id, v) in chunk {
            let head = query.bind(id.to_string()).bind(v.vehicle_type.as_str());
            query = bind_facts(head, v, now).bind(to_micros(now));
        }
        if let Err(e) = query.execute(&mut **tx).await {
            return Err(duplicate(&e).unwrap_or_else(|| e.into()));
        }
    }
    // About twenty words a vehicle: each row borrows its vehicle's id text.
    let ids: Vec<String> = vehicles.iter().map(|(id, _)| id.to_string()).collect();
    let terms: Vec<(String, usize)> = vehicles
        .iter()
        .enumerate()
        .flat_map(|(i, (_, v))| {
            domain::terms(&v.make, &v.model, &v.description)
                .into_iter()
                .map(move |t| (t, i))
        })
        .collect();
    for chunk in terms.chunks(2000) {
        let sql = format!(
            "INSERT INTO vehicle_terms (term, vehicle_id) VALUES {}",
            miliki_platform::db::values_list(backend, chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (term, i) in chunk {
            query = query.bind(term.as_str()).bind(ids[*i].as_str());
        }
        query.execute(&mut **tx).await?;
    }
    // Each new vehicle enters the change log the search index and the
    // availability stream follow, as `record_change` does for one.
    for chunk in ids.chunks(2000) {
        let sql = format!(
            "INSERT INTO vehicle_changes (id, vehicle_id) VALUES {}",
            miliki_platform::db::values_list(backend, chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query
                .bind(miliki_platform::id::new_id().to_string())
                .bind(id.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn search_text(v: &NewVehicle) -> String {
    format!("{} {} {}", v.make, v.model, v.description).to_lowercase()
}

async fn insert_terms(tx: &mut Tx, id: Uuid, v: &NewVehicle) -> Result<(), ApiError> {
    let terms = domain::terms(&v.make, &v.model, &v.description);
    if terms.is_empty() {
        return Ok(());
    }
    // One statement per vehicle: far fewer round trips than one per word.
    let mut sql = String::from("INSERT INTO vehicle_terms (term, vehicle_id) VALUES ");
    for i in 0..terms.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, $1)", i + 2));
    }
    let mut query = sqlx::query(&sql).bind(id.to_string());
    for t in &terms {
        query = query.bind(t);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Replaces a vehicle's facts if it is still at `expected_version`; false if it moved on.
pub async fn update_vehicle(
    tx: &mut Tx,
    id: Uuid,
    v: &NewVehicle,
    expected_version: i64,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let query = sqlx::query(
        "UPDATE vehicles SET make = $1, make_key = $2, model = $3, model_key = $4, year = $5, \
         colour = $6, vin = $7, registration = $8, registration_key = $9, mileage_km = $10, \
         condition = $11, fuel = $12, branch = $13, latitude = $14, longitude = $15, \
         price_minor = $16, currency = $17, cost_price_minor = $18, notes = $19, description = $20, \
         engine_cc = $21, seats = $22, transmission = $23, cargo_volume_litres = $24, \
         payload_kg = $25, axles = $26, search_text = $27, version = version + 1, updated_at = $28 \
         WHERE id = $29 AND version = $30",
    )
    ;
    let result = bind_facts(query, v, now)
        .bind(id.to_string())
        .bind(expected_version)
        .execute(&mut **tx)
        .await;
    let done = match result {
        Ok(r) => r.rows_affected() == 1,
        Err(e) => return Err(duplicate(&e).unwrap_or_else(|| e.into())),
    };
    if done {
        sqlx::query("DELETE FROM vehicle_terms WHERE vehicle_id = $1")
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
        insert_terms(tx, id, v).await?;
        record_change(tx, id, None).await?;
    }
    Ok(done)
}

pub async fn find<'e, E>(executor: E, id: Uuid) -> Result<Option<VehicleRecord>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(&format!("SELECT {COLUMNS} FROM vehicles WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(executor)
        .await?
        .map(|r| VehicleRecord::from_row(&r))
        .transpose()
}

/// Reads a vehicle inside `tx`, locking its row on PostgreSQL.
pub async fn find_locked(
    tx: &mut Tx,
    db: &Db,
    id: Uuid,
) -> Result<Option<VehicleRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM vehicles WHERE id = $1{}",
        for_update(db)
    ))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| VehicleRecord::from_row(&r))
    .transpose()
}

/// `(?, ?, …)` of `n` placeholders for an `IN`, in the engine's cheapest form.
fn in_list(tx: &Tx, n: usize) -> String {
    miliki_platform::db::values_list(miliki_platform::db::backend_of(tx), 1, n)
}

/// Which vehicle ids among `vins` are already in the inventory (for idempotent imports).
pub async fn existing_vins(tx: &mut Tx, vins: &[String]) -> Result<Vec<String>, sqlx::Error> {
    if vins.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT vin FROM vehicles WHERE vin IN {}",
        in_list(tx, vins.len())
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql);
    for v in vins {
        q = q.bind(v);
    }
    q.fetch_all(&mut **tx).await
}

/// The same for registrations, by their comparison key.
pub async fn existing_registrations(
    tx: &mut Tx,
    keys: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT registration_key FROM vehicles WHERE registration_key IN {}",
        in_list(tx, keys.len())
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql);
    for k in keys {
        q = q.bind(k);
    }
    q.fetch_all(&mut **tx).await
}

/// One lifecycle move as recorded.
#[derive(Debug, Clone)]
pub struct HistoryRecord {
    pub id: Uuid,
    pub vehicle_id: Uuid,
    pub from: Status,
    pub to: Status,
    pub actor_id: Option<Uuid>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl HistoryRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.uuid("id")?,
            vehicle_id: row.uuid("vehicle_id")?,
            from: row.parsed("from_status")?,
            to: row.parsed("to_status")?,
            actor_id: row.opt_uuid("actor_id")?,
            reason: row.try_get("reason")?,
            at: row.time("at")?,
        })
    }
}

/// Moves a vehicle from `from` to `to` (only if it is still at `from`),
/// records who and why, and bumps its version. Returns the history row, or
/// `None` when the vehicle was no longer at `from`.
#[allow(clippy::too_many_arguments)]
pub async fn set_status(
    tx: &mut Tx,
    vehicle: Uuid,
    from: Status,
    to: Status,
    held_by: Option<Uuid>,
    actor: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<HistoryRecord>, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE vehicles SET status = $1, held_by = $2, version = version + 1, updated_at = $3 \
         WHERE id = $4 AND status = $5",
    )
    .bind(to.as_str())
    .bind(held_by.map(|h| h.to_string()))
    .bind(to_micros(now))
    .bind(vehicle.to_string())
    .bind(from.as_str())
    .execute(&mut **tx)
    .await?;
    if moved.rows_affected() != 1 {
        return Ok(None);
    }
    let record = HistoryRecord {
        id: miliki_platform::id::new_id(),
        vehicle_id: vehicle,
        from,
        to,
        actor_id: actor,
        reason: reason.to_owned(),
        at: now,
    };
    sqlx::query(
        "INSERT INTO vehicle_status_history (id, vehicle_id, from_status, to_status, actor_id, \
         reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(record.id.to_string())
    .bind(vehicle.to_string())
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(actor.map(|a| a.to_string()))
    .bind(reason)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    record_change(tx, vehicle, Some(record.id)).await?;
    Ok(Some(record))
}

pub async fn history(db: &Db, vehicle: Uuid) -> Result<Vec<HistoryRecord>, sqlx::Error> {
    sqlx::query(
        "SELECT id, vehicle_id, from_status, to_status, actor_id, reason, at \
         FROM vehicle_status_history WHERE vehicle_id = $1 ORDER BY id",
    )
    .bind(vehicle.to_string())
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(HistoryRecord::from_row)
    .collect()
}

// ---------- the change log (migration 4) ----------

/// Logs, inside the writing transaction, that `vehicle` changed (a status
/// change names its history row). Every write of a vehicle row goes through
/// here, so the other replicas' search indexes and the availability stream see it.
pub async fn record_change(
    tx: &mut Tx,
    vehicle: Uuid,
    history: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO vehicle_changes (id, vehicle_id, history_id) VALUES ($1, $2, $3)")
        .bind(miliki_platform::id::new_id().to_string())
        .bind(vehicle.to_string())
        .bind(history.map(|h| h.to_string()))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Gives committed changes their positions, up to `limit` of them; returns
/// how many. Relays of several replicas take turns on the counter row, so
/// positions are handed out in one sequence and only to committed rows: a
/// reader that saw position N can never later find a new row below N.
pub async fn assign_positions(db: &Db, limit: i64) -> Result<u64, sqlx::Error> {
    let pending: Option<String> =
        sqlx::query_scalar("SELECT id FROM vehicle_changes WHERE position IS NULL LIMIT 1")
            .fetch_optional(db.writer())
            .await?;
    if pending.is_none() {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    // Writing the counter row first takes its lock (SQLite: the write lock).
    sqlx::query("UPDATE vehicle_change_counter SET last = last WHERE one = 1")
        .execute(&mut *tx)
        .await?;
    let last: i64 = sqlx::query_scalar("SELECT last FROM vehicle_change_counter WHERE one = 1")
        .fetch_one(&mut *tx)
        .await?;
    let assigned = sqlx::query(
        "UPDATE vehicle_changes SET position = $1 + s.rn FROM          (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS rn FROM vehicle_changes           WHERE position IS NULL ORDER BY id LIMIT $2) AS s          WHERE vehicle_changes.id = s.id",
    )
    .bind(last)
    .bind(limit)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("UPDATE vehicle_change_counter SET last = $1 WHERE one = 1")
        .bind(last + assigned as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(assigned)
}

/// The last position handed out.
pub async fn last_change_position(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT last FROM vehicle_change_counter WHERE one = 1")
        .fetch_one(db.reader())
        .await
}

/// One positioned change; `history` when it was a status change.
#[derive(Debug, Clone)]
pub struct Change {
    pub position: i64,
    pub vehicle_id: Uuid,
    pub history: Option<HistoryRecord>,
}

/// Changes after `after` (status changes only with `status_only`), oldest first.
pub async fn changes_since(
    db: &Db,
    after: i64,
    limit: i64,
    status_only: bool,
) -> Result<Vec<Change>, sqlx::Error> {
    let filter = if status_only {
        " AND c.history_id IS NOT NULL"
    } else {
        ""
    };
    let rows = sqlx::query(&format!(
        "SELECT c.position, c.vehicle_id AS changed, h.id, h.vehicle_id, h.from_status,          h.to_status, h.actor_id, h.reason, h.at FROM vehicle_changes c          LEFT JOIN vehicle_status_history h ON h.id = c.history_id          WHERE c.position > $1{filter} ORDER BY c.position LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            let history_id: Option<String> = r.try_get("id")?;
            Ok(Change {
                position: r.try_get("position")?,
                vehicle_id: r.uuid("changed")?,
                history: match history_id {
                    Some(_) => Some(HistoryRecord::from_row(r)?),
                    None => None,
                },
            })
        })
        .collect()
}

// ---------- photos ----------

#[derive(Debug, Clone)]
pub struct PhotoMeta {
    pub id: Uuid,
    pub content_type: String,
    pub size_bytes: i64,
    pub width: i64,
    pub height: i64,
}

pub async fn insert_photo(
    db: &Db,
    vehicle: Uuid,
    meta: &PhotoMeta,
    data: &[u8],
    thumbnail: &[u8],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vehicle_photos (id, vehicle_id, content_type, size_bytes, width, height, \
         data, thumbnail, created_at, display_order) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         (SELECT COALESCE(MAX(display_order), 0) + 1 FROM vehicle_photos WHERE vehicle_id = $2))",
    )
    .bind(meta.id.to_string())
    .bind(vehicle.to_string())
    .bind(&meta.content_type)
    .bind(meta.size_bytes)
    .bind(meta.width)
    .bind(meta.height)
    .bind(data)
    .bind(thumbnail)
    .bind(to_micros(now))
    .execute(db.writer())
    .await
    .map(|_| ())
}

pub async fn photos(db: &Db, vehicle: Uuid) -> Result<Vec<PhotoMeta>, sqlx::Error> {
    sqlx::query(
        "SELECT id, content_type, size_bytes, width, height FROM vehicle_photos \
         WHERE vehicle_id = $1 ORDER BY display_order, id",
    )
    .bind(vehicle.to_string())
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|r| {
        Ok(PhotoMeta {
            id: r.uuid("id")?,
            content_type: r.try_get("content_type")?,
            size_bytes: r.try_get("size_bytes")?,
            width: r.try_get("width")?,
            height: r.try_get("height")?,
        })
    })
    .collect()
}

/// Deletes one photo of a vehicle; false when the vehicle has no such photo.
pub async fn delete_photo(tx: &mut Tx, vehicle: Uuid, photo: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM vehicle_photos WHERE id = $1 AND vehicle_id = $2")
        .bind(photo.to_string())
        .bind(vehicle.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The ids of a vehicle's photos, in their order, inside `tx`.
pub async fn photo_ids(tx: &mut Tx, vehicle: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query("SELECT id FROM vehicle_photos WHERE vehicle_id = $1 ORDER BY display_order, id")
        .bind(vehicle.to_string())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.uuid("id"))
        .collect()
}

/// Gives a vehicle's photos the order of `ids` (all of them, each once; the caller checks).
pub async fn order_photos(tx: &mut Tx, vehicle: Uuid, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    for (i, id) in ids.iter().enumerate() {
        sqlx::query(
            "UPDATE vehicle_photos SET display_order = $1 WHERE id = $2 AND vehicle_id = $3",
        )
        .bind(i as i64 + 1)
        .bind(id.to_string())
        .bind(vehicle.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A photo's bytes (or its thumbnail's, always JPEG) and content type.
pub async fn photo_bytes(
    db: &Db,
    vehicle: Uuid,
    photo: Uuid,
    thumbnail: bool,
) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
    let column = if thumbnail { "thumbnail" } else { "data" };
    let row = sqlx::query(&format!(
        "SELECT content_type, {column} AS bytes FROM vehicle_photos WHERE id = $1 AND vehicle_id = $2"
    ))
    .bind(photo.to_string())
    .bind(vehicle.to_string())
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| {
        let content_type: String = if thumbnail {
            "image/jpeg".into()
        } else {
            r.try_get("content_type")?
        };
        Ok((content_type, r.try_get::<Vec<u8>, _>("bytes")?))
    })
    .transpose()
}

// ---------- reservations ----------

/// A reservation as stored.
#[derive(Debug, Clone)]
pub struct ReservationRecord {
    pub id: Uuid,
    pub vehicle_id: Uuid,
    pub customer_id: Uuid,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<Uuid>,
    pub end_reason: Option<String>,
    pub contract_id: Option<Uuid>,
}

const RESERVATION_COLUMNS: &str = "id, vehicle_id, customer_id, status, created_at, expires_at, \
    ended_at, ended_by, end_reason, contract_id";

impl ReservationRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.uuid("id")?,
            vehicle_id: row.uuid("vehicle_id")?,
            customer_id: row.uuid("customer_id")?,
            status: row.try_get("status")?,
            created_at: row.time("created_at")?,
            expires_at: row.time("expires_at")?,
            ended_at: row.opt_time("ended_at")?,
            ended_by: row.opt_uuid("ended_by")?,
            end_reason: row.try_get("end_reason")?,
            contract_id: row.opt_uuid("contract_id")?,
        })
    }
}

/// Inserts an active reservation; `Ok(false)` when the customer or vehicle
/// already has one (the partial unique indexes said no).
pub async fn insert_reservation(tx: &mut Tx, r: &ReservationRecord) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO reservations (id, vehicle_id, customer_id, status, created_at, expires_at) \
         VALUES ($1, $2, $3, 'active', $4, $5)",
    )
    .bind(r.id.to_string())
    .bind(r.vehicle_id.to_string())
    .bind(r.customer_id.to_string())
    .bind(to_micros(r.created_at))
    .bind(to_micros(r.expires_at))
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn find_reservation<'e, E>(
    executor: E,
    id: Uuid,
    lock: &str,
) -> Result<Option<ReservationRecord>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = $1{lock}"
    ))
    .bind(id.to_string())
    .fetch_optional(executor)
    .await?
    .map(|r| ReservationRecord::from_row(&r))
    .transpose()
}

/// The active reservation of a vehicle, if any.
pub async fn active_reservation_for_vehicle<'e, E>(
    executor: E,
    vehicle: Uuid,
) -> Result<Option<ReservationRecord>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE vehicle_id = $1 AND status = 'active'"
    ))
    .bind(vehicle.to_string())
    .fetch_optional(executor)
    .await?
    .map(|r| ReservationRecord::from_row(&r))
    .transpose()
}

/// Whose reservations a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationScope {
    All,
    Customer(Uuid),
    /// The customers an agent onboarded.
    AgentBook(Uuid),
}

pub async fn reservations_of(
    db: &Db,
    scope: ReservationScope,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<ReservationRecord>, sqlx::Error> {
    let mut sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE 1 = 1");
    match scope {
        ReservationScope::All => {}
        ReservationScope::Customer(_) => sql.push_str(" AND customer_id = $1"),
        ReservationScope::AgentBook(_) => sql.push_str(
            " AND customer_id IN (SELECT user_id FROM user_standing WHERE onboarded_by = $1)",
        ),
    }
    let mut n = usize::from(scope != ReservationScope::All);
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if before.is_some() {
        sql.push_str(&format!(" AND id < {}", next()));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
    let mut q = sqlx::query(&sql);
    if let ReservationScope::Customer(id) | ReservationScope::AgentBook(id) = scope {
        q = q.bind(id.to_string());
    }
    if let Some(b) = before {
        q = q.bind(b.to_string());
    }
    q.bind(i64::from(limit) + 1)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(ReservationRecord::from_row)
        .collect()
}

/// Ends an active reservation with `status`; false if it was no longer active.
pub async fn end_reservation(
    tx: &mut Tx,
    id: Uuid,
    status: &str,
    by: Option<Uuid>,
    reason: &str,
    contract: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE reservations SET status = $1, ended_at = $2, ended_by = $3, end_reason = $4, \
         contract_id = $5 WHERE id = $6 AND status = 'active'",
    )
    .bind(status)
    .bind(to_micros(now))
    .bind(by.map(|b| b.to_string()))
    .bind(reason)
    .bind(contract.map(|c| c.to_string()))
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Claims up to `limit` active reservations whose hold has run out, locking
/// them so replicas running the same job take different ones.
pub async fn claim_expired(
    tx: &mut Tx,
    db: &Db,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ReservationRecord>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE status = 'active' \
         AND expires_at <= $1 ORDER BY expires_at LIMIT $2{}",
        db.skip_locked()
    ))
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(ReservationRecord::from_row)
    .collect()
}

//! Bulk import of an inventory sheet (CSV), shared by `miliki vehicles
//! import` and `POST /vehicles/import`.
//!
//! Every row is validated with the same rules as the API; valid rows are
//! inserted in batches, one transaction each; a row whose VIN (or plate) is
//! already in the inventory counts as already imported, so importing the same
//! sheet twice creates nothing new. Invalid rows are reported with their row
//! number, field and reason.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use miliki_platform::problem::{FieldError, Validator};
use miliki_platform::ApiError;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{NewVehicle, VehicleFields};
use crate::state::AppState;
use crate::store;

/// The columns of an inventory sheet, in the order `miliki` writes them.
pub const COLUMNS: &[&str] = &[
    "type",
    "make",
    "model",
    "year",
    "colour",
    "vin",
    "registration",
    "mileage_km",
    "condition",
    "fuel",
    "branch",
    "latitude",
    "longitude",
    "price_minor",
    "currency",
    "cost_price_minor",
    "notes",
    "description",
    "engine_cc",
    "seats",
    "transmission",
    "cargo_volume_litres",
    "payload_kg",
    "axles",
];

/// One problem with one row. Row 1 is the first line after the header.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct RowError {
    pub row: usize,
    pub field: String,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub rows: usize,
    pub imported: usize,
    /// Rows whose vehicle was already in the inventory (a repeated import).
    pub already_present: usize,
    pub failed: usize,
    pub errors: Vec<RowError>,
}

/// A row read from a sheet, before validation.
#[derive(Debug, Clone)]
pub struct RowInput {
    pub row: usize,
    pub fields: VehicleFields,
    /// Cells that were not even of the right kind (text where a number belongs).
    pub errors: Vec<FieldError>,
}

/// Reads a CSV sheet with a header row naming (a subset of) [`COLUMNS`].
pub fn read_csv<R: Read>(reader: R) -> Result<Vec<RowInput>, ApiError> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("unreadable CSV header: {e}")))?
        .clone();
    let mut index = HashMap::new();
    let mut unknown = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        let h = if h == "vehicle_type" {
            "type".to_owned()
        } else {
            h
        };
        if COLUMNS.contains(&h.as_str()) {
            index.insert(h, i);
        } else if !h.is_empty() {
            unknown.push(h);
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::field(
            "header",
            format!("unknown columns: {}", unknown.join(", ")),
        ));
    }
    for required in ["type", "make", "model", "vin"] {
        if !index.contains_key(required) {
            return Err(ApiError::field(
                "header",
                format!("the {required} column is missing"),
            ));
        }
    }
    let mut rows = Vec::new();
    for (n, record) in csv.records().enumerate() {
        let row = n + 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                rows.push(RowInput {
                    row,
                    fields: VehicleFields::default(),
                    errors: vec![FieldError::new("row", format!("unreadable: {e}"))],
                });
                continue;
            }
        };
        let cell = |name: &str| -> Option<String> {
            index
                .get(name)
                .and_then(|i| record.get(*i))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let mut errors = Vec::new();
        let mut int = |name: &str| -> Option<i64> {
            let s = cell(name)?;
            match s.replace('_', "").parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(FieldError::new(name, "must be a whole number"));
                    None
                }
            }
        };
        let year = int("year");
        let mileage_km = int("mileage_km");
        let price_minor = int("price_minor");
        let cost_price_minor = int("cost_price_minor");
        let engine_cc = int("engine_cc");
        let seats = int("seats");
        let cargo_volume_litres = int("cargo_volume_litres");
        let payload_kg = int("payload_kg");
        let axles = int("axles");
        let mut float = |name: &str| -> Option<f64> {
            let s = cell(name)?;
            match s.parse::<f64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(FieldError::new(name, "must be a number"));
                    None
                }
            }
        };
        let latitude = float("latitude");
        let longitude = float("longitude");
        rows.push(RowInput {
            row,
            fields: VehicleFields {
                vehicle_type: cell("type"),
                make: cell("make"),
                model: cell("model"),
                year,
                colour: cell("colour"),
                vin: cell("vin"),
                registration: cell("registration"),
                mileage_km,
                condition: cell("condition"),
                fuel: cell("fuel"),
                branch: cell("branch"),
                latitude,
                longitude,
                price_minor,
                currency: cell("currency"),
                cost_price_minor,
                notes: cell("notes"),
                description: cell("description"),
                engine_cc,
                seats,
                transmission: cell("transmission"),
                cargo_volume_litres,
                payload_kg,
                axles,
            },
            errors,
        });
    }
    Ok(rows)
}

/// Writes `fields` as a sheet [`read_csv`] reads back.
pub fn write_csv<W: std::io::Write>(
    writer: W,
    rows: impl IntoIterator<Item = VehicleFields>,
) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(writer);
    csv.write_record(COLUMNS)?;
    let s = |v: &Option<String>| {
        miliki_platform::csv::safe_cell(v.as_deref().unwrap_or_default()).into_owned()
    };
    let n = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    let f = |v: Option<f64>| v.map(|n| n.to_string()).unwrap_or_default();
    for r in rows {
        csv.write_record([
            s(&r.vehicle_type),
            s(&r.make),
            s(&r.model),
            n(r.year),
            s(&r.colour),
            s(&r.vin),
            s(&r.registration),
            n(r.mileage_km),
            s(&r.condition),
            s(&r.fuel),
            s(&r.branch),
            f(r.latitude),
            f(r.longitude),
            n(r.price_minor),
            s(&r.currency),
            n(r.cost_price_minor),
            s(&r.notes),
            s(&r.description),
            n(r.engine_cc),
            n(r.seats),
            s(&r.transmission),
            n(r.cargo_volume_litres),
            n(r.payload_kg),
            n(r.axles),
        ])?;
    }
    csv.flush()?;
    Ok(())
}

/// Validates and imports `rows`, calling `progress` with the number of rows
/// handled so far after each batch.
pub async fn import_rows(
    state: &AppState,
    rows: Vec<RowInput>,
    progress: &mut (dyn FnMut(usize) + Send),
) -> Result<ImportReport, ApiError> {
    let deps = &state.deps;
    let today = deps.clock.now().date_naive();
    let mut report = ImportReport {
        rows: rows.len(),
        ..ImportReport::default()
    };
    // Validate everything first; a file's own duplicates are errors too.
    let mut valid: Vec<(usize, NewVehicle)> = Vec::with_capacity(rows.len());
    let mut seen_vin: HashMap<String, usize> = HashMap::new();
    let mut seen_plate: HashMap<String, usize> = HashMap::new();
    for input in rows {
        let mut v = Validator::new();
        for e in &input.errors {
            v.error(&e.field, e.message.clone());
        }
        let parsed = input.fields.parse(&mut v, today);
        let problems = match v.finish() {
            Ok(()) => Vec::new(),
            Err(ApiError::Validation(errors)) => errors,
            Err(other) => vec![FieldError::new("row", other.to_string())],
        };
        match parsed {
            Some(vehicle) if problems.is_empty() => {
                let vin = vehicle.vin.as_str().to_owned();
                let plate = vehicle.registration.key();
                if let Some(first) = seen_vin.get(&vin) {
                    report.errors.push(RowError {
                        row: input.row,
                        field: "vin".into(),
                        message: format!("repeats row {first}"),
                    });
                    report.failed += 1;
                } else if let Some(first) = seen_plate.get(&plate) {
                    report.errors.push(RowError {
                        row: input.row,
                        field: "registration".into(),
                        message: format!("repeats row {first}"),
                    });
                    report.failed += 1;
                } else {
                    seen_vin.insert(vin, input.row);
                    seen_plate.insert(plate, input.row);
                    valid.push((input.row, vehicle));
                }
            }
            _ => {
                report.failed += 1;
                report.errors.extend(problems.into_iter().map(|e| RowError {
                    row: input.row,
                    field: e.field,
                    message: e.message,
                }));
            }
        }
    }
    let invalid = report.failed;
    progress(invalid);
    let mut done = invalid;
    for batch in valid.chunks(state.config.import_batch) {
        insert_batch(state, batch, &mut report).await?;
        done += batch.len();
        progress(done);
    }
    report.errors.sort_by_key(|e| e.row);
    if report.imported > 0 {
        refresh_statistics(&deps.db).await;
    }
    Ok(report)
}

/// Refreshes the query planner's statistics after the table changed shape:
/// without them SQLite may walk a sort-order index over the whole table
/// instead of the selective one. Best effort; both engines accept `ANALYZE vehicles`.
pub async fn refresh_statistics(db: &miliki_platform::db::Db) {
    if let Err(e) = sqlx::query("ANALYZE vehicles").execute(db.writer()).await {
        tracing::warn!(error = %e, "could not refresh planner statistics");
    }
}

/// Stores one batch of validated rows in one transaction: looks up which
/// VINs and plates are already listed (a repeated import), then inserts the
/// rest with multi-row statements ([`store::insert_vehicles`]) and their
/// `vehicles.vehicle.listed.v1` events with multi-row outbox inserts, so the
/// vehicles and their events commit together. Returns the ids of the
/// vehicles it inserted, committed.
///
/// This is the one place imported vehicles enter the inventory: the
/// in-memory search index learns of them after the commit here (and every
/// other replica's from the change log the batch wrote).
pub async fn insert_batch(
    state: &AppState,
    batch: &[(usize, NewVehicle)],
    report: &mut ImportReport,
) -> Result<Vec<Uuid>, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let vins: Vec<String> = batch
        .iter()
        .map(|(_, v)| v.vin.as_str().to_owned())
        .collect();
    let plates: Vec<String> = batch.iter().map(|(_, v)| v.registration.key()).collect();
    let known_vins: HashSet<String> = store::existing_vins(&mut tx, &vins)
        .await?
        .into_iter()
        .collect();
    let known_plates: HashSet<String> = store::existing_registrations(&mut tx, &plates)
        .await?
        .into_iter()
        .collect();
    let mut fresh: Vec<(Uuid, &NewVehicle)> = Vec::with_capacity(batch.len());
    for ((row, vehicle), plate) in batch.iter().zip(&plates) {
        if known_vins.contains(vehicle.vin.as_str()) {
            report.already_present += 1;
        } else if known_plates.contains(plate) {
            report.failed += 1;
            report.errors.push(RowError {
                row: *row,
                field: "registration".into(),
                message: "already belongs to another vehicle in the inventory".into(),
            });
        } else {
            fresh.push((miliki_platform::id::new_id(), vehicle));
        }
    }
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    store::insert_vehicles(&mut tx, &fresh, now).await?;
    let events: Vec<_> = fresh
        .iter()
        .map(|(id, v)| crate::api::vehicles::listed(*id, v))
        .collect();
    deps.events.write_all(&mut tx, &events).await?;
    deps.events.commit(tx).await?;
    report.imported += fresh.len();
    let ids: Vec<Uuid> = fresh.into_iter().map(|(id, _)| id).collect();
    state.committed(&ids).await;
    Ok(ids)
}

/// Writes the per-row error report as CSV (`row,field,message`).
pub fn write_error_report<W: std::io::Write>(writer: W, errors: &[RowError]) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(writer);
    csv.write_record(["row", "field", "message"])?;
    for e in errors {
        csv.write_record([
            e.row.to_string(),
            miliki_platform::csv::safe_cell(&e.field).into_owned(),
            miliki_platform::csv::safe_cell(&e.message).into_owned(),
        ])?;
    }
    csv.flush()?;
    Ok(())
}

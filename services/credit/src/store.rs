//! SQL: portable statements for SQLite and PostgreSQL. Instants are stored as
//! microseconds, ids as text, documents (features, score, offer) as JSON text.

use chrono::{DateTime, Utc};
use miliki_platform::clock::to_micros;
use miliki_platform::db::{Backend, Db, RowExt, Tx};
use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{ApplicationStatus, Transition};

/// ` FOR UPDATE` on PostgreSQL; SQLite's single writer already serialises.
pub fn for_update(db: &Db) -> &'static str {
    match db.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

fn json_col<T: DeserializeOwned>(row: &AnyRow, column: &str) -> Result<Option<T>, sqlx::Error> {
    row.try_get::<Option<String>, _>(column)?
        .map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| sqlx::Error::Decode(format!("column {column}: {e}").into()))
        })
        .transpose()
}

// ---------------------------------------------------------------- projections

pub async fn upsert_vehicle(
    tx: &mut Tx,
    vehicle: Uuid,
    vehicle_type: &str,
    price_minor: i64,
    currency: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vehicles_seen (vehicle_id, vehicle_type, price_minor, currency, as_of) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (vehicle_id) DO UPDATE SET \
         vehicle_type = $2, price_minor = $3, currency = $4, as_of = $5 \
         WHERE vehicles_seen.as_of <= $5",
    )
    .bind(vehicle.to_string())
    .bind(vehicle_type)
    .bind(price_minor)
    .bind(currency)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A vehicle's (type, price, currency), if this service has heard of it.
pub async fn find_vehicle(
    db: &Db,
    vehicle: Uuid,
) -> Result<Option<(String, i64, String)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT vehicle_type, price_minor, currency FROM vehicles_seen WHERE vehicle_id = $1",
    )
    .bind(vehicle.to_string())
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| {
        Ok((
            r.try_get("vehicle_type")?,
            r.try_get("price_minor")?,
            r.try_get("currency")?,
        ))
    })
    .transpose()
}

/// Records a reservation's status as of `at`; an older event never overwrites a newer one.
pub async fn upsert_reservation(
    tx: &mut Tx,
    reservation: Uuid,
    vehicle: Uuid,
    customer: Uuid,
    expires_at: Option<DateTime<Utc>>,
    status: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reservations_seen (reservation_id, vehicle_id, customer_id, expires_at, status, as_of) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (reservation_id) DO UPDATE SET \
         status = $5, as_of = $6, \
         expires_at = CASE WHEN $4 > 0 THEN $4 ELSE reservations_seen.expires_at END \
         WHERE reservations_seen.as_of <= $6",
    )
    .bind(reservation.to_string())
    .bind(vehicle.to_string())
    .bind(customer.to_string())
    .bind(expires_at.map(to_micros).unwrap_or(0))
    .bind(status)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The customer's active, unexpired reservation of `vehicle`, if any.
pub async fn active_reservation(
    db: &Db,
    customer: Uuid,
    vehicle: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT reservation_id FROM reservations_seen WHERE customer_id = $1 AND vehicle_id = $2 \
         AND status = 'active' AND expires_at > $3 ORDER BY as_of DESC LIMIT 1",
    )
    .bind(customer.to_string())
    .bind(vehicle.to_string())
    .bind(to_micros(now))
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| r.uuid("reservation_id")).transpose()
}

/// Whether `reservation` is active and unexpired.
pub async fn reservation_active(
    db: &Db,
    reservation: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM reservations_seen WHERE reservation_id = $1 AND status = 'active' \
         AND expires_at > $2",
    )
    .bind(reservation.to_string())
    .bind(to_micros(now))
    .fetch_one(db.reader())
    .await?;
    Ok(n > 0)
}

/// Reservations still marked active whose hold has run out (their expiry
/// event may come later, or never if vehicles is down): their offers lapse.
pub async fn lapsed_reservations(
    db: &Db,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT r.reservation_id FROM reservations_seen r JOIN applications a \
         ON a.open_reservation = r.reservation_id \
         WHERE r.status = 'active' AND r.expires_at <= $1 AND a.status <> 'accepted' LIMIT $2",
    )
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(|r| r.uuid("reservation_id")).collect()
}

/// A contract's status as of `at`.
#[allow(clippy::too_many_arguments)]
pub async fn upsert_contract_status(
    tx: &mut Tx,
    contract: Uuid,
    customer: Uuid,
    vehicle: Uuid,
    status: &str,
    activated_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contracts_seen (contract_id, customer_id, vehicle_id, status, activated_at, status_as_of) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (contract_id) DO UPDATE SET \
         status = CASE WHEN contracts_seen.status_as_of <= $6 THEN $4 ELSE contracts_seen.status END, \
         status_as_of = CASE WHEN contracts_seen.status_as_of <= $6 THEN $6 ELSE contracts_seen.status_as_of END, \
         activated_at = COALESCE(contracts_seen.activated_at, $5)",
    )
    .bind(contract.to_string())
    .bind(customer.to_string())
    .bind(vehicle.to_string())
    .bind(status)
    .bind(activated_at.map(to_micros))
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A contract's arrears as of `at`; the worst days past due only grows.
pub async fn upsert_arrears(
    tx: &mut Tx,
    contract: Uuid,
    customer: Uuid,
    vehicle: Uuid,
    days_past_due: i64,
    bucket: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contracts_seen (contract_id, customer_id, vehicle_id, status, days_past_due, \
         worst_days_past_due, bucket, arrears_as_of) VALUES ($1, $2, $3, 'active', $4, $4, $5, $6) \
         ON CONFLICT (contract_id) DO UPDATE SET \
         days_past_due = CASE WHEN contracts_seen.arrears_as_of <= $6 THEN $4 ELSE contracts_seen.days_past_due END, \
         bucket = CASE WHEN contracts_seen.arrears_as_of <= $6 THEN $5 ELSE contracts_seen.bucket END, \
         arrears_as_of = CASE WHEN contracts_seen.arrears_as_of <= $6 THEN $6 ELSE contracts_seen.arrears_as_of END, \
         worst_days_past_due = CASE WHEN contracts_seen.worst_days_past_due < $4 THEN $4 ELSE contracts_seen.worst_days_past_due END",
    )
    .bind(contract.to_string())
    .bind(customer.to_string())
    .bind(vehicle.to_string())
    .bind(days_past_due)
    .bind(bucket)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The customer holding `vehicle` under a live contract, if any.
pub async fn holder_of(tx: &mut Tx, vehicle: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT customer_id FROM contracts_seen WHERE vehicle_id = $1 \
         AND status IN ('active', 'paused') ORDER BY status_as_of DESC LIMIT 1",
    )
    .bind(vehicle.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| r.uuid("customer_id")).transpose()
}

pub async fn record_payment(
    tx: &mut Tx,
    payment: Uuid,
    contract: Uuid,
    customer: Uuid,
    days_late: i64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments_seen (payment_id, contract_id, customer_id, days_late, at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (payment_id) DO NOTHING",
    )
    .bind(payment.to_string())
    .bind(contract.to_string())
    .bind(customer.to_string())
    .bind(days_late)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A reversal arriving before its payment still marks it.
pub async fn reverse_payment(
    tx: &mut Tx,
    payment: Uuid,
    contract: Uuid,
    customer: Uuid,
    days_late: i64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments_seen (payment_id, contract_id, customer_id, days_late, reversed, at) \
         VALUES ($1, $2, $3, $4, 1, $5) ON CONFLICT (payment_id) DO UPDATE SET reversed = 1",
    )
    .bind(payment.to_string())
    .bind(contract.to_string())
    .bind(customer.to_string())
    .bind(days_late)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn record_risk(
    tx: &mut Tx,
    event: Uuid,
    vehicle: Uuid,
    customer: Uuid,
    kind: &str,
    severity: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO risk_seen (event_id, vehicle_id, customer_id, kind, severity, at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event.to_string())
    .bind(vehicle.to_string())
    .bind(customer.to_string())
    .bind(kind)
    .bind(severity)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What the platform has seen of a customer's conduct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub contracts: i64,
    pub payments: i64,
    pub on_time_payments: i64,
    pub worst_days_past_due: i64,
    pub current_days_past_due: i64,
    pub completed: i64,
    pub defaulted: i64,
    pub risk_events: i64,
    /// Days under activated contracts (for the risk rate); 0 if never activated.
    pub days_driven: i64,
}

pub async fn history(
    conn: &mut sqlx::AnyConnection,
    customer: Uuid,
    now: DateTime<Utc>,
) -> Result<History, sqlx::Error> {
    let c = customer.to_string();
    let rows = sqlx::query(
        "SELECT status, activated_at, days_past_due, worst_days_past_due FROM contracts_seen \
         WHERE customer_id = $1",
    )
    .bind(&c)
    .fetch_all(&mut *conn)
    .await?;
    let mut h = History::default();
    for r in &rows {
        let status: String = r.try_get("status")?;
        h.contracts += 1;
        h.worst_days_past_due = h.worst_days_past_due.max(r.try_get("worst_days_past_due")?);
        if matches!(status.as_str(), "active" | "paused") {
            h.current_days_past_due = h.current_days_past_due.max(r.try_get("days_past_due")?);
        }
        if matches!(status.as_str(), "paid_off" | "ownership_transferred") {
            h.completed += 1;
        }
        if matches!(status.as_str(), "defaulted" | "written_off") {
            h.defaulted += 1;
        }
        if let Some(at) = r.opt_time("activated_at")? {
            h.days_driven += (now - at).num_days().max(0);
        }
    }
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN days_late <= 0 THEN 1 ELSE 0 END), 0) AS on_time \
         FROM payments_seen WHERE customer_id = $1 AND reversed = 0",
    )
    .bind(&c)
    .fetch_one(&mut *conn)
    .await?;
    h.payments = row.try_get("n")?;
    h.on_time_payments = row.try_get("on_time")?;
    h.risk_events = sqlx::query_scalar("SELECT COUNT(*) FROM risk_seen WHERE customer_id = $1")
        .bind(&c)
        .fetch_one(&mut *conn)
        .await?;
    Ok(h)
}

/// When the users service approved the customer's KYC, from the standing projection.
pub async fn kyc_approved_at(
    conn: &mut sqlx::AnyConnection,
    customer: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let row =
        sqlx::query("SELECT kyc_as_of FROM user_standing WHERE user_id = $1 AND kyc_approved = 1")
            .bind(customer.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|r| r.time("kyc_as_of")).transpose()
}

// ---------------------------------------------------------------- applications

/// An application as stored.
#[derive(Debug, Clone)]
pub struct ApplicationRecord {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub submitted_by: Uuid,
    pub vehicle_id: Uuid,
    pub reservation_id: Uuid,
    pub product_id: Uuid,
    pub currency: String,
    pub price_minor: i64,
    pub deposit_minor: i64,
    pub term_periods: i64,
    pub occupation: String,
    pub income_declared_minor: i64,
    pub income_frequency: String,
    /// The guarantor's details, sealed with the keyring (base64).
    pub guarantor_sealed: Option<String>,
    pub statement: Option<crate::statement::StatementSummary>,
    pub status: ApplicationStatus,
    pub features: crate::domain::Features,
    pub score: Option<crate::model::Score>,
    pub offer: Option<crate::domain::Offer>,
    pub accepted: Option<crate::domain::AcceptedTerms>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn application_from(r: &AnyRow) -> Result<ApplicationRecord, sqlx::Error> {
    Ok(ApplicationRecord {
        id: r.uuid("id")?,
        customer_id: r.uuid("customer_id")?,
        submitted_by: r.uuid("submitted_by")?,
        vehicle_id: r.uuid("vehicle_id")?,
        reservation_id: r.uuid("reservation_id")?,
        product_id: r.uuid("product_id")?,
        currency: r.try_get("currency")?,
        price_minor: r.try_get("price_minor")?,
        deposit_minor: r.try_get("deposit_minor")?,
        term_periods: r.try_get("term_periods")?,
        occupation: r.try_get("occupation")?,
        income_declared_minor: r.try_get("income_declared_minor")?,
        income_frequency: r.try_get("income_frequency")?,
        guarantor_sealed: r.try_get("guarantor")?,
        statement: json_col(r, "statement")?,
        status: r.parsed("status")?,
        features: json_col(r, "features")?.unwrap_or_default(),
        score: json_col(r, "score")?,
        offer: json_col(r, "offer")?,
        accepted: json_col(r, "accepted")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Inserts `a`; a second open application for the reservation is a unique violation.
pub async fn insert_application(tx: &mut Tx, a: &ApplicationRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO applications (id, customer_id, submitted_by, vehicle_id, reservation_id, product_id, \
         currency, price_minor, deposit_minor, term_periods, occupation, income_declared_minor, \
         income_frequency, guarantor, statement, status, features, score, offer, accepted, \
         open_reservation, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
    )
    .bind(a.id.to_string())
    .bind(a.customer_id.to_string())
    .bind(a.submitted_by.to_string())
    .bind(a.vehicle_id.to_string())
    .bind(a.reservation_id.to_string())
    .bind(a.product_id.to_string())
    .bind(&a.currency)
    .bind(a.price_minor)
    .bind(a.deposit_minor)
    .bind(a.term_periods)
    .bind(&a.occupation)
    .bind(a.income_declared_minor)
    .bind(&a.income_frequency)
    .bind(a.guarantor_sealed.clone())
    .bind(a.statement.as_ref().map(to_json))
    .bind(a.status.as_str())
    .bind(to_json(&a.features))
    .bind(a.score.as_ref().map(to_json))
    .bind(a.offer.as_ref().map(to_json))
    .bind(a.accepted.as_ref().map(to_json))
    .bind(a.status.is_open().then(|| a.reservation_id.to_string()))
    .bind(to_micros(a.created_at))
    .bind(to_micros(a.updated_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the mutable parts of `a` (status, guarantor, score, offer, acceptance).
pub async fn update_application(tx: &mut Tx, a: &ApplicationRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE applications SET status = $2, guarantor = $3, score = $4, offer = $5, accepted = $6, \
         open_reservation = $7, updated_at = $8, deposit_minor = $9, term_periods = $10 WHERE id = $1",
    )
    .bind(a.id.to_string())
    .bind(a.status.as_str())
    .bind(a.guarantor_sealed.clone())
    .bind(a.score.as_ref().map(to_json))
    .bind(a.offer.as_ref().map(to_json))
    .bind(a.accepted.as_ref().map(to_json))
    .bind(a.status.is_open().then(|| a.reservation_id.to_string()))
    .bind(to_micros(a.updated_at))
    .bind(a.deposit_minor)
    .bind(a.term_periods)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn find_application(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
    lock: &str,
) -> Result<Option<ApplicationRecord>, sqlx::Error> {
    let sql = format!("SELECT * FROM applications WHERE id = $1{lock}");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(application_from).transpose()
}

/// Open applications on `reservation` (at most one).
pub async fn open_on_reservation(
    conn: &mut sqlx::AnyConnection,
    reservation: Uuid,
    lock: &str,
) -> Result<Vec<ApplicationRecord>, sqlx::Error> {
    let sql = format!("SELECT * FROM applications WHERE open_reservation = $1{lock}");
    let rows = sqlx::query(&sql)
        .bind(reservation.to_string())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(application_from).collect()
}

/// The customer's latest application, for the living score's statement features.
pub async fn latest_application(
    conn: &mut sqlx::AnyConnection,
    customer: Uuid,
) -> Result<Option<ApplicationRecord>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT * FROM applications WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(customer.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(application_from).transpose()
}

/// A page of applications, newest first, after `before` (an id).
pub async fn list_applications(
    db: &Db,
    customer: Option<Uuid>,
    agent: Option<Uuid>,
    status: Option<ApplicationStatus>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<ApplicationRecord>, sqlx::Error> {
    let mut q = miliki_platform::db::FilteredQuery::new("SELECT * FROM applications");
    if let Some(c) = customer {
        q.and("customer_id = ?", c.to_string());
    }
    if let Some(a) = agent {
        q.and(
            "customer_id IN (SELECT user_id FROM user_standing WHERE onboarded_by = ?)",
            a.to_string(),
        );
    }
    if let Some(s) = status {
        q.and("status = ?", s.as_str());
    }
    if let Some(b) = before {
        q.and("id < ?", b.to_string());
    }
    q.push(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let rows = q.fetch_all(db.reader()).await?;
    rows.iter().map(application_from).collect()
}

pub async fn insert_transition(tx: &mut Tx, t: &Transition) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO application_transitions (id, application_id, from_status, to_status, actor_id, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(miliki_platform::id::new_id().to_string())
    .bind(t.application_id.to_string())
    .bind(t.from.map(|s| s.as_str()))
    .bind(t.to.as_str())
    .bind(t.actor_id.map(|a| a.to_string()))
    .bind(&t.reason)
    .bind(to_micros(t.at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn transitions(
    conn: &mut sqlx::AnyConnection,
    application: Uuid,
) -> Result<Vec<Transition>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT * FROM application_transitions WHERE application_id = $1 ORDER BY at, id",
    )
    .bind(application.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Transition {
                application_id: r.uuid("application_id")?,
                from: r
                    .try_get::<Option<String>, _>("from_status")?
                    .and_then(|s| s.parse().ok()),
                to: r.parsed("to_status")?,
                actor_id: r.opt_uuid("actor_id")?,
                reason: r.try_get("reason")?,
                at: r.time("at")?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------- living scores

/// One entry of a customer's score history.
#[derive(Debug, Clone)]
pub struct ScoreEntry {
    pub score: crate::model::Score,
    pub cause: String,
    pub event_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

pub async fn insert_score(
    tx: &mut Tx,
    customer: Uuid,
    entry: &ScoreEntry,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO score_history (id, customer_id, score, band, model_version, detail, cause, event_id, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(miliki_platform::id::new_id().to_string())
    .bind(customer.to_string())
    .bind(entry.score.score)
    .bind(&entry.score.band)
    .bind(&entry.score.model_version)
    .bind(to_json(&entry.score))
    .bind(&entry.cause)
    .bind(entry.event_id.map(|e| e.to_string()))
    .bind(to_micros(entry.at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The customer's score history, oldest first (at most the latest 200).
pub async fn score_history(
    conn: &mut sqlx::AnyConnection,
    customer: Uuid,
) -> Result<Vec<ScoreEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT detail, cause, event_id, at FROM score_history WHERE customer_id = $1 \
         ORDER BY at DESC, id DESC LIMIT 200",
    )
    .bind(customer.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(ScoreEntry {
                score: json_col(r, "detail")?
                    .ok_or_else(|| sqlx::Error::Decode("score_history.detail is empty".into()))?,
                cause: r.try_get("cause")?,
                event_id: r.opt_uuid("event_id")?,
                at: r.time("at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    out.reverse();
    Ok(out)
}

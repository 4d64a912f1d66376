//! On PostgreSQL, positions are partitioned by day: a new install's
//! `positions` table is recreated as a partitioned one, the housekeeping job
//! keeps partitions a week ahead, and retention drops whole days instead of
//! deleting rows. Fixes outside the prepared days (a tracker whose clock is
//! far off) land in a default partition. SQLite keeps one table.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use miliki_platform::clock::to_micros;
use miliki_platform::db::{Backend, Db, Tx};

const PARTITIONED: &str = "CREATE TABLE positions (
    device_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    vehicle_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    speed_kmh DOUBLE PRECISION NOT NULL,
    heading DOUBLE PRECISION,
    altitude DOUBLE PRECISION,
    satellites BIGINT,
    ignition BIGINT,
    odometer_m BIGINT,
    ext_voltage_mv BIGINT,
    battery_mv BIGINT,
    facts TEXT NOT NULL,
    PRIMARY KEY (device_id, at)
) PARTITION BY RANGE (at);
CREATE INDEX positions_vehicle_at ON positions (vehicle_id, at);
CREATE TABLE positions_default PARTITION OF positions DEFAULT;";

async fn is_partitioned(db: &Db) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_partitioned_table WHERE partrelid = 'positions'::regclass",
    )
    .fetch_one(db.writer())
    .await?;
    Ok(n > 0)
}

/// Makes `positions` partitioned if it is new and empty; returns whether it is.
pub async fn prepare(db: &Db, now: DateTime<Utc>) -> anyhow::Result<bool> {
    if db.backend() != Backend::Postgres {
        return Ok(false);
    }
    if !is_partitioned(db).await? {
        let mut tx = db.begin().await?;
        let done = recreate(&mut tx).await?;
        tx.commit().await?;
        if !done {
            tracing::warn!("positions already hold rows; keeping the unpartitioned table");
            return Ok(false);
        }
    }
    ensure_days(db, now).await;
    Ok(true)
}

/// Within `tx`: recreates an empty `positions` as a partitioned table.
async fn recreate(tx: &mut Tx) -> Result<bool, sqlx::Error> {
    // Replicas starting together take turns.
    sqlx::query("SELECT pg_advisory_xact_lock(4243)")
        .execute(&mut **tx)
        .await?;
    let partitioned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_partitioned_table WHERE partrelid = 'positions'::regclass",
    )
    .fetch_one(&mut **tx)
    .await?;
    if partitioned > 0 {
        return Ok(true);
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM positions LIMIT 1) t")
        .fetch_one(&mut **tx)
        .await?;
    if rows > 0 {
        return Ok(false);
    }
    sqlx::query("DROP TABLE positions")
        .execute(&mut **tx)
        .await?;
    for statement in PARTITIONED
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        sqlx::query(statement).execute(&mut **tx).await?;
    }
    Ok(true)
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Creates the partitions of yesterday through a week ahead.
pub async fn ensure_days(db: &Db, now: DateTime<Utc>) {
    let today = now.date_naive();
    for offset in -1..=7 {
        let day = today + Duration::days(offset);
        let (from, to) = (day_start(day), day_start(day + Duration::days(1)));
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS positions_p{} PARTITION OF positions FOR VALUES FROM ({}) TO ({})",
            day.format("%Y%m%d"),
            to_micros(from),
            to_micros(to)
        );
        // A day whose rows already sit in the default partition cannot get its own; they stay there.
        if let Err(e) = sqlx::query(&sql).execute(db.writer()).await {
            tracing::debug!(error = %e, %day, "position partition not created");
        }
    }
}

/// Drops the day partitions wholly before `before`, and deletes older rows
/// from the default partition. Returns how many partitions were dropped.
pub async fn drop_before(db: &Db, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'positions'::regclass",
    )
    .fetch_all(db.writer())
    .await?;
    let mut dropped = 0;
    for name in names {
        let Some(day) = name
            .strip_prefix("positions_p")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
        else {
            continue;
        };
        if day_start(day + Duration::days(1)) <= before {
            sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
                .execute(db.writer())
                .await?;
            dropped += 1;
        }
    }
    sqlx::query("DELETE FROM positions_default WHERE at < $1")
        .bind(to_micros(before))
        .execute(db.writer())
        .await?;
    Ok(dropped)
}

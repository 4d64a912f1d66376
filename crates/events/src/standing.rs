//! A consumer's local view of the people the users service owns: whether
//! their KYC is approved and whether they are suspended. Services that must
//! refuse unverified or suspended customers (vehicles, credit, payments) keep
//! this projection in their own database, fed by `users.*` events, instead of
//! reading the users database.
//!
//! Events can arrive out of order (a retried delivery overtaking a later
//! one), so each fact remembers the time of the event that set it and older
//! events do not overwrite newer facts.

use miliki_platform::clock::to_micros;
use miliki_platform::db::{Db, Tx};
use sqlx::Row;
use uuid::Uuid;

use crate::catalogue::users::{KycApproved, UserRegistered, UserReinstated, UserSuspended};
use crate::envelope::Event;

/// The table, for the consuming service's own migrations.
pub const SCHEMA: &str = "CREATE TABLE user_standing (\
    user_id TEXT PRIMARY KEY, \
    kyc_approved BIGINT NOT NULL DEFAULT 0, \
    kyc_as_of BIGINT NOT NULL DEFAULT 0, \
    suspended BIGINT NOT NULL DEFAULT 0, \
    suspended_as_of BIGINT NOT NULL DEFAULT 0);";

/// The second step of the table: who onboarded each customer, so a service
/// can show an agent their own book and no one else's.
pub const SCHEMA_ONBOARDED_BY: &str = "ALTER TABLE user_standing ADD COLUMN onboarded_by TEXT;";

/// The event types the projection learns from.
pub const PATTERNS: &[&str] = &[
    "users.user.registered.v1",
    "users.kyc.approved.v1",
    "users.user.suspended.v1",
    "users.user.reinstated.v1",
];

/// What a service knows about a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub kyc_approved: bool,
    pub suspended: bool,
}

/// Applies `event` within `tx` if it is one the projection follows; returns
/// whether it was. The caller claims the event in its inbox in the same `tx`.
pub async fn apply(tx: &mut Tx, event: &Event) -> anyhow::Result<bool> {
    let at = to_micros(event.time);
    if let Some(payload) = event.payload::<UserRegistered>() {
        let p = payload?;
        // Set once, at registration: no ordering to respect.
        sqlx::query(
            "INSERT INTO user_standing (user_id, onboarded_by) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET onboarded_by = $2",
        )
        .bind(p.user_id.to_string())
        .bind(p.onboarded_by.map(|a| a.to_string()))
        .execute(&mut **tx)
        .await?;
        return Ok(true);
    }
    if let Some(payload) = event.payload::<KycApproved>() {
        let p = payload?;
        upsert(tx, p.user_id, "kyc_approved", "kyc_as_of", 1, at).await?;
        return Ok(true);
    }
    if let Some(payload) = event.payload::<UserSuspended>() {
        let p = payload?;
        upsert(tx, p.user_id, "suspended", "suspended_as_of", 1, at).await?;
        return Ok(true);
    }
    if let Some(payload) = event.payload::<UserReinstated>() {
        let p = payload?;
        upsert(tx, p.user_id, "suspended", "suspended_as_of", 0, at).await?;
        return Ok(true);
    }
    Ok(false)
}

async fn upsert(
    tx: &mut Tx,
    user: Uuid,
    column: &'static str,
    as_of: &'static str,
    value: i64,
    at: i64,
) -> Result<(), sqlx::Error> {
    // Column names are constants of this module, never input.
    let sql = format!(
        "INSERT INTO user_standing (user_id, {column}, {as_of}) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET {column} = $2, {as_of} = $3 \
         WHERE user_standing.{as_of} <= $3"
    );
    sqlx::query(&sql)
        .bind(user.to_string())
        .bind(value)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// What is known about `user`; someone never heard of has no approved KYC.
pub async fn standing(db: &Db, user: Uuid) -> Result<Standing, sqlx::Error> {
    let row = sqlx::query("SELECT kyc_approved, suspended FROM user_standing WHERE user_id = $1")
        .bind(user.to_string())
        .fetch_optional(db.reader())
        .await?;
    Ok(match row {
        Some(row) => Standing {
            kyc_approved: row.try_get::<i64, _>("kyc_approved")? == 1,
            suspended: row.try_get::<i64, _>("suspended")? == 1,
        },
        None => Standing::default(),
    })
}

/// The agent who onboarded `user`, if one did (and the registration is known).
pub async fn onboarded_by(db: &Db, user: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    let agent: Option<Option<String>> =
        sqlx::query_scalar("SELECT onboarded_by FROM user_standing WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(db.reader())
            .await?;
    Ok(agent.flatten().and_then(|a| a.parse().ok()))
}

//! Telling every other service whose credentials changed. Each change to an
//! account's standing (creation, suspension, reinstatement) bumps or sets its
//! credential version and writes `users.user.credentials_changed.v1` in the
//! same transaction; the other services keep the latest version per account
//! and refuse tokens minted under another (`miliki_platform::credentials`).

use miliki_events::catalogue::users::CredentialsChanged;
use miliki_events::EventWriter;
use miliki_platform::db::{Db, Tx};
use sqlx::Row;
use uuid::Uuid;

/// Writes the account's current credentials as an event within `tx`.
pub async fn announce(tx: &mut Tx, events: &EventWriter, user: Uuid) -> anyhow::Result<()> {
    let row = sqlx::query("SELECT role, status, auth_version FROM users WHERE id = $1")
        .bind(user.to_string())
        .fetch_one(&mut **tx)
        .await?;
    let version: i64 = row.try_get("auth_version")?;
    let status: String = row.try_get("status")?;
    events
        .write(
            tx,
            &CredentialsChanged {
                user_id: user,
                role: row.try_get("role")?,
                version,
                active: status == "active",
            },
        )
        .await?;
    sqlx::query("UPDATE users SET announced_version = $1 WHERE id = $2")
        .bind(version)
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Announces every account whose current credentials were never published
/// (accounts created before the event existed), in batches.
pub async fn announce_pending(db: &Db, events: &EventWriter) -> anyhow::Result<u64> {
    let mut announced = 0;
    loop {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM users WHERE announced_version <> auth_version ORDER BY id LIMIT 500",
        )
        .fetch_all(db.reader())
        .await?;
        if ids.is_empty() {
            return Ok(announced);
        }
        let mut tx = db.begin().await?;
        for id in &ids {
            announce(&mut tx, events, id.parse()?).await?;
        }
        events.commit(tx).await?;
        announced += ids.len() as u64;
    }
}

//! The consumer side of exactly-once effects.

use miliki_platform::clock::to_micros;
use miliki_platform::db::Tx;

use crate::envelope::Event;

/// Records that `consumer` handled `event`, inside the transaction that applies
/// its effect. Returns `false` when it was handled before: the caller then
/// skips the effect and commits nothing new.
pub async fn claim(
    tx: &mut Tx,
    consumer: &str,
    event: &Event,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, event_id, event_type, handled_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event.id.to_string())
    .bind(&event.event_type)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

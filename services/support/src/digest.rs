//! The digest of low-priority messages: on SMS, email and push, a low-priority
//! notification is not sent on its own but held (status `digest`) until the
//! customer's next digest time (`MILIKI_DIGEST_AT`, local `HH:MM` in the
//! customer's time zone, default 18:00; quiet hours still apply). Then every
//! message held for one customer and channel goes out as one digest
//! notification, and each original's delivery log names the digest that
//! carried it. In-app, low-priority messages are listed at once as any other.

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use miliki_platform::clock::to_micros;
use miliki_platform::db::RowExt;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::notify::{self, Channel};
use crate::state::AppState;
use crate::templates;

/// The default local time of the daily digest.
pub const DEFAULT_AT: &str = "18:00";

/// The digest time from the settings (`digest_at`); the default when unset
/// or unreadable (read once at start, see [`check`]).
pub fn at(settings: &miliki_platform::config::Settings) -> NaiveTime {
    setting(settings)
        .and_then(|s| NaiveTime::parse_from_str(s.trim(), "%H:%M").ok())
        .unwrap_or_else(|| NaiveTime::parse_from_str(DEFAULT_AT, "%H:%M").unwrap_or_default())
}

fn setting(settings: &miliki_platform::config::Settings) -> Option<&str> {
    settings
        .extra
        .get("digest_at")
        .and_then(|v| v.as_str())
        .filter(|s| !s.trim().is_empty())
}

/// Refuses a `MILIKI_DIGEST_AT` that is not a time, at start.
pub fn check(settings: &miliki_platform::config::Settings) -> anyhow::Result<()> {
    if let Some(s) = setting(settings) {
        NaiveTime::parse_from_str(s.trim(), "%H:%M")
            .map_err(|_| anyhow::anyhow!("MILIKI_DIGEST_AT {s:?} is not a time like 18:00"))?;
    }
    Ok(())
}

/// The first digest time at or after `after`, at local `at` in `timezone`.
pub fn next_digest(timezone: &str, after: DateTime<Utc>, at: NaiveTime) -> DateTime<Utc> {
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::Africa::Nairobi);
    let local = after.with_timezone(&tz);
    let mut day = local.date_naive();
    for _ in 0..3 {
        // A time skipped by a DST change falls to the next day's.
        if let Some(t) = tz.from_local_datetime(&day.and_time(at)).earliest() {
            let t = t.with_timezone(&Utc);
            if t >= after {
                return t;
            }
        }
        day = day.succ_opt().unwrap_or(day);
    }
    after
}

#[derive(Serialize)]
struct Item {
    subject: String,
    body: String,
}

/// Gathers every held message now due into one digest per customer and
/// channel. Returns how many digests were written.
pub async fn compose_due(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let db = &state.deps.db;
    let groups = sqlx::query(
        "SELECT DISTINCT customer_id, channel FROM notifications \
         WHERE status = 'digest' AND send_after <= $1 LIMIT 500",
    )
    .bind(to_micros(now))
    .fetch_all(db.reader())
    .await?;
    let mut written = 0;
    for g in groups {
        let customer = g.uuid("customer_id")?;
        let channel: String = g.try_get("channel")?;
        let Ok(channel) = channel.parse::<Channel>() else {
            continue;
        };
        if compose(state, customer, channel, now).await? {
            written += 1;
        }
    }
    Ok(written)
}

/// One customer's digest on one channel, in one transaction: the held
/// messages are claimed (so a second replica skips them), the digest queued,
/// and each original's log says which digest carried it.
async fn compose(
    state: &AppState,
    customer: Uuid,
    channel: Channel,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let mut tx = state.deps.db.begin().await?;
    let rows = sqlx::query(
        "SELECT id, subject, body, address FROM notifications WHERE customer_id = $1 \
         AND channel = $2 AND status = 'digest' AND send_after <= $3 ORDER BY id LIMIT 50",
    )
    .bind(customer.to_string())
    .bind(channel.as_str())
    .bind(to_micros(now))
    .fetch_all(&mut *tx)
    .await?;
    let mut carried = Vec::new();
    let mut items = Vec::new();
    let mut address: Option<String> = None;
    for r in rows {
        let id = r.uuid("id")?;
        let claimed = sqlx::query(
            "UPDATE notifications SET status = 'digested' WHERE id = $1 AND status = 'digest'",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed != 1 {
            continue;
        }
        carried.push(id);
        items.push(Item {
            subject: r.try_get("subject")?,
            body: r.try_get("body")?,
        });
        // The newest address the customer gave.
        address = r.try_get::<Option<String>, _>("address")?.or(address);
    }
    if carried.is_empty() {
        return Ok(false);
    }
    let prefs = notify::preferences(&mut *tx, customer).await?;
    let rendered = templates::render(
        &templates::DIGEST,
        &prefs.language,
        channel,
        &serde_json::json!({"count": items.len(), "items": items}),
    )
    .map_err(|e| anyhow::anyhow!("the digest template ({}): {e}", prefs.language))?;
    let digest = miliki_platform::id::new_id();
    sqlx::query(
        "INSERT INTO notifications (id, customer_id, event_id, template, channel, category, priority, \
         language, subject, body, status, address, attempts, send_after, cancel_key, created_at) \
         VALUES ($1, $2, $3, 'digest', $4, 'digest', 'low', $5, $6, $7, 'queued', $8, 0, $9, NULL, $9)",
    )
    .bind(digest.to_string())
    .bind(customer.to_string())
    // A digest answers no single event: its own id keys it.
    .bind(digest.to_string())
    .bind(channel.as_str())
    .bind(&prefs.language)
    .bind(&rendered.subject)
    .bind(&rendered.body)
    .bind(&address)
    .bind(to_micros(now))
    .execute(&mut *tx)
    .await?;
    let list = carried
        .iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    notify::log(
        &mut tx,
        digest,
        "queued",
        &format!("digest of {}: {list}", carried.len()),
        now,
    )
    .await?;
    for id in &carried {
        notify::log(
            &mut tx,
            *id,
            "digested",
            &format!("carried by digest {digest}"),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_digest_is_today_if_not_passed_else_tomorrow_in_local_time() {
        let six = NaiveTime::from_hms_opt(18, 0, 0).unwrap();
        // 08:00 UTC is 11:00 in Nairobi: 18:00 local is 15:00 UTC the same day.
        let morning = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        assert_eq!(
            next_digest("Africa/Nairobi", morning, six),
            Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap()
        );
        // 16:00 UTC is 19:00 local: tomorrow's.
        let evening = Utc.with_ymd_and_hms(2026, 3, 2, 16, 0, 0).unwrap();
        assert_eq!(
            next_digest("Africa/Nairobi", evening, six),
            Utc.with_ymd_and_hms(2026, 3, 3, 15, 0, 0).unwrap()
        );
        // Lagos is UTC+1.
        assert_eq!(
            next_digest("Africa/Lagos", morning, six),
            Utc.with_ymd_and_hms(2026, 3, 2, 17, 0, 0).unwrap()
        );
    }
}

//! The users service's phone codes, delivered. A code arrives sealed on the
//! bus and leaves by SMS to the phone being verified, whatever the customer's
//! channel choices or quiet hours, and never into the in-app list; once the
//! phone is verified it becomes the customer's SMS number (a later change of
//! phone, once verified, moves their SMS along with it).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use miliki_events::catalogue::users::{PhoneCodeIssued, PhoneVerified, CODE_FIELD, PHONE_FIELD};
use miliki_events::Event;
use miliki_platform::clock::to_micros;
use miliki_platform::crypto::Keyring;
use miliki_platform::db::Tx;
use serde_json::json;

use crate::notify::{self, Channel};
use crate::templates;

fn unseal(keys: &Keyring, field: &str, sealed: &str) -> anyhow::Result<String> {
    let blob = STANDARD.decode(sealed)?;
    Ok(keys.decrypt_string(field, &blob)?)
}

/// Queues the SMS carrying `event`'s code; a redelivered event adds nothing.
pub async fn send_code(
    tx: &mut Tx,
    keys: &Keyring,
    event: &Event,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let p: PhoneCodeIssued = serde_json::from_value(event.data.clone())?;
    if p.expires_at <= now {
        // Too late to be of use: a newer code will follow if it is asked for.
        return Ok(());
    }
    let phone = unseal(keys, PHONE_FIELD, &p.phone_sealed)?;
    let code = unseal(keys, CODE_FIELD, &p.code_sealed)?;
    let template =
        templates::find("phone_code").ok_or_else(|| anyhow::anyhow!("no template phone_code"))?;
    let prefs = notify::preferences(&mut **tx, p.user_id).await?;
    // Whole minutes left, rounded up: a code sent at once says 10, not 9.
    let minutes = ((p.expires_at - now).num_seconds() + 59) / 60;
    let rendered = templates::render(
        template,
        &prefs.language,
        Channel::Sms,
        &json!({"code": code, "minutes": minutes}),
    )?;
    let id = miliki_platform::id::new_id();
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, customer_id, event_id, template, channel, category, priority, \
         language, subject, body, status, address, attempts, send_after, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, 0, $12, $12) \
         ON CONFLICT (event_id, template, channel) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(p.user_id.to_string())
    .bind(event.id.to_string())
    .bind(template.name)
    .bind(Channel::Sms.as_str())
    .bind(template.category)
    .bind(template.priority)
    .bind(&prefs.language)
    .bind(&rendered.subject)
    .bind(&rendered.body)
    .bind(&phone)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        notify::log(tx, id, "queued", "queued", now).await?;
    }
    Ok(())
}

/// A verified phone becomes the customer's SMS number.
pub async fn adopt_verified(
    tx: &mut Tx,
    keys: &Keyring,
    event: &Event,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let p: PhoneVerified = serde_json::from_value(event.data.clone())?;
    let phone = unseal(keys, PHONE_FIELD, &p.phone_sealed)?;
    let defaults = notify::Preferences::default();
    sqlx::query(
        "INSERT INTO notification_preferences (customer_id, language, channels, timezone, sms_number, updated_at) \
         VALUES ($1, $2, '{}', $3, $4, $5) \
         ON CONFLICT (customer_id) DO UPDATE SET sms_number = $4, updated_at = $5",
    )
    .bind(p.user_id.to_string())
    .bind(&defaults.language)
    .bind(&defaults.timezone)
    .bind(&phone)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

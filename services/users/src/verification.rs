//! Proving that an account's phone is its owner's. A six-digit code goes out
//! by SMS (the support service's SMS channel reads it, sealed, off the bus);
//! only its keyed hash is kept here, it expires, a few wrong tries kill it,
//! and a new one is sent only after a cooldown and within an hourly cap.
//!
//! Until the phone is verified the payments service sends it no money
//! prompt, and once the operator's grace period has run out the account
//! cannot log in (nor refresh) with it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use miliki_events::catalogue::users::{PhoneCodeIssued, PhoneVerified, CODE_FIELD, PHONE_FIELD};
use miliki_events::service::ServiceDeps;
use miliki_platform::clock::to_micros;
use miliki_platform::config::Settings;
use miliki_platform::db::{RowExt, Tx};
use miliki_platform::ApiError;
use rand::Rng;
use sqlx::Row;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::store::UserRecord;

/// How long a code can be used.
pub const CODE_TTL_MINUTES: i64 = 10;
/// Wrong codes tried before a code is dead and a new one must be asked for.
pub const MAX_ATTEMPTS: i64 = 5;
/// Seconds before another code may be sent.
pub const RESEND_COOLDOWN_SECS: i64 = 60;
/// Codes sent per account in an hour, at most.
pub const MAX_SENDS_PER_HOUR: i64 = 5;

/// The grace period an unverified phone may still log in for
/// (`MILIKI_PHONE_VERIFICATION_GRACE_HOURS`, default 72; `off` never refuses).
pub fn grace(settings: &Settings) -> Option<Duration> {
    const DEFAULT_HOURS: i64 = 72;
    let hours = match settings.extra.get("phone_verification_grace_hours") {
        None | Some(serde_json::Value::Null) => Some(DEFAULT_HOURS),
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) if s.trim().eq_ignore_ascii_case("off") => None,
        Some(serde_json::Value::String(s)) => s.trim().parse().ok().or(Some(DEFAULT_HOURS)),
        Some(_) => Some(DEFAULT_HOURS),
    };
    hours.map(|h| Duration::hours(h.max(0)))
}

/// Whether `user` may still log in by the phone rule: a verified phone, or an
/// unverified one still inside the grace period.
pub fn may_log_in(user: &UserRecord, settings: &Settings, now: DateTime<Utc>) -> bool {
    match (
        user.phone_verified,
        user.phone_unverified_since,
        grace(settings),
    ) {
        (true, _, _) | (_, _, None) | (false, None, _) => true,
        (false, Some(since), Some(grace)) => now < since + grace,
    }
}

/// The refusal for an account past its grace period.
pub fn unverified_refusal() -> ApiError {
    ApiError::Forbidden(
        "the phone number is not verified; enter the code sent to it \
         (POST /api/v1/auth/verify-phone), or ask for a new one"
            .into(),
    )
}

/// The field codes are hashed under (a keyed HMAC, by the blind-index key).
const CODE_HASH_FIELD: &str = "users.phone_code";

fn code_hash(deps: &ServiceDeps, user: Uuid, code: &str) -> String {
    deps.keyring
        .blind_index(CODE_HASH_FIELD, &format!("{user}:{code}"))
}

fn seal(deps: &ServiceDeps, field: &str, value: &str) -> String {
    STANDARD.encode(deps.keyring.encrypt_str(field, value))
}

/// Issues a fresh code for `user`'s `phone` in `tx` and writes the event that
/// carries it, sealed, to the SMS channel. The caller has checked the cooldown.
pub async fn issue(
    tx: &mut Tx,
    deps: &ServiceDeps,
    user: Uuid,
    phone: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let expires_at = now + Duration::minutes(CODE_TTL_MINUTES);
    let hour_ago = to_micros(now - Duration::hours(1));
    // The hourly window restarts once its hour is over.
    sqlx::query(
        "INSERT INTO phone_codes (user_id, code_hash, expires_at, attempts, sent_at, window_start, sends_in_window) \
         VALUES ($1, $2, $3, 0, $4, $4, 1) \
         ON CONFLICT (user_id) DO UPDATE SET code_hash = $2, expires_at = $3, attempts = 0, sent_at = $4, \
         window_start = CASE WHEN phone_codes.window_start <= $5 THEN $4 ELSE phone_codes.window_start END, \
         sends_in_window = CASE WHEN phone_codes.window_start <= $5 THEN 1 ELSE phone_codes.sends_in_window + 1 END",
    )
    .bind(user.to_string())
    .bind(code_hash(deps, user, &code))
    .bind(to_micros(expires_at))
    .bind(to_micros(now))
    .bind(hour_ago)
    .execute(&mut **tx)
    .await?;
    deps.events
        .write(
            tx,
            &PhoneCodeIssued {
                user_id: user,
                phone_sealed: seal(deps, PHONE_FIELD, phone),
                code_sealed: seal(deps, CODE_FIELD, &code),
                expires_at,
            },
        )
        .await?;
    Ok(())
}

/// Marks `user`'s phone verified in `tx` (by the code, or by the operator who
/// created the account) and tells the other services.
pub async fn mark_verified(
    tx: &mut Tx,
    deps: &ServiceDeps,
    user: Uuid,
    phone: &str,
    by: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE users SET phone_verified_at = $2, phone_unverified_since = NULL, updated_at = $2 \
         WHERE id = $1",
    )
    .bind(user.to_string())
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM phone_codes WHERE user_id = $1")
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    deps.events
        .write(
            tx,
            &PhoneVerified {
                user_id: user,
                phone_sealed: seal(deps, PHONE_FIELD, phone),
                verified_by: by,
            },
        )
        .await?;
    Ok(())
}

struct PendingCode {
    code_hash: String,
    expires_at: DateTime<Utc>,
    attempts: i64,
    sent_at: DateTime<Utc>,
    window_start: DateTime<Utc>,
    sends_in_window: i64,
}

async fn pending(tx: &mut Tx, user: Uuid) -> Result<Option<PendingCode>, ApiError> {
    let row = sqlx::query(
        "SELECT code_hash, expires_at, attempts, sent_at, window_start, sends_in_window \
         FROM phone_codes WHERE user_id = $1",
    )
    .bind(user.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| -> Result<PendingCode, ApiError> {
        Ok(PendingCode {
            code_hash: r.try_get("code_hash")?,
            expires_at: r.time("expires_at")?,
            attempts: r.try_get("attempts")?,
            sent_at: r.time("sent_at")?,
            window_start: r.time("window_start")?,
            sends_in_window: r.try_get("sends_in_window")?,
        })
    })
    .transpose()
}

/// Sends `user` a new code, unless one went out less than the cooldown ago
/// or the hour's cap is reached (429 with when to try again).
pub async fn resend(deps: &ServiceDeps, user: &UserRecord) -> Result<DateTime<Utc>, ApiError> {
    if user.phone_verified {
        return Err(ApiError::Conflict(
            "the phone number is already verified".into(),
        ));
    }
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    if let Some(p) = pending(&mut tx, user.id).await? {
        let cooldown_ends = p.sent_at + Duration::seconds(RESEND_COOLDOWN_SECS);
        let window_ends = p.window_start + Duration::hours(1);
        let wait_until = if now < cooldown_ends {
            Some(cooldown_ends)
        } else if p.sends_in_window >= MAX_SENDS_PER_HOUR && now < window_ends {
            Some(window_ends)
        } else {
            None
        };
        if let Some(until) = wait_until {
            return Err(ApiError::TooManyRequests {
                retry_after_secs: (until - now).num_seconds().max(1) as u64,
            });
        }
    }
    issue(&mut tx, deps, user.id, &user.phone, now).await?;
    deps.events.commit(tx).await?;
    Ok(now + Duration::minutes(CODE_TTL_MINUTES))
}

/// Checks `code` against `user`'s pending code; right, the phone is verified.
/// `by` is who typed it (the customer, or the agent beside them).
pub async fn verify(
    deps: &ServiceDeps,
    user: &UserRecord,
    code: &str,
    by: Uuid,
) -> Result<(), ApiError> {
    if user.phone_verified {
        return Err(ApiError::Conflict(
            "the phone number is already verified".into(),
        ));
    }
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::field(
            "code",
            "must be the six digits sent by SMS",
        ));
    }
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let Some(p) = pending(&mut tx, user.id).await? else {
        return Err(ApiError::field(
            "code",
            "no code is pending; ask for a new one",
        ));
    };
    if p.attempts >= MAX_ATTEMPTS {
        return Err(ApiError::field(
            "code",
            "too many wrong codes; ask for a new one",
        ));
    }
    if now >= p.expires_at {
        return Err(ApiError::field(
            "code",
            "the code has expired; ask for a new one",
        ));
    }
    // Under every blind key held, so a rotation within the code's ten
    // minutes does not void it. Compared in constant time (subtle), so the
    // time taken tells nothing about how much of a guess was right.
    let matches = deps
        .keyring
        .blind_indexes(CODE_HASH_FIELD, &format!("{}:{code}", user.id))
        .iter()
        .any(|given| bool::from(given.as_bytes().ct_eq(p.code_hash.as_bytes())));
    if !matches {
        sqlx::query("UPDATE phone_codes SET attempts = attempts + 1 WHERE user_id = $1")
            .bind(user.id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let left = MAX_ATTEMPTS - p.attempts - 1;
        return Err(ApiError::field(
            "code",
            if left > 0 {
                format!("wrong code; {left} tries left")
            } else {
                "wrong code; ask for a new one".to_owned()
            },
        ));
    }
    mark_verified(&mut tx, deps, user.id, &user.phone, Some(by), now).await?;
    deps.events.commit(tx).await?;
    Ok(())
}

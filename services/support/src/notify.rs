//! The notification pipeline: events become notifications (one per event,
//! template and channel, so a redelivery adds nothing), in the customer's
//! language, on the channels they chose, held through quiet hours unless
//! critical; a dispatcher sends the queued ones with retries and backoff, SMS
//! failing over to a second provider, under a per-customer rate limit; every
//! step is written to the notification's delivery log.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use miliki_platform::clock::{from_micros, to_micros};
use miliki_platform::db::{Db, RowExt, Tx};
use miliki_platform::string_enum;
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::state::AppState;
use crate::templates::{self, Template};

string_enum!(
    /// Where a notification is delivered.
    Channel { InApp => "in_app", Sms => "sms", Email => "email", Push => "push" }
);

/// Wakes the in-app streams of a customer when something new is theirs.
#[derive(Clone)]
pub struct Hub {
    tx: tokio::sync::broadcast::Sender<Uuid>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

impl Hub {
    pub fn nudge(&self, customer: Uuid) {
        let _ = self.tx.send(customer);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Uuid> {
        self.tx.subscribe()
    }
}

// ---------------------------------------------------------------- preferences

/// A customer's choices. Without a row: English, every channel that has an
/// address, no quiet hours.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Preferences {
    /// `en` or `sw`.
    pub language: String,
    /// Per category (`account`, `reservations`, `credit`, `contracts`, `payments`,
    /// `security`, `support`): the channels to use. A category left out uses all.
    pub channels: BTreeMap<String, Vec<Channel>>,
    /// `HH:MM` local time; with `quiet_end`, non-critical messages wait until the end.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    /// IANA time zone of the quiet hours, default `Africa/Nairobi`.
    pub timezone: String,
    /// Where SMS go (E.164).
    pub sms_number: Option<String>,
    /// Where email goes.
    pub email: Option<String>,
    /// The device's FCM registration token.
    pub push_token: Option<String>,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            language: "en".into(),
            channels: BTreeMap::new(),
            quiet_start: None,
            quiet_end: None,
            timezone: "Africa/Nairobi".into(),
            sms_number: None,
            email: None,
            push_token: None,
        }
    }
}

fn minutes_to_hhmm(m: i64) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

pub fn parse_hhmm(s: &str) -> Option<i64> {
    let t = NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()?;
    Some(i64::from(t.hour()) * 60 + i64::from(t.minute()))
}

pub async fn preferences<'e, E>(executor: E, customer: Uuid) -> Result<Preferences, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT language, channels, quiet_start, quiet_end, timezone, sms_number, email, push_token \
         FROM notification_preferences WHERE customer_id = $1",
    )
    .bind(customer.to_string())
    .fetch_optional(executor)
    .await?;
    let Some(r) = row else {
        return Ok(Preferences::default());
    };
    let channels: String = r.try_get("channels")?;
    Ok(Preferences {
        language: r.try_get("language")?,
        channels: serde_json::from_str(&channels).unwrap_or_default(),
        quiet_start: r
            .try_get::<Option<i64>, _>("quiet_start")?
            .map(minutes_to_hhmm),
        quiet_end: r
            .try_get::<Option<i64>, _>("quiet_end")?
            .map(minutes_to_hhmm),
        timezone: r.try_get("timezone")?,
        sms_number: r.try_get("sms_number")?,
        email: r.try_get("email")?,
        push_token: r.try_get("push_token")?,
    })
}

pub async fn save_preferences(
    db: &Db,
    customer: Uuid,
    p: &Preferences,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let channels = serde_json::to_string(&p.channels).unwrap_or_else(|_| "{}".into());
    sqlx::query(
        "INSERT INTO notification_preferences (customer_id, language, channels, quiet_start, quiet_end, \
         timezone, sms_number, email, push_token, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (customer_id) DO UPDATE SET language = $2, channels = $3, quiet_start = $4, \
         quiet_end = $5, timezone = $6, sms_number = $7, email = $8, push_token = $9, updated_at = $10",
    )
    .bind(customer.to_string())
    .bind(&p.language)
    .bind(channels)
    .bind(p.quiet_start.as_deref().and_then(parse_hhmm))
    .bind(p.quiet_end.as_deref().and_then(parse_hhmm))
    .bind(&p.timezone)
    .bind(&p.sms_number)
    .bind(&p.email)
    .bind(&p.push_token)
    .bind(to_micros(now))
    .execute(db.writer())
    .await?;
    Ok(())
}

/// When a message may go out: `now`, or the end of the quiet hours `now` falls in.
pub fn quiet_until(p: &Preferences, now: DateTime<Utc>) -> DateTime<Utc> {
    let (Some(start), Some(end)) = (
        p.quiet_start.as_deref().and_then(parse_hhmm),
        p.quiet_end.as_deref().and_then(parse_hhmm),
    ) else {
        return now;
    };
    if start == end {
        return now;
    }
    let tz: chrono_tz::Tz = p.timezone.parse().unwrap_or(chrono_tz::Africa::Nairobi);
    let local = now.with_timezone(&tz);
    let minute = i64::from(local.hour()) * 60 + i64::from(local.minute());
    let inside = if start < end {
        minute >= start && minute < end
    } else {
        minute >= start || minute < end
    };
    if !inside {
        return now;
    }
    // Minutes from now until the end, crossing midnight when it must.
    let wait = (end - minute).rem_euclid(24 * 60);
    let until = now + chrono::Duration::minutes(wait)
        - chrono::Duration::seconds(i64::from(local.second()));
    until.max(now)
}

// ---------------------------------------------------------------- records

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub event_id: Uuid,
    pub template: String,
    pub channel: String,
    pub category: String,
    pub priority: String,
    pub language: String,
    pub subject: String,
    pub body: String,
    /// `delivered` (in-app), or `queued`, `sending`, `sent`, `failed`, `cancelled`;
    /// a low-priority message is `digest` (held for the digest), then `digested`.
    pub status: String,
    pub attempts: i64,
    pub send_after: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, customer_id, event_id, template, channel, category, priority, language, \
    subject, body, status, address, attempts, send_after, read_at, created_at";

fn view_from_row(r: &AnyRow) -> Result<NotificationView, sqlx::Error> {
    Ok(NotificationView {
        id: r.uuid("id")?,
        customer_id: r.uuid("customer_id")?,
        event_id: r.uuid("event_id")?,
        template: r.try_get("template")?,
        channel: r.try_get("channel")?,
        category: r.try_get("category")?,
        priority: r.try_get("priority")?,
        language: r.try_get("language")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        send_after: r.time("send_after")?,
        read_at: r.opt_time("read_at")?,
        created_at: r.time("created_at")?,
    })
}

pub async fn log(
    tx: &mut Tx,
    notification: Uuid,
    status: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notification_deliveries (id, notification_id, status, detail, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(miliki_platform::id::new_id().to_string())
    .bind(notification.to_string())
    .bind(status)
    .bind(detail)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One message to send, as the consumer derives it from an event.
pub struct Message<'a> {
    pub event_id: Uuid,
    pub customer: Uuid,
    pub template: &'a Template,
    pub vars: serde_json::Value,
    /// Not before (a reminder); `None` is now.
    pub at: Option<DateTime<Utc>>,
    pub cancel_key: Option<String>,
}

/// Writes the notifications of `m` on every channel the customer takes for its
/// category, in `tx`. Returns the ids written (none when already written).
///
/// Low-priority messages on SMS, email and push are held (status `digest`)
/// for the customer's next digest at local `digest_at` ([`crate::digest`]).
pub async fn enqueue(
    tx: &mut Tx,
    m: &Message<'_>,
    now: DateTime<Utc>,
    digest_at: NaiveTime,
) -> anyhow::Result<Vec<Uuid>> {
    let prefs = preferences(&mut **tx, m.customer).await?;
    let chosen: Vec<Channel> = prefs
        .channels
        .get(m.template.category)
        .cloned()
        .unwrap_or_else(|| Channel::ALL.to_vec());
    let critical = m.template.priority == "critical";
    let mut ids = Vec::new();
    for channel in Channel::ALL {
        // Critical messages reach the customer in-app and by SMS whatever they chose.
        let forced = critical && matches!(channel, Channel::InApp | Channel::Sms);
        if !chosen.contains(channel) && !forced {
            continue;
        }
        let address = match channel {
            Channel::InApp => None,
            Channel::Sms => prefs.sms_number.clone(),
            Channel::Email => prefs.email.clone(),
            Channel::Push => prefs.push_token.clone(),
        };
        if *channel != Channel::InApp && address.is_none() {
            continue;
        }
        let rendered =
            templates::render(m.template, &prefs.language, *channel, &m.vars).map_err(|e| {
                anyhow::anyhow!("template {} ({}): {e}", m.template.name, prefs.language)
            })?;
        let base = m.at.unwrap_or(now).max(now);
        let digested = m.template.priority == "low" && *channel != Channel::InApp;
        let send_after = if critical || *channel == Channel::InApp {
            base
        } else if digested {
            quiet_until(
                &prefs,
                crate::digest::next_digest(&prefs.timezone, base, digest_at),
            )
        } else {
            quiet_until(&prefs, base)
        };
        // An in-app message is delivered once it is written (and visible from `send_after`).
        let status = if *channel == Channel::InApp {
            "delivered"
        } else if digested {
            "digest"
        } else {
            "queued"
        };
        let id = miliki_platform::id::new_id();
        let inserted = sqlx::query(
            "INSERT INTO notifications (id, customer_id, event_id, template, channel, category, priority, \
             language, subject, body, status, address, attempts, send_after, cancel_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $14, $15) \
             ON CONFLICT (event_id, template, channel) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(m.customer.to_string())
        .bind(m.event_id.to_string())
        .bind(m.template.name)
        .bind(channel.as_str())
        .bind(m.template.category)
        .bind(m.template.priority)
        .bind(&prefs.language)
        .bind(&rendered.subject)
        .bind(&rendered.body)
        .bind(status)
        .bind(&address)
        .bind(to_micros(send_after))
        .bind(&m.cancel_key)
        .bind(to_micros(now))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            let detail = if digested {
                format!("held for the digest at {}", send_after.to_rfc3339())
            } else if send_after > now {
                format!("held until {}", send_after.to_rfc3339())
            } else {
                "queued".to_owned()
            };
            log(tx, id, status, &detail, now).await?;
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Cancels queued reminders made moot (a reservation converted or ended).
pub async fn cancel(tx: &mut Tx, key: &str, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id FROM notifications WHERE cancel_key = $1 AND status IN ('queued', 'delivered') \
         AND send_after > $2",
    )
    .bind(key)
    .bind(to_micros(now))
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        let id = r.uuid("id")?;
        sqlx::query("UPDATE notifications SET status = 'cancelled' WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
        log(tx, id, "cancelled", "no longer relevant", now).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- providers

/// How the dispatcher reaches the outside world, from `MILIKI_*` settings.
#[derive(Debug, Clone)]
pub struct Providers {
    /// Africa's Talking messaging API base URLs (primary, then failover), with credentials.
    pub sms: Vec<SmsProvider>,
    pub push: Option<PushProvider>,
    /// SMTP when `MILIKI_SMTP_URL` is set; otherwise email goes to the local sink.
    pub email: Option<crate::email::Smtp>,
    pub max_attempts: i64,
    pub retry_base: chrono::Duration,
    /// Non-critical SMS/push/email per customer per hour.
    pub per_customer_per_hour: i64,
    pub poll: Duration,
}

#[derive(Debug, Clone)]
pub struct SmsProvider {
    pub base_url: String,
    pub username: String,
    pub api_key: String,
    pub sender_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PushProvider {
    pub base_url: String,
    pub project_id: String,
    /// A bearer configured directly (`MILIKI_PUSH_ACCESS_TOKEN`), used when no
    /// service account is.
    pub access_token: String,
    /// Mints and caches bearer tokens (`MILIKI_PUSH_SERVICE_ACCOUNT_FILE`).
    pub service_account: Option<std::sync::Arc<crate::fcm::ServiceAccount>>,
}

fn setting(settings: &miliki_platform::config::Settings, key: &str) -> Option<String> {
    match settings.extra.get(key)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Providers {
    pub fn from_deps(deps: &miliki_events::service::ServiceDeps) -> anyhow::Result<Self> {
        let s = &deps.settings;
        let num = |key: &str, default: i64| {
            setting(s, key)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        let sandbox = format!("{}/sandbox", deps.base_url.trim_end_matches('/'));
        // A path (`/sandbox/sms-fallback`) is on this process.
        let here = |url: String| {
            if url.starts_with('/') {
                format!("{}{url}", deps.base_url.trim_end_matches('/'))
            } else {
                url
            }
        };
        let mut sms = vec![SmsProvider {
            base_url: setting(s, "sms_base_url")
                .map(here)
                .unwrap_or_else(|| format!("{sandbox}/sms")),
            username: setting(s, "sms_username").unwrap_or_else(|| "sandbox".into()),
            api_key: setting(s, "sms_api_key").unwrap_or_else(|| "sandbox".into()),
            sender_id: setting(s, "sms_sender_id"),
        }];
        if let Some(base_url) = setting(s, "sms_fallback_base_url").map(here) {
            sms.push(SmsProvider {
                base_url,
                username: setting(s, "sms_fallback_username").unwrap_or_else(|| "sandbox".into()),
                api_key: setting(s, "sms_fallback_api_key").unwrap_or_else(|| "sandbox".into()),
                sender_id: setting(s, "sms_fallback_sender_id")
                    .or_else(|| setting(s, "sms_sender_id")),
            });
        }
        let service_account = setting(s, "push_service_account_file")
            .map(|path| {
                crate::fcm::ServiceAccount::load(&path, setting(s, "push_token_uri"), here)
                    .map(std::sync::Arc::new)
            })
            .transpose()?;
        let push = Some(PushProvider {
            base_url: setting(s, "push_base_url")
                .map(here)
                .unwrap_or_else(|| format!("{sandbox}/push")),
            // The project named, else the service account's, else the sandbox's.
            project_id: setting(s, "push_project_id")
                .or_else(|| service_account.as_ref().and_then(|a| a.project_id.clone()))
                .unwrap_or_else(|| "sandbox".into()),
            access_token: setting(s, "push_access_token").unwrap_or_else(|| "sandbox".into()),
            service_account,
        });
        crate::digest::check(s)?;
        let email = crate::email::Smtp::from_settings(
            setting(s, "smtp_url").as_deref(),
            setting(s, "smtp_from").as_deref(),
            setting(s, "smtp_helo").as_deref(),
        )?;
        Ok(Self {
            sms,
            push,
            email,
            max_attempts: num("support_notify_max_attempts", 5).clamp(1, 50),
            retry_base: chrono::Duration::seconds(
                num("support_notify_retry_base_secs", 30).clamp(1, 3600),
            ),
            per_customer_per_hour: num("support_notify_per_customer_per_hour", 20).clamp(1, 10_000),
            poll: Duration::from_millis(num("support_notify_poll_ms", 200).clamp(10, 60_000) as u64),
        })
    }

    /// The wait before attempt `attempt + 1` after `attempt` failures: base × 2^(attempt−1), at most a day.
    pub fn backoff(&self, attempt: i64) -> chrono::Duration {
        let factor = 1i64 << (attempt - 1).clamp(0, 16);
        (self.retry_base * factor as i32).min(chrono::Duration::days(1))
    }
}

/// Sends one SMS in Africa's Talking's format; the provider's message id, or why not.
async fn send_sms(
    http: &reqwest::Client,
    p: &SmsProvider,
    to: &str,
    message: &str,
) -> Result<String, String> {
    let mut form = vec![
        ("username", p.username.as_str()),
        ("to", to),
        ("message", message),
    ];
    if let Some(from) = &p.sender_id {
        form.push(("from", from.as_str()));
    }
    let resp = http
        .post(format!(
            "{}/version1/messaging",
            p.base_url.trim_end_matches('/')
        ))
        .header("apiKey", &p.api_key)
        .header("Accept", "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("{}: {e}", p.base_url))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        return Err(format!("{}: HTTP {status}", p.base_url));
    }
    let recipient = &body["SMSMessageData"]["Recipients"][0];
    match recipient["status"].as_str() {
        Some("Success") => Ok(recipient["messageId"].as_str().unwrap_or("").to_owned()),
        other => Err(format!(
            "{}: {}",
            p.base_url,
            other
                .map(str::to_owned)
                .unwrap_or_else(|| body["SMSMessageData"]["Message"].to_string())
        )),
    }
}

/// Sends one push message through FCM HTTP v1.
async fn send_push(
    http: &reqwest::Client,
    clock: &miliki_platform::clock::SharedClock,
    p: &PushProvider,
    token: &str,
    title: &str,
    body: &str,
    n: &NotificationView,
) -> Result<String, String> {
    let bearer = match &p.service_account {
        Some(account) => account.access_token(http, clock).await?,
        None => p.access_token.clone(),
    };
    let resp = http
        .post(format!(
            "{}/v1/projects/{}/messages:send",
            p.base_url.trim_end_matches('/'),
            p.project_id
        ))
        .bearer_auth(&bearer)
        .json(&serde_json::json!({
            "message": {
                "token": token,
                "notification": {"title": title, "body": body},
                "data": {"notification_id": n.id.to_string(), "template": n.template},
            }
        }))
        .send()
        .await
        .map_err(|e| format!("{}: {e}", p.base_url))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        return Err(format!(
            "{}: HTTP {status} {}",
            p.base_url,
            body["error"]["status"].as_str().unwrap_or("")
        ));
    }
    Ok(body["name"].as_str().unwrap_or("").to_owned())
}

pub struct Dispatcher {
    pub state: AppState,
    pub providers: Providers,
    pub http: reqwest::Client,
}

impl Dispatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.providers.poll) => {}
            }
            if let Err(e) = self.dispatch_due().await {
                tracing::warn!(error = %e, "notification dispatch failed; will retry");
            }
        }
    }

    /// Sends what is due at the clock's now. Returns how many were attempted.
    pub async fn dispatch_due(&self) -> anyhow::Result<usize> {
        let deps = &self.state.deps;
        let now = deps.clock.now();
        // Held low-priority messages whose digest time came become one digest each.
        crate::digest::compose_due(&self.state, now).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE status = 'queued' AND send_after <= $1 \
             ORDER BY send_after, id LIMIT 100"
        ))
        .bind(to_micros(now))
        .fetch_all(deps.db.reader())
        .await?;
        let mut n = 0;
        for row in rows {
            let address: Option<String> = row.try_get("address")?;
            let note = view_from_row(&row)?;
            // Claim it, so a second dispatcher (another replica) skips it.
            let claimed = sqlx::query(
                "UPDATE notifications SET status = 'sending' WHERE id = $1 AND status = 'queued'",
            )
            .bind(note.id.to_string())
            .execute(deps.db.writer())
            .await?
            .rows_affected();
            if claimed != 1 {
                continue;
            }
            n += 1;
            if note.priority != "critical" {
                let hour_ago = to_micros(now - chrono::Duration::hours(1));
                let recent: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM notifications WHERE customer_id = $1 AND channel = $2 \
                     AND status = 'sent' AND send_after > $3",
                )
                .bind(note.customer_id.to_string())
                .bind(&note.channel)
                .bind(hour_ago)
                .fetch_one(deps.db.reader())
                .await?;
                if recent >= self.providers.per_customer_per_hour {
                    let later = now + chrono::Duration::minutes(10);
                    let mut tx = deps.db.begin().await?;
                    sqlx::query(
                        "UPDATE notifications SET status = 'queued', send_after = $1 WHERE id = $2",
                    )
                    .bind(to_micros(later))
                    .bind(note.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                    log(
                        &mut tx,
                        note.id,
                        "rate_limited",
                        &format!("held until {}", later.to_rfc3339()),
                        now,
                    )
                    .await?;
                    tx.commit().await?;
                    continue;
                }
            }
            let result = self
                .send(&note, address.as_deref().unwrap_or_default())
                .await;
            let attempt = note.attempts + 1;
            let mut tx = deps.db.begin().await?;
            match result {
                Ok((provider_ref, attempts_log)) => {
                    for failure in &attempts_log {
                        log(&mut tx, note.id, "failed", failure, now).await?;
                    }
                    sqlx::query(
                        "UPDATE notifications SET status = 'sent', attempts = $1, provider_ref = $2, \
                         send_after = $3 WHERE id = $4",
                    )
                    .bind(attempt)
                    .bind(&provider_ref)
                    .bind(to_micros(now))
                    .bind(note.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                    log(
                        &mut tx,
                        note.id,
                        "sent",
                        &format!("attempt {attempt}: {provider_ref}"),
                        now,
                    )
                    .await?;
                }
                Err(failures) => {
                    for failure in &failures {
                        log(
                            &mut tx,
                            note.id,
                            "failed",
                            &format!("attempt {attempt}: {failure}"),
                            now,
                        )
                        .await?;
                    }
                    if attempt >= self.providers.max_attempts {
                        sqlx::query("UPDATE notifications SET status = 'failed', attempts = $1 WHERE id = $2")
                            .bind(attempt)
                            .bind(note.id.to_string())
                            .execute(&mut *tx)
                            .await?;
                        log(
                            &mut tx,
                            note.id,
                            "gave_up",
                            &format!("after {attempt} attempts"),
                            now,
                        )
                        .await?;
                    } else {
                        let retry = now + self.providers.backoff(attempt);
                        sqlx::query(
                            "UPDATE notifications SET status = 'queued', attempts = $1, send_after = $2 WHERE id = $3",
                        )
                        .bind(attempt)
                        .bind(to_micros(retry))
                        .bind(note.id.to_string())
                        .execute(&mut *tx)
                        .await?;
                        log(
                            &mut tx,
                            note.id,
                            "retry_scheduled",
                            &retry.to_rfc3339(),
                            now,
                        )
                        .await?;
                    }
                }
            }
            tx.commit().await?;
        }
        Ok(n)
    }

    /// One delivery attempt: the provider's reference and the failures met on
    /// the way (SMS failover), or every failure.
    async fn send(
        &self,
        n: &NotificationView,
        address: &str,
    ) -> Result<(String, Vec<String>), Vec<String>> {
        match n.channel.parse::<Channel>() {
            Ok(Channel::Sms) => {
                let mut failures = Vec::new();
                for p in &self.providers.sms {
                    match send_sms(&self.http, p, address, &n.body).await {
                        Ok(id) => return Ok((format!("sms {} {id}", p.base_url), failures)),
                        Err(e) => failures.push(e),
                    }
                }
                Err(failures)
            }
            Ok(Channel::Push) => {
                let Some(p) = &self.providers.push else {
                    return Err(vec!["no push provider configured".into()]);
                };
                send_push(
                    &self.http,
                    &self.state.deps.clock,
                    p,
                    address,
                    &n.subject,
                    &n.body,
                    n,
                )
                .await
                .map(|r| (format!("fcm {r}"), Vec::new()))
                .map_err(|e| vec![e])
            }
            Ok(Channel::Email) => {
                if let Some(smtp) = &self.providers.email {
                    return smtp
                        .send(address, &n.subject, &n.body)
                        .await
                        .map(|reply| (reply, Vec::new()))
                        .map_err(|e| vec![e]);
                }
                let now = self.state.deps.clock.now();
                let sink_id = miliki_platform::id::new_id();
                sqlx::query(
                    "INSERT INTO email_sink (id, notification_id, to_address, subject, body, at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(sink_id.to_string())
                .bind(n.id.to_string())
                .bind(address)
                .bind(&n.subject)
                .bind(&n.body)
                .bind(to_micros(now))
                .execute(self.state.deps.db.writer())
                .await
                .map(|_| (format!("email sink {sink_id}"), Vec::new()))
                .map_err(|e| vec![format!("email sink: {e}")])
            }
            Ok(Channel::InApp) | Err(_) => Ok(("in_app".into(), Vec::new())),
        }
    }
}

// ---------------------------------------------------------------- reads

pub async fn list_for(
    db: &Db,
    customer: Uuid,
    now: DateTime<Utc>,
    unread_only: bool,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<NotificationView>, sqlx::Error> {
    let mut sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE customer_id = $1 AND channel = 'in_app' \
         AND status = 'delivered' AND send_after <= $2"
    );
    if unread_only {
        sql.push_str(" AND read_at IS NULL");
    }
    if before.is_some() {
        sql.push_str(" AND id < $3 ORDER BY id DESC LIMIT $4");
    } else {
        sql.push_str(" ORDER BY id DESC LIMIT $3");
    }
    let mut q = sqlx::query(&sql)
        .bind(customer.to_string())
        .bind(to_micros(now));
    if let Some(b) = before {
        q = q.bind(b.to_string());
    }
    q.bind(i64::from(limit) + 1)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(view_from_row)
        .collect()
}

pub async fn after(
    db: &Db,
    customer: Uuid,
    now: DateTime<Utc>,
    cursor: Option<Uuid>,
) -> Result<Vec<NotificationView>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE customer_id = $1 AND channel = 'in_app' \
         AND status = 'delivered' AND send_after <= $2 AND id > $3 ORDER BY id LIMIT 200"
    ))
    .bind(customer.to_string())
    .bind(to_micros(now))
    .bind(cursor.map(|c| c.to_string()).unwrap_or_default())
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(view_from_row)
    .collect()
}

pub async fn unread_count(db: &Db, customer: Uuid, now: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications WHERE customer_id = $1 AND channel = 'in_app' \
         AND status = 'delivered' AND send_after <= $2 AND read_at IS NULL",
    )
    .bind(customer.to_string())
    .bind(to_micros(now))
    .fetch_one(db.reader())
    .await
}

pub async fn find(db: &Db, id: Uuid) -> Result<Option<NotificationView>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(db.reader())
    .await?
    .map(|r| view_from_row(&r))
    .transpose()
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryStep {
    pub status: String,
    pub detail: String,
    pub at: DateTime<Utc>,
}

pub async fn deliveries(db: &Db, id: Uuid) -> Result<Vec<DeliveryStep>, sqlx::Error> {
    sqlx::query(
        "SELECT status, detail, at FROM notification_deliveries WHERE notification_id = $1 ORDER BY id",
    )
    .bind(id.to_string())
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|r| {
        Ok(DeliveryStep {
            status: r.try_get("status")?,
            detail: r.try_get("detail")?,
            at: r.time("at")?,
        })
    })
    .collect()
}

/// Every notification of an event (all channels), for staff and the customer's own.
pub async fn of_customer_all_channels(
    db: &Db,
    customer: Uuid,
    limit: i64,
) -> Result<Vec<NotificationView>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE customer_id = $1 ORDER BY id DESC LIMIT $2"
    ))
    .bind(customer.to_string())
    .bind(limit)
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(view_from_row)
    .collect()
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SunkEmail {
    pub id: Uuid,
    pub notification_id: Uuid,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub at: DateTime<Utc>,
}

pub async fn email_sink(db: &Db, limit: i64) -> Result<Vec<SunkEmail>, sqlx::Error> {
    sqlx::query(
        "SELECT id, notification_id, to_address, subject, body, at FROM email_sink ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(|r| {
        Ok(SunkEmail {
            id: r.uuid("id")?,
            notification_id: r.uuid("notification_id")?,
            to: r.try_get("to_address")?,
            subject: r.try_get("subject")?,
            body: r.try_get("body")?,
            at: from_micros(r.try_get("at")?),
        })
    })
    .collect()
}

/// Money as a receipt shows it: `KES 1,234.50`.
pub fn format_money(amount_minor: i64, currency: &str) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let whole = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{currency} {sign}{grouped}.{:02}", abs % 100)
}

pub fn api_error(e: sqlx::Error) -> ApiError {
    ApiError::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn money_is_grouped() {
        assert_eq!(format_money(123_450, "KES"), "KES 1,234.50");
        assert_eq!(format_money(5, "KES"), "KES 0.05");
        assert_eq!(format_money(100_000_000, "KES"), "KES 1,000,000.00");
    }

    #[test]
    fn quiet_hours_wrap_midnight_in_local_time() {
        let p = Preferences {
            quiet_start: Some("22:00".into()),
            quiet_end: Some("07:00".into()),
            ..Preferences::default()
        };
        // 20:00 UTC is 23:00 in Nairobi: held until 07:00 local = 04:00 UTC.
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 20, 0, 0).unwrap();
        assert_eq!(
            quiet_until(&p, now),
            Utc.with_ymd_and_hms(2026, 3, 3, 4, 0, 0).unwrap()
        );
        // 08:00 UTC is 11:00 local: not quiet.
        let day = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        assert_eq!(quiet_until(&p, day), day);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = Providers {
            sms: vec![],
            push: None,
            email: None,
            max_attempts: 5,
            retry_base: chrono::Duration::seconds(30),
            per_customer_per_hour: 20,
            poll: Duration::from_millis(100),
        };
        assert_eq!(p.backoff(1), chrono::Duration::seconds(30));
        assert_eq!(p.backoff(2), chrono::Duration::seconds(60));
        assert_eq!(p.backoff(3), chrono::Duration::seconds(120));
        assert!(p.backoff(40) <= chrono::Duration::days(1));
    }
}

//! What every handler can reach, and the caller as this service sees them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use chrono::NaiveDate;
use chrono_tz::Tz;
use miliki_events::service::ServiceDeps;
use miliki_events::standing;
use miliki_platform::auth::{AuthUser, Role, Tokens};
use miliki_platform::config::Settings;
use miliki_platform::ApiError;
use uuid::Uuid;

use crate::rails::Rails;

/// The service's own settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The operator's time zone (`MILIKI_TIME_ZONE`): schedules and "today" are its dates.
    pub time_zone: Tz,
    /// Upper bounds, in days past due, of the arrears buckets after `current`
    /// (`MILIKI_PAYMENTS_ARREARS_BUCKETS`, default `7,30,60,90`).
    pub bucket_bounds: Vec<i64>,
    /// How often the daily job looks for contracts not yet aged for today
    /// (real time; what "today" is comes from the injected clock).
    pub arrears_poll: Duration,
    /// Contracts aged per transaction.
    pub arrears_batch: usize,
    /// How often the collector looks for due attempts and checks (real
    /// time; what is due comes from the injected clock).
    pub collect_poll: Duration,
    /// Prompts and checks the collector has out at once.
    pub collect_concurrency: usize,
    /// The local time from which the daily job publishes the installment-due
    /// reminders of the day (`MILIKI_PAYMENTS_REMINDER_AT`, `HH:MM`, default 08:00).
    pub reminder_at: chrono::NaiveTime,
}

/// A service setting as trimmed text (strings and numbers), if set.
pub(crate) fn extra_str(settings: &Settings, key: &str) -> Option<String> {
    match settings.extra.get(key) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl Config {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let time_zone = match extra_str(settings, "time_zone") {
            None => chrono_tz::Africa::Nairobi,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                anyhow::anyhow!("MILIKI_TIME_ZONE {name:?} is not an IANA time zone")
            })?,
        };
        let bucket_bounds = match extra_str(settings, "payments_arrears_buckets") {
            None => vec![7, 30, 60, 90],
            Some(list) => {
                let bounds = list
                    .split(',')
                    .map(|s| s.trim().parse::<i64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "MILIKI_PAYMENTS_ARREARS_BUCKETS must be day counts like 7,30,60,90"
                        )
                    })?;
                if bounds.is_empty() || bounds[0] < 1 || bounds.windows(2).any(|w| w[0] >= w[1]) {
                    anyhow::bail!(
                        "MILIKI_PAYMENTS_ARREARS_BUCKETS must be increasing day counts from 1"
                    );
                }
                bounds
            }
        };
        let poll = extra_str(settings, "payments_arrears_poll_ms")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1000)
            .max(10);
        let batch = extra_str(settings, "payments_arrears_batch")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(500)
            .clamp(1, 10_000);
        let number = |key: &str, default: u64| {
            extra_str(settings, key)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(default)
        };
        let reminder_at = match extra_str(settings, "payments_reminder_at") {
            None => chrono::NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
            Some(t) => chrono::NaiveTime::parse_from_str(&t, "%H:%M").map_err(|_| {
                anyhow::anyhow!("MILIKI_PAYMENTS_REMINDER_AT {t:?} is not a time like 08:00")
            })?,
        };
        Ok(Self {
            reminder_at,
            time_zone,
            bucket_bounds,
            arrears_poll: Duration::from_millis(poll),
            arrears_batch: batch,
            collect_poll: Duration::from_millis(number("payments_collect_poll_ms", 1000).max(10)),
            collect_concurrency: number("payments_collect_concurrency", 64).clamp(1, 1024) as usize,
        })
    }

    /// The arrears bucket of `days_past_due`: `current`, then `1-7`, `8-30`, … `90+`.
    pub fn bucket(&self, days_past_due: i64) -> String {
        if days_past_due <= 0 {
            return "current".into();
        }
        let mut lower = 1;
        for &upper in &self.bucket_bounds {
            if days_past_due <= upper {
                return format!("{lower}-{upper}");
            }
            lower = upper + 1;
        }
        format!("{}+", lower - 1)
    }

    /// Every bucket name, in order.
    pub fn buckets(&self) -> Vec<String> {
        let mut out = vec!["current".to_owned()];
        let mut lower = 1;
        for &upper in &self.bucket_bounds {
            out.push(format!("{lower}-{upper}"));
            lower = upper + 1;
        }
        out.push(format!("{}+", lower - 1));
        out
    }
}

#[derive(Clone)]
pub struct AppState {
    pub deps: ServiceDeps,
    pub config: Arc<Config>,
    pub rails: Arc<Rails>,
    /// Confirmed money on its way to the credit writer ([`crate::collect::run_credits`]).
    pub credits: tokio::sync::mpsc::Sender<crate::collect::Confirmed>,
    credit_queue:
        Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<crate::collect::Confirmed>>>>,
}

impl AppState {
    pub fn new(deps: ServiceDeps) -> anyhow::Result<Self> {
        let (credits, queue) = tokio::sync::mpsc::channel(10_000);
        Ok(Self {
            config: Arc::new(Config::from_settings(&deps.settings)?),
            rails: Arc::new(Rails::from_deps(&deps)?),
            credits,
            credit_queue: Arc::new(std::sync::Mutex::new(Some(queue))),
            deps,
        })
    }

    /// The receiving end of [`AppState::credits`], once: for the credit writer.
    pub fn take_credit_queue(
        &self,
    ) -> Option<tokio::sync::mpsc::Receiver<crate::collect::Confirmed>> {
        self.credit_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Today in the operator's time zone, by the injected clock.
    pub fn today(&self) -> NaiveDate {
        self.deps
            .clock
            .now()
            .with_timezone(&self.config.time_zone)
            .date_naive()
    }
}

// The one place the auth layer's state bound is met.
impl FromRef<AppState> for Arc<Tokens> {
    fn from_ref(state: &AppState) -> Self {
        state.deps.tokens.clone()
    }
}

/// An authenticated caller who is not suspended, as far as this service has
/// learned from the users service's events.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub id: Uuid,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        miliki_platform::auth::require_role(self.role, roles)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = AuthUser::from_request_parts(parts, state).await?;
        let standing = standing::standing(&state.deps.db, auth.id).await?;
        if standing.suspended {
            return Err(ApiError::Unauthenticated("the account is suspended".into()));
        }
        Ok(Caller {
            id: auth.id,
            role: auth.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_bounds() {
        let c = Config::from_settings(&Settings::default()).unwrap();
        assert_eq!(c.bucket(0), "current");
        assert_eq!(c.bucket(1), "1-7");
        assert_eq!(c.bucket(7), "1-7");
        assert_eq!(c.bucket(8), "8-30");
        assert_eq!(c.bucket(90), "61-90");
        assert_eq!(c.bucket(91), "90+");
        assert_eq!(
            c.buckets(),
            vec!["current", "1-7", "8-30", "31-60", "61-90", "90+"]
        );
    }
}

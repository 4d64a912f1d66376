//! What every handler can reach, and the caller as this service sees them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use miliki_events::service::ServiceDeps;
use miliki_events::standing;
use miliki_platform::auth::{AuthUser, Role, Tokens};
use miliki_platform::config::Settings;
use miliki_platform::ApiError;
use uuid::Uuid;

use crate::notify::Hub;
use crate::tickets::Priority;

/// First-response and resolution targets of one priority.
#[derive(Debug, Clone, Copy)]
pub struct ServiceLevel {
    pub first_response: chrono::Duration,
    pub resolution: chrono::Duration,
}

/// The service's own settings, read from `support_*` keys
/// (`MILIKI_SUPPORT_SLA_URGENT_RESPONSE_MINUTES`, …).
#[derive(Debug, Clone)]
pub struct Config {
    pub urgent: ServiceLevel,
    pub high: ServiceLevel,
    pub normal: ServiceLevel,
    pub low: ServiceLevel,
    /// How long after resolution a ticket may be reopened.
    pub reopen_window: chrono::Duration,
    /// How often the service-level job looks for breaches (real time; the
    /// decision itself uses the injected clock).
    pub sla_poll: Duration,
    /// Largest attachment, in bytes.
    pub max_attachment_bytes: usize,
    /// Who may upgrade, and what their trade-in is worth.
    pub upgrade: crate::upgrades::Rules,
}

pub(crate) fn extra_u64(settings: &Settings, key: &str, default: u64) -> u64 {
    match settings.extra.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(default),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(default),
        _ => default,
    }
}

fn level(settings: &Settings, name: &str, response_min: u64, resolution_min: u64) -> ServiceLevel {
    let minutes = |key: &str, default: u64| {
        chrono::Duration::minutes(
            extra_u64(
                settings,
                &format!("support_sla_{name}_{key}_minutes"),
                default,
            )
            .clamp(1, 60 * 24 * 90) as i64,
        )
    };
    ServiceLevel {
        first_response: minutes("response", response_min),
        resolution: minutes("resolution", resolution_min),
    }
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            urgent: level(settings, "urgent", 60, 4 * 60),
            high: level(settings, "high", 4 * 60, 24 * 60),
            normal: level(settings, "normal", 8 * 60, 72 * 60),
            low: level(settings, "low", 24 * 60, 7 * 24 * 60),
            reopen_window: chrono::Duration::hours(
                extra_u64(settings, "support_reopen_window_hours", 7 * 24).clamp(1, 24 * 365)
                    as i64,
            ),
            sla_poll: Duration::from_millis(
                extra_u64(settings, "support_sla_poll_ms", 500).max(10),
            ),
            max_attachment_bytes: settings.max_upload_bytes,
            upgrade: crate::upgrades::Rules::from_settings(settings),
        }
    }

    pub fn level(&self, p: Priority) -> ServiceLevel {
        match p {
            Priority::Urgent => self.urgent,
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub deps: ServiceDeps,
    pub config: Arc<Config>,
    /// Wakes live in-app notification streams.
    pub hub: Hub,
    /// Asks payments and vehicles about a contract and a vehicle (upgrades).
    pub http: reqwest::Client,
}

impl AppState {
    pub fn new(deps: ServiceDeps) -> Self {
        Self {
            config: Arc::new(Config::from_settings(&deps.settings)),
            deps,
            hub: Hub::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }
}

impl FromRef<AppState> for Arc<Tokens> {
    fn from_ref(state: &AppState) -> Self {
        state.deps.tokens.clone()
    }
}

/// An authenticated caller who is not suspended, as far as this service has
/// learned from the users service's events, with the bearer token they came
/// with (forwarded when this service asks another on their behalf).
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: Uuid,
    pub role: Role,
    pub token: String,
}

impl Caller {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        miliki_platform::auth::require_role(self.role, roles)
    }

    pub fn is_staff(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Agent)
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
            token: miliki_platform::auth::bearer_token(&parts.headers)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

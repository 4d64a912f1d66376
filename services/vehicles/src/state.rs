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

use crate::feed::Feed;
use crate::index::Index;

/// The service's own settings, read from `vehicles_*` keys
/// (`MILIKI_VEHICLES_RESERVATION_HOLD_HOURS`, …).
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a reservation holds a vehicle.
    pub reservation_hold: chrono::Duration,
    /// How often the expiry job looks for lapsed reservations (real time; the
    /// decision itself uses the injected clock).
    pub expiry_poll: Duration,
    /// How often the change-log follower (availability feed and search index)
    /// looks for changes made by other replicas.
    pub feed_poll: Duration,
    /// Rows per transaction when importing.
    pub import_batch: usize,
}

fn extra_u64(settings: &Settings, key: &str, default: u64) -> u64 {
    match settings.extra.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(default),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(default),
        _ => default,
    }
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            reservation_hold: chrono::Duration::hours(
                extra_u64(settings, "vehicles_reservation_hold_hours", 48).clamp(1, 24 * 30) as i64,
            ),
            expiry_poll: Duration::from_millis(
                extra_u64(settings, "vehicles_expiry_poll_ms", 1000).max(10),
            ),
            feed_poll: Duration::from_millis(
                extra_u64(settings, "vehicles_feed_poll_ms", 500).max(10),
            ),
            import_batch: extra_u64(settings, "vehicles_import_batch", 500).clamp(1, 5000) as usize,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub deps: ServiceDeps,
    pub config: Arc<Config>,
    pub feed: Feed,
    /// The in-memory search index.
    pub index: Index,
}

impl AppState {
    /// The one place the search index and the availability feed learn of this
    /// process's writes: call it right after committing a transaction that
    /// wrote these vehicles (through [`crate::store`], which also logs each
    /// change for the other replicas). Refreshing here, before the response,
    /// is what makes a write visible to the writer's next search at once. A
    /// failed refresh is only logged: the change-log follower applies it shortly.
    pub async fn committed(&self, vehicles: &[Uuid]) {
        if let Err(e) = self.index.refresh(self.deps.db.writer(), vehicles).await {
            tracing::warn!(error = %e, "search index refresh failed; the change log will catch up");
        }
        self.feed.nudge();
    }
}

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
        })
    }
}

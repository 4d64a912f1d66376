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

use crate::model::Model;

/// The service's own settings (`MILIKI_CREDIT_*`).
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a call to the payments service may take before the
    /// application goes to manual review instead (`MILIKI_CREDIT_PAYMENTS_TIMEOUT_MS`).
    pub payments_timeout: Duration,
}

fn extra_str(settings: &Settings, key: &str) -> Option<String> {
    match settings.extra.get(key) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Self {
        let ms = extra_str(settings, "credit_payments_timeout_ms")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(5000)
            .clamp(50, 60_000);
        Self {
            payments_timeout: Duration::from_millis(ms),
        }
    }
}

/// The scorecard in use: the shipped one, or the file `MILIKI_CREDIT_MODEL` names.
pub fn load_model(settings: &Settings) -> anyhow::Result<Model> {
    match extra_str(settings, "credit_model") {
        None => Model::parse(crate::model::DEFAULT_MODEL),
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("reading the credit model {path}: {e}"))?;
            Model::parse(&text)
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub deps: ServiceDeps,
    pub config: Arc<Config>,
    pub model: Arc<Model>,
    pub http: reqwest::Client,
}

impl AppState {
    pub fn new(deps: ServiceDeps) -> anyhow::Result<Self> {
        let config = Config::from_settings(&deps.settings);
        let model = load_model(&deps.settings)?;
        let http = reqwest::Client::builder()
            .timeout(config.payments_timeout)
            .connect_timeout(config.payments_timeout)
            .build()?;
        Ok(Self {
            config: Arc::new(config),
            model: Arc::new(model),
            http,
            deps,
        })
    }
}

// The one place the auth layer's state bound is met.
impl FromRef<AppState> for Arc<Tokens> {
    fn from_ref(state: &AppState) -> Self {
        state.deps.tokens.clone()
    }
}

/// An authenticated caller who is not suspended, with the bearer token they
/// came with (forwarded when this service asks payments for a quote on their behalf).
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
        let token = miliki_platform::auth::bearer_token(&parts.headers)
            .unwrap_or_default()
            .to_owned();
        Ok(Caller {
            id: auth.id,
            role: auth.role,
            token,
        })
    }
}

/// Whether `caller` may see things of `customer`: the customer, the agent
/// who onboarded them, or an admin.
pub async fn may_see_customer(
    state: &AppState,
    caller: &Caller,
    customer: Uuid,
) -> Result<bool, ApiError> {
    Ok(match caller.role {
        Role::Admin => true,
        Role::Customer => caller.id == customer,
        Role::Agent => standing::onboarded_by(&state.deps.db, customer).await? == Some(caller.id),
    })
}

//! What the binary hands a service, and what a service hands back: the seam
//! that keeps service code unaware of how it is being run.

use std::sync::Arc;

use futures::future::BoxFuture;
use miliki_platform::auth::Tokens;
use miliki_platform::clock::SharedClock;
use miliki_platform::config::Settings;
use miliki_platform::crypto::Keyring;
use miliki_platform::db::{Db, MigrationSet};
use miliki_platform::ratelimit::RateLimiter;
use miliki_platform::streams::StreamLimits;
use tokio_util::sync::CancellationToken;

use crate::bus::EventHandler;
use crate::outbox::EventWriter;

/// Everything a service is given.
#[derive(Clone)]
pub struct ServiceDeps {
    pub db: Db,
    pub clock: SharedClock,
    pub settings: Arc<Settings>,
    pub keyring: Arc<Keyring>,
    pub tokens: Arc<Tokens>,
    pub limiter: Arc<dyn RateLimiter>,
    pub events: EventWriter,
    /// This process's caps on long-lived streams (SSE, WebSockets).
    pub streams: Arc<StreamLimits>,
    /// Where this process answers HTTP (`http://127.0.0.1:8080`). Embedded,
    /// that is the gateway, so every service's areas are reachable here.
    pub base_url: String,
}

impl ServiceDeps {
    /// The base URL of another service's HTTP API: its configured
    /// `MILIKI_<SERVICE>_URL` when it runs elsewhere (the first, when the
    /// variable lists the gateway's replicas), else this process.
    pub fn service_url(&self, service: &str) -> String {
        self.settings
            .service_url(service)
            .and_then(|list| {
                list.split(',')
                    .map(str::trim)
                    .find(|u| !u.is_empty())
                    .map(|u| u.trim_end_matches('/').to_owned())
            })
            .unwrap_or_else(|| self.base_url.clone())
    }
}

/// What a provider sandbox is given: it lives outside any service's
/// database, so `miliki sandbox` can serve it alone.
#[derive(Clone)]
pub struct SandboxContext {
    pub clock: SharedClock,
    pub settings: Arc<Settings>,
    /// Where this process answers HTTP.
    pub base_url: String,
}

/// A background job: runs until the token is cancelled.
pub type Job = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// Everything a service offers.
pub struct ServiceParts {
    /// Its routes, under `/api/v1/...`.
    pub router: axum::Router,
    /// Topic patterns it consumes and the handler for them.
    pub subscriptions: Vec<(Vec<String>, Arc<dyn EventHandler>)>,
    pub jobs: Vec<Job>,
    /// What `/health/ready` should also ask about, beyond the database and
    /// the bus (a provider the service depends on, say).
    pub readiness: Vec<Arc<dyn miliki_platform::http::ReadinessCheck>>,
}

/// A service as the binary and the gateway know it.
pub struct ServiceDef {
    pub name: &'static str,
    /// The first path segments under `/api/v1` it owns (`auth`, `users`, `kyc`).
    pub areas: &'static [&'static str],
    pub migrations: &'static MigrationSet,
    /// Its database must not lose an acknowledged commit (it holds money):
    /// see [`miliki_platform::db::DbOptions::durable_commits`].
    pub durable_commits: bool,
    pub openapi: fn() -> utoipa::openapi::OpenApi,
    /// In-process stand-ins for the outside providers this service talks to,
    /// speaking their wire formats, with full paths under `/sandbox/<provider>`.
    /// Mounted on the public port when [`Settings::sandboxes_enabled`].
    pub sandbox: Option<fn(&SandboxContext) -> axum::Router>,
    pub build: fn(ServiceDeps) -> BoxFuture<'static, anyhow::Result<ServiceParts>>,
}

/// Which services consume which events, declared on the broker by every
/// process so nothing published before a consumer's first start is lost.
pub fn topology() -> Vec<(String, Vec<String>)> {
    vec![
        (
            "vehicles".to_owned(),
            crate::standing::PATTERNS
                .iter()
                .copied()
                // The payments service's contract activation converts reservations;
                // its payoff makes the vehicle the customer's; an upgrade hands it back.
                .chain([
                    "payments.contract.activated.v1",
                    "payments.contract.paid_off.v1",
                    "payments.contract.upgraded.v1",
                ])
                .map(str::to_owned)
                .collect(),
        ),
        (
            "payments".to_owned(),
            crate::standing::PATTERNS
                .iter()
                .copied()
                // Who onboarded each customer, whose phone is verified, vehicles'
                // prices, accepted applications.
                .chain([
                    "users.phone.code_issued.v1",
                    "users.phone.verified.v1",
                    "vehicles.vehicle.listed.v1",
                    "credit.application.accepted.v1",
                ])
                .map(str::to_owned)
                .collect(),
        ),
        // Telematics: who holds which vehicle, and the arrears policy.
        (
            "telematics".to_owned(),
            crate::standing::PATTERNS
                .iter()
                .copied()
                .chain([
                    "vehicles.vehicle.listed.v1",
                    "vehicles.vehicle.status_changed.v1",
                    "payments.contract.activated.v1",
                    "payments.contract.arrears_changed.v1",
                    "payments.contract.paused.v1",
                    "payments.contract.resumed.v1",
                    "payments.contract.paid_off.v1",
                    "payments.contract.ownership_transferred.v1",
                ])
                .map(str::to_owned)
                .collect(),
        ),
        // Credit: standing, prices and reservations for eligibility; contracts,
        // payments and driving for the living score; approved upgrades' equity.
        (
            "credit".to_owned(),
            crate::standing::PATTERNS
                .iter()
                .copied()
                .chain([
                    "vehicles.vehicle.listed.v1",
                    "vehicles.reservation.created.v1",
                    "vehicles.reservation.expired.v1",
                    "vehicles.reservation.cancelled.v1",
                    "vehicles.reservation.converted.v1",
                    "payments.contract.created.v1",
                    "payments.contract.activated.v1",
                    "payments.contract.paused.v1",
                    "payments.contract.resumed.v1",
                    "payments.contract.arrears_changed.v1",
                    "payments.contract.paid_off.v1",
                    "payments.contract.ownership_transferred.v1",
                    "payments.contract.defaulted.v1",
                    "payments.contract.written_off.v1",
                    "payments.payment.received.v1",
                    "payments.payment.reversed.v1",
                    "telematics.risk.detected.v1",
                    "payments.contract.upgraded.v1",
                    "support.upgrade.decided.v1",
                ])
                .map(str::to_owned)
                .collect(),
        ),
        // Support: crashes open tickets; scores and upgrades feed upgrade
        // requests; the rest become notifications.
        (
            "support".to_owned(),
            crate::standing::PATTERNS
                .iter()
                .copied()
                .chain([
                    "users.kyc.rejected.v1",
                    "users.kyc.resubmission_requested.v1",
                    "users.phone.code_issued.v1",
                    "users.phone.verified.v1",
                    "vehicles.reservation.created.v1",
                    "vehicles.reservation.expired.v1",
                    "vehicles.reservation.cancelled.v1",
                    "vehicles.reservation.converted.v1",
                    "credit.application.decided.v1",
                    "payments.contract.activated.v1",
                    "payments.contract.paid_off.v1",
                    "payments.contract.ownership_transferred.v1",
                    "payments.contract.arrears_changed.v1",
                    "payments.payment.received.v1",
                    "payments.collection.failed.v1",
                    "payments.installment.due.v1",
                    "telematics.risk.detected.v1",
                    "telematics.immobilization.scheduled.v1",
                    "support.ticket.replied.v1",
                    "credit.score.changed.v1",
                    "payments.contract.upgraded.v1",
                    "support.upgrade.decided.v1",
                ])
                .map(str::to_owned)
                .collect(),
        ),
    ]
}

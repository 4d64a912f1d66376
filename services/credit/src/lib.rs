//! The credit service: applications for payment plans, explainable scoring
//! on alternative data (the M-Pesa statement, how the customer has paid on
//! the platform, how they drive), decisions with concrete conditions, offers
//! quoted by the payments service, and living scores. It owns its database,
//! publishes `credit.*` events, and learns about customers, reservations,
//! contracts and driving only from other services' events.

use std::sync::Arc;

use futures::FutureExt;
use miliki_events::service::{Job, ServiceDef, ServiceDeps, ServiceParts};
use miliki_events::EventHandler;
use miliki_platform::db::{Migration, MigrationSet};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod api;
pub mod demo;
pub mod domain;
pub mod events;
pub mod features;
pub mod living;
pub mod model;
pub mod ops;
pub mod policy;
pub mod quotes;
pub mod state;
pub mod statement;
pub mod store;
pub mod upgrades;

pub use state::{AppState, Config};

/// The credit service as the binary and gateway know it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "credit",
    areas: &["applications", "credit"],
    migrations: &MIGRATIONS,
    durable_commits: false,
    openapi,
    sandbox: None,
    build: |deps| build(deps).boxed(),
};

pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "credit",
    migrations: &[
        Migration {
            version: 1,
            name: "init",
            sql: include_str!("../migrations/0001_init.sql"),
        },
        Migration {
            version: 2,
            name: "user_standing",
            sql: miliki_events::standing::SCHEMA,
        },
        Migration {
            version: 3,
            name: "user_standing_onboarded_by",
            sql: miliki_events::standing::SCHEMA_ONBOARDED_BY,
        },
        Migration {
            version: 4,
            name: "idempotency_keys",
            sql: miliki_platform::idempotency::SCHEMA,
        },
        Migration {
            version: 5,
            name: "upgrade_grants",
            sql: include_str!("../migrations/0005_upgrade_grants.sql"),
        },
    ],
};

#[derive(OpenApi)]
#[openapi(
    tags(
        (name = "applications", description = "Applications, scores with reasons, offers and decisions"),
        (name = "credit", description = "Living credit scores"),
    ),
    components(schemas(miliki_platform::problem::Problem))
)]
struct CreditDoc;

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(CreditDoc::openapi())
        .routes(routes!(api::applications::create, api::applications::list))
        .routes(routes!(api::applications::get))
        .routes(routes!(api::applications::accept))
        .routes(routes!(api::applications::decide))
        .routes(routes!(api::scores::get))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

async fn build(deps: ServiceDeps) -> anyhow::Result<ServiceParts> {
    let state = AppState::new(deps)?;
    let (router, _) = routes().split_for_parts();
    let consumer: Arc<dyn EventHandler> = Arc::new(events::Consumer {
        state: state.clone(),
    });
    let lapse = state.clone();
    let jobs: Vec<Job> = vec![Box::new(move |shutdown| {
        events::run_lapse_job(lapse, shutdown).boxed()
    })];
    Ok(ServiceParts {
        subscriptions: vec![(events::patterns(), consumer)],
        router: router.with_state(state),
        jobs,
        readiness: Vec::new(),
    })
}

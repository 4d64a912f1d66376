//! The support service: tickets with service levels (and an urgent accident
//! ticket when a tracker reports a crash), and one notification pipeline that
//! turns every other service's events into messages in the customer's
//! language on the channels they chose — in-app, SMS, push and email —
//! exactly once per event, template and channel; and upgrade requests, which
//! trade a vehicle under contract in for a bigger one. It owns its database
//! and learns about customers, contracts and vehicles from events, except
//! that an upgrade's eligibility asks payments and vehicles for the contract
//! and the vehicle as they are now (see [`upgrades`]).

use axum::extract::DefaultBodyLimit;
use futures::FutureExt;
use miliki_events::service::{Job, ServiceDef, ServiceDeps, ServiceParts};
use miliki_events::EventHandler;
use miliki_platform::db::{Migration, MigrationSet};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod api;
pub mod digest;
pub mod email;
pub mod events;
pub mod fcm;
pub mod notify;
pub mod phone_codes;
pub mod sandbox;
pub mod state;
pub mod templates;
pub mod tickets;
pub mod upgrades;

pub use state::{AppState, Config};

/// The support service as the binary and gateway know it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "support",
    areas: &["tickets", "upgrade-requests", "notifications"],
    migrations: &MIGRATIONS,
    durable_commits: false,
    openapi,
    sandbox: Some(sandbox::router),
    build: |deps| build(deps).boxed(),
};

pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "support",
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
            name: "upgrades",
            sql: include_str!("../migrations/0004_upgrades.sql"),
        },
    ],
};

#[derive(OpenApi)]
#[openapi(
    tags(
        (name = "tickets", description = "Support tickets: comments, internal notes, assignment, service levels, ratings"),
        (name = "notifications", description = "In-app notifications, delivery logs and preferences"),
        (name = "upgrade-requests", description = "Trading a vehicle under contract in for a bigger one, with the equity carried over"),
    ),
    components(schemas(miliki_platform::problem::Problem))
)]
struct SupportDoc;

fn routes(upload_limit: usize, body_limit: usize) -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(tickets::upload))
        .layer(DefaultBodyLimit::max(upload_limit));
    OpenApiRouter::with_openapi(SupportDoc::openapi())
        .routes(routes!(tickets::create, tickets::list))
        .routes(routes!(tickets::get))
        .routes(routes!(tickets::comment))
        .routes(routes!(tickets::change_status))
        .routes(routes!(tickets::assign))
        .routes(routes!(tickets::rate))
        .routes(routes!(tickets::download))
        .routes(routes!(upgrades::create, upgrades::list))
        .routes(routes!(upgrades::get))
        .routes(routes!(upgrades::decide))
        .routes(routes!(upgrades::cancel))
        .routes(routes!(api::list))
        .routes(routes!(api::unread))
        .routes(routes!(api::outbox))
        .routes(routes!(api::email_sink))
        .routes(routes!(api::stream_notifications))
        .routes(routes!(api::get_preferences, api::put_preferences))
        .routes(routes!(api::get))
        .routes(routes!(api::mark_read))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(uploads)
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes(0, 0).split_for_parts().1
}

async fn build(deps: ServiceDeps) -> anyhow::Result<ServiceParts> {
    let state = AppState::new(deps.clone());
    let upload_limit = deps.settings.max_upload_bytes + 64 * 1024;
    let (router, _) = routes(upload_limit, deps.settings.max_body_bytes).split_for_parts();
    let consumer: Arc<dyn EventHandler> = Arc::new(events::Consumer {
        state: state.clone(),
    });
    let sla_state = state.clone();
    let expiry_state = state.clone();
    let dispatcher = notify::Dispatcher {
        state: state.clone(),
        providers: notify::Providers::from_deps(&deps)?,
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?,
    };
    let jobs: Vec<Job> = vec![
        Box::new(move |shutdown| tickets::run_sla(sla_state, shutdown).boxed()),
        Box::new(move |shutdown| dispatcher.run(shutdown).boxed()),
        Box::new(move |shutdown| upgrades::run_expiry(expiry_state, shutdown).boxed()),
    ];
    Ok(ServiceParts {
        subscriptions: vec![(events::patterns(), consumer)],
        router: router.with_state(state),
        jobs,
        readiness: Vec::new(),
    })
}

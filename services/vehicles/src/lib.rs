//! The vehicles service: the inventory of motorcycles, cars, vans and trucks,
//! its search, reservations, and live availability. It owns its database,
//! publishes `vehicles.*` events, and learns about customers (KYC approval,
//! suspension) only from the users service's events.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
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
pub mod feed;
pub mod import;
pub mod index;
pub mod search;
pub mod state;
pub mod store;

pub use state::{AppState, Config};

/// The vehicles service as the binary and gateway know it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "vehicles",
    areas: &["vehicles", "reservations"],
    migrations: &MIGRATIONS,
    durable_commits: false,
    openapi,
    sandbox: None,
    build: |deps| build(deps).boxed(),
};

pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "vehicles",
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
            name: "photo_order",
            sql: include_str!("../migrations/0004_photo_order.sql"),
        },
        Migration {
            version: 5,
            name: "change_log",
            sql: include_str!("../migrations/0005_changes.sql"),
        },
    ],
};

#[derive(OpenApi)]
#[openapi(
    tags(
        (name = "vehicles", description = "Inventory, search, photos, lifecycle and live availability"),
        (name = "reservations", description = "Holding a vehicle before a contract"),
    ),
    components(schemas(miliki_platform::problem::Problem))
)]
struct VehiclesDoc;

fn routes(upload_limit: usize, body_limit: usize) -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(api::photos::upload))
        .routes(routes!(api::import::upload))
        .layer(DefaultBodyLimit::max(upload_limit));
    OpenApiRouter::with_openapi(VehiclesDoc::openapi())
        .routes(routes!(api::vehicles::search, api::vehicles::create))
        .routes(routes!(api::vehicles::get, api::vehicles::update))
        .routes(routes!(api::vehicles::change_status))
        .routes(routes!(api::vehicles::history))
        .routes(routes!(api::stream::stream))
        .routes(routes!(api::photos::photo, api::photos::delete))
        .routes(routes!(api::photos::reorder))
        .routes(routes!(api::photos::thumbnail))
        .routes(routes!(api::reservations::create))
        .routes(routes!(api::reservations::list))
        .routes(routes!(api::reservations::get, api::reservations::cancel))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(uploads)
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes(0, 0).split_for_parts().1
}

impl AppState {
    /// The state of a service built from `deps`, with an empty search index
    /// (the CLI writes through it; [`build`] loads it before serving).
    pub fn new(deps: ServiceDeps) -> Self {
        Self {
            config: Arc::new(Config::from_settings(&deps.settings)),
            deps,
            feed: feed::Feed::new(),
            index: index::Index::default(),
        }
    }
}

async fn build(deps: ServiceDeps) -> anyhow::Result<ServiceParts> {
    let state = AppState::new(deps.clone());
    let started = std::time::Instant::now();
    let n = state.index.load(&deps.db).await?;
    tracing::info!(
        vehicles = n,
        ms = started.elapsed().as_millis() as u64,
        "search index built"
    );
    // A database filled before this start (or by the CLI) may have no planner statistics yet.
    import::refresh_statistics(&deps.db).await;
    let upload_limit = deps.settings.max_upload_bytes * 3 + 64 * 1024;
    let (router, _) = routes(upload_limit, deps.settings.max_body_bytes).split_for_parts();
    let consumer: Arc<dyn EventHandler> = Arc::new(events::Consumer {
        state: state.clone(),
    });
    let expiry_state = state.clone();
    let feed_state = state.clone();
    let jobs: Vec<Job> = vec![
        Box::new(move |shutdown| events::run_expiry(expiry_state, shutdown).boxed()),
        Box::new(move |shutdown| {
            let poll = feed_state.config.feed_poll;
            feed_state
                .feed
                .clone()
                .run(
                    feed_state.deps.db.clone(),
                    feed_state.index.clone(),
                    poll,
                    shutdown,
                )
                .boxed()
        }),
    ];
    Ok(ServiceParts {
        subscriptions: vec![(events::patterns(), consumer)],
        router: router.with_state(state),
        jobs,
        readiness: Vec::new(),
    })
}

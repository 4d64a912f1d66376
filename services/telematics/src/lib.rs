//! The telematics service: trackers and their protocols (Teltonika Codec 8 /
//! 8E / 12 and GT06 over TCP, OsmAnd over HTTP, JSON over WebSocket),
//! positions, trips, risk events, and immobilization that waits until a
//! vehicle is safely parked. It owns its database, publishes
//! `telematics.*` events, and learns who holds which vehicle, and how far
//! behind their contract is, only from other services' events.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use futures::FutureExt;
use miliki_events::service::{Job, ServiceDef, ServiceDeps, ServiceParts};
use miliki_events::EventHandler;
use miliki_platform::db::{Migration, MigrationSet};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod api;
pub mod commands;
pub mod demo;
pub mod domain;
pub mod events;
pub mod ingest;
pub mod listeners;
pub mod live;
pub mod partitions;
pub mod protocol;
pub mod sessions;
pub mod state;
pub mod store;
pub mod token;

pub use state::{AppState, Config, Listen};

/// The telematics service as the binary and gateway know it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "telematics",
    areas: &["devices", "telematics"],
    migrations: &MIGRATIONS,
    openapi,
    // Positions are not money: the brief asks FULL synchronous commits only of services that hold it.
    durable_commits: false,
    sandbox: None,
    build: |deps| build(deps).boxed(),
};

pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "telematics",
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
    ],
};

#[derive(OpenApi)]
#[openapi(
    tags(
        (name = "devices", description = "Trackers: registration, binding to vehicles, decommissioning"),
        (name = "telematics", description = "Positions, trips, risk events, geofences, immobilization and live feeds"),
    ),
    components(schemas(miliki_platform::problem::Problem))
)]
struct TelematicsDoc;

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(TelematicsDoc::openapi())
        .routes(routes!(api::devices::create, api::devices::list))
        .routes(routes!(api::devices::get, api::devices::update))
        .routes(routes!(api::devices::decommission))
        .routes(routes!(api::positions::latest))
        .routes(routes!(api::positions::positions))
        .routes(routes!(api::positions::trips))
        .routes(routes!(api::positions::daily_distance))
        .routes(routes!(api::positions::listeners))
        .routes(routes!(api::risk::list))
        .routes(routes!(api::risk::acknowledge))
        .routes(routes!(api::commands::request))
        .routes(routes!(api::commands::list))
        .routes(routes!(api::commands::get))
        .routes(routes!(api::commands::cancel))
        .routes(routes!(api::geofences::create, api::geofences::list))
        .routes(routes!(api::geofences::delete))
        .routes(routes!(api::ws::ingest))
        .routes(routes!(api::ws::live))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

async fn bind(which: &str, listen: Listen) -> anyhow::Result<Option<TcpListener>> {
    match listen {
        Listen::Off => Ok(None),
        Listen::On(addr) => TcpListener::bind(addr).await.map(Some).map_err(|e| {
            anyhow::anyhow!(
                "the {which} listener cannot bind {addr}: {e} (set its port to 0 to turn it off)"
            )
        }),
    }
}

/// The service's state and the writer's queue, without listeners or jobs
/// (the CLI, the benchmark and tests that drive the writer directly).
pub fn state(deps: ServiceDeps) -> anyhow::Result<(AppState, ingest::Queue)> {
    let config = Config::from_settings(&deps.settings).map_err(|e| anyhow::anyhow!(e))?;
    let (ingestor, queue) = ingest::Ingestor::new(4096);
    let (invalidations, _) = tokio::sync::broadcast::channel(256);
    Ok((
        AppState {
            deps,
            config: Arc::new(config),
            ingest: ingestor,
            hub: live::Hub::new(),
            sessions: sessions::Sessions::default(),
            stats: Arc::new(state::Stats::default()),
            bound: Arc::new(RwLock::new([None; 3])),
            invalidations,
        },
        queue,
    ))
}

async fn build(deps: ServiceDeps) -> anyhow::Result<ServiceParts> {
    let (state, queue) = state(deps)?;
    partitions::prepare(&state.deps.db, state.deps.clock.now()).await?;
    let config = state.config.clone();
    let teltonika = bind("Teltonika", config.teltonika).await?;
    let gt06 = bind("GT06", config.gt06).await?;
    let osmand = bind("OsmAnd", config.osmand).await?;
    {
        let addr = |l: &Option<TcpListener>| -> Option<SocketAddr> {
            l.as_ref().and_then(|l| l.local_addr().ok())
        };
        let mut bound = state.bound.write().unwrap_or_else(|e| e.into_inner());
        *bound = [addr(&teltonika), addr(&gt06), addr(&osmand)];
        for (name, a) in ["teltonika", "gt06", "osmand"].iter().zip(bound.iter()) {
            if let Some(a) = a {
                tracing::info!(protocol = name, addr = %a, "tracker listener bound");
            }
        }
    }
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let mut jobs: Vec<Job> = Vec::new();
    let s = state.clone();
    jobs.push(Box::new(move |shutdown| {
        ingest::run(s, queue, shutdown).boxed()
    }));
    let s = state.clone();
    jobs.push(Box::new(move |shutdown| commands::run(s, shutdown).boxed()));
    let s = state.clone();
    jobs.push(Box::new(move |shutdown| {
        events::run_housekeeping(s, shutdown).boxed()
    }));
    if let Some(l) = teltonika {
        let (s, limit) = (state.clone(), limit.clone());
        jobs.push(Box::new(move |shutdown| {
            listeners::accept_loop(
                s,
                l,
                limit,
                shutdown,
                "teltonika",
                listeners::teltonika::serve,
            )
            .boxed()
        }));
    }
    if let Some(l) = gt06 {
        let (s, limit) = (state.clone(), limit.clone());
        jobs.push(Box::new(move |shutdown| {
            listeners::accept_loop(s, l, limit, shutdown, "gt06", listeners::gt06::serve).boxed()
        }));
    }
    if let Some(l) = osmand {
        let s = state.clone();
        jobs.push(Box::new(move |shutdown| {
            listeners::osmand::run(s, l, shutdown).boxed()
        }));
    }
    let demo = matches!(
        state.deps.settings.extra.get("telematics_demo"),
        Some(serde_json::Value::Bool(true))
    ) || state
        .deps
        .settings
        .extra
        .get("telematics_demo")
        .and_then(|v| v.as_str())
        == Some("true");
    if demo {
        let s = state.clone();
        jobs.push(Box::new(move |shutdown| demo::run(s, shutdown).boxed()));
    }
    let (router, _) = routes().split_for_parts();
    let consumer: Arc<dyn EventHandler> = Arc::new(events::Consumer {
        state: state.clone(),
    });
    Ok(ServiceParts {
        subscriptions: vec![(events::patterns(), consumer)],
        router: router.with_state(state),
        jobs,
        readiness: Vec::new(),
    })
}

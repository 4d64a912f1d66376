//! The payments service: financing products, quotes, contracts with exact
//! schedules, an append-only double-entry ledger, arrears with late fees,
//! payoffs and the handover of ownership. It owns its database, publishes
//! `payments.*` events, and learns about customers, vehicles and accepted
//! applications only from other services' events.

use std::sync::Arc;

use futures::FutureExt;
use miliki_events::service::{Job, ServiceDef, ServiceDeps, ServiceParts};
use miliki_events::EventHandler;

use miliki_platform::db::{Migration, MigrationSet};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod api;
pub mod collect;
pub mod demo;
pub mod domain;
pub mod events;
pub mod money;
pub mod ops;
pub mod rails;
pub mod reminders;
pub mod state;
pub mod store;
pub mod upgrade;
pub mod verify;

pub use state::{AppState, Config};

/// The payments service as the binary and gateway know it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "payments",
    areas: &[
        "products",
        "quotes",
        "contracts",
        "payments",
        "reports",
        "simulation",
        "callbacks",
    ],
    migrations: &MIGRATIONS,
    // It holds money: no acknowledged commit may be lost to a power cut.
    durable_commits: true,
    openapi,
    sandbox: Some(sandbox),
    build: |deps| build(deps).boxed(),
};

pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "payments",
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
            name: "idempotency_keys",
            sql: miliki_platform::idempotency::SCHEMA,
        },
        Migration {
            version: 4,
            name: "user_standing_onboarded_by",
            sql: miliki_events::standing::SCHEMA_ONBOARDED_BY,
        },
        Migration {
            version: 5,
            name: "mobile_money",
            sql: include_str!("../migrations/0005_mobile_money.sql"),
        },
        Migration {
            version: 6,
            name: "installment_reminders",
            sql: include_str!("../migrations/0006_installment_reminders.sql"),
        },
        Migration {
            version: 7,
            name: "phone_standing",
            sql: include_str!("../migrations/0007_phone_standing.sql"),
        },
        Migration {
            version: 8,
            name: "upgrades",
            sql: include_str!("../migrations/0008_upgrades.sql"),
        },
    ],
};

#[derive(OpenApi)]
#[openapi(
    tags(
        (name = "products", description = "Financing products"),
        (name = "quotes", description = "Schedules computed exactly, nothing stored"),
        (name = "contracts", description = "Contracts, schedules, balances, statements and their lifecycle"),
        (name = "payments", description = "Payments into the ledger, and their reversal"),
        (name = "reports", description = "Portfolio at risk and collections"),
        (name = "callbacks", description = "What M-Pesa and MTN MoMo call; each only makes the service ask the rail"),
    ),
    components(schemas(miliki_platform::problem::Problem))
)]
struct PaymentsDoc;

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(PaymentsDoc::openapi())
        .routes(routes!(api::products::create, api::products::list))
        .routes(routes!(api::products::get))
        .routes(routes!(api::products::retire))
        .routes(routes!(api::quotes::create))
        .routes(routes!(api::contracts::create, api::contracts::list))
        .routes(routes!(api::contracts::get))
        .routes(routes!(api::contracts::statement))
        .routes(routes!(api::contracts::payoff_quote))
        .routes(routes!(api::contracts::pause))
        .routes(routes!(api::contracts::resume))
        .routes(routes!(api::contracts::default))
        .routes(routes!(api::contracts::write_off))
        .routes(routes!(api::contracts::cancel))
        .routes(routes!(api::ownership::get, api::ownership::record))
        .routes(routes!(api::payments::create))
        .routes(routes!(api::payments::get))
        .routes(routes!(api::payments::suspense))
        .routes(routes!(api::payments::assign))
        .routes(routes!(api::payments::reverse))
        .routes(routes!(api::collection::get, api::collection::put))
        .routes(routes!(api::collection::attempts))
        .routes(routes!(api::collection::reviews))
        .routes(routes!(api::callbacks::mpesa_stk))
        .routes(routes!(api::callbacks::c2b_validation))
        .routes(routes!(api::callbacks::c2b_confirmation))
        .routes(routes!(api::callbacks::status_result))
        .routes(routes!(api::callbacks::status_timeout))
        .routes(routes!(api::callbacks::momo))
        .routes(routes!(api::reports::portfolio))
        .routes(routes!(api::reports::collections))
}

/// The M-Pesa and MoMo sandboxes, answering like the providers.
fn sandbox(ctx: &miliki_events::service::SandboxContext) -> axum::Router {
    let answer_ms = ctx
        .settings
        .extra
        .get("sandbox_answer_ms")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(100);
    miliki_mobile_money::sandbox::router(miliki_mobile_money::sandbox::SandboxOptions {
        clock: ctx.clock.clone(),
        answer_after: std::time::Duration::from_millis(answer_ms),
    })
}

/// The routes that exist only with `serve --simulated-clock`.
fn simulation_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(api::simulation::advance))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// Whether these settings ask for a movable clock.
pub fn simulated_clock(settings: &miliki_platform::config::Settings) -> bool {
    matches!(
        settings.extra.get(api::simulation::SETTING),
        Some(serde_json::Value::Bool(true))
    ) || matches!(
        settings
            .extra
            .get(api::simulation::SETTING)
            .and_then(|v| v.as_str()),
        Some("true" | "1")
    )
}

async fn build(deps: ServiceDeps) -> anyhow::Result<ServiceParts> {
    let simulated = simulated_clock(&deps.settings);
    if simulated && deps.settings.is_production() {
        anyhow::bail!("the simulated clock is refused when MILIKI_ENV=production");
    }
    if simulated && deps.clock.manual().is_none() {
        anyhow::bail!("the simulated clock needs a movable clock");
    }
    let state = AppState::new(deps)?;
    let mut routes = routes();
    if simulated {
        routes = routes.merge(simulation_routes());
    }
    let (router, _) = routes.split_for_parts();
    // MoMo calls back with PUT (documented above); some deployments POST.
    let router = router.route(
        "/api/v1/callbacks/momo/{secret}",
        axum::routing::post(api::callbacks::momo),
    );
    let consumer: Arc<dyn EventHandler> = Arc::new(events::Consumer {
        state: state.clone(),
    });
    let daily = state.clone();
    let collector = state.clone();
    let mut jobs: Vec<Job> = vec![
        Box::new(move |shutdown| ops::run_daily(daily, shutdown).boxed()),
        Box::new(move |shutdown| collect::run(collector, shutdown).boxed()),
    ];
    if let Some(queue) = state.take_credit_queue() {
        let writer = state.clone();
        jobs.push(Box::new(move |shutdown| {
            collect::run_credits(writer, queue, shutdown).boxed()
        }));
    }
    let readiness: Vec<Arc<dyn miliki_platform::http::ReadinessCheck>> = vec![
        Arc::new(rails::RailReady(state.rails.clone(), rails::Rail::Mpesa)),
        Arc::new(rails::RailReady(state.rails.clone(), rails::Rail::MtnMomo)),
    ];
    Ok(ServiceParts {
        subscriptions: vec![(events::patterns(), consumer)],
        router: router.with_state(state),
        jobs,
        readiness,
    })
}

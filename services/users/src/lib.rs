//! The users service: accounts, roles, credentials and refresh tokens, and KYC
//! with encrypted documents. It owns its database and publishes `users.*`
//! events; it consumes nothing.

use axum::extract::DefaultBodyLimit;
use futures::FutureExt;
use miliki_events::service::{ServiceDef, ServiceDeps, ServiceParts};
use miliki_platform::db::{Migration, MigrationSet};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod admin;
pub mod api;
pub mod credentials;
pub mod domain;
pub mod state;
pub mod store;
pub mod verification;

pub use state::AppState;

/// The users service as the binary and gateway know it.
pub const SERVICE: ServiceDef = ServiceDef {
    name: "users",
    areas: &["auth", "users", "kyc"],
    migrations: &MIGRATIONS,
    durable_commits: false,
    openapi,
    sandbox: None,
    build: |deps| build(deps).boxed(),
};

pub static MIGRATIONS: MigrationSet = MigrationSet {
    name: "users",
    migrations: &[
        Migration {
            version: 1,
            name: "init",
            sql: include_str!("../migrations/0001_init.sql"),
        },
        Migration {
            version: 2,
            name: "credentials_announced",
            sql: include_str!("../migrations/0002_credentials_announced.sql"),
        },
        Migration {
            version: 3,
            name: "blind_key",
            sql: include_str!("../migrations/0003_blind_key.sql"),
        },
        Migration {
            version: 4,
            name: "phone_verification",
            sql: include_str!("../migrations/0004_phone_verification.sql"),
        },
    ],
};

#[derive(OpenApi)]
#[openapi(
    tags(
        (name = "auth", description = "Registration, login and tokens"),
        (name = "users", description = "Accounts and roles"),
        (name = "kyc", description = "Identity documents and their review"),
    ),
    components(schemas(miliki_platform::problem::Problem))
)]
struct UsersDoc;

/// Every route, with its OpenAPI description. `upload_limit` caps KYC bodies.
fn routes(upload_limit: usize, body_limit: usize) -> OpenApiRouter<AppState> {
    let kyc_submit = OpenApiRouter::new()
        .routes(routes!(api::kyc::submit, api::kyc::list))
        .layer(DefaultBodyLimit::max(upload_limit));
    OpenApiRouter::with_openapi(UsersDoc::openapi())
        .routes(routes!(api::auth::register))
        .routes(routes!(api::auth::login))
        .routes(routes!(api::auth::refresh))
        .routes(routes!(api::auth::logout))
        .routes(routes!(api::phone::verify))
        .routes(routes!(api::phone::resend))
        .routes(routes!(api::phone::staff_verify))
        .routes(routes!(api::phone::staff_resend))
        .routes(routes!(api::phone::change))
        .routes(routes!(api::users::me))
        .routes(routes!(api::users::create, api::users::list))
        .routes(routes!(api::users::get))
        .routes(routes!(api::users::suspend))
        .routes(routes!(api::users::reinstate))
        .routes(routes!(api::kyc::get))
        .routes(routes!(api::kyc::document))
        .routes(routes!(api::kyc::decide))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(kyc_submit)
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    routes(0, 0).split_for_parts().1
}

async fn build(deps: ServiceDeps) -> anyhow::Result<ServiceParts> {
    let upload_limit = deps.settings.max_upload_bytes * 3 + 64 * 1024;
    let body_limit = deps.settings.max_body_bytes;
    let (router, _) = routes(upload_limit, body_limit).split_for_parts();
    let announced = credentials::announce_pending(&deps.db, &deps.events).await?;
    if announced > 0 {
        tracing::info!(
            accounts = announced,
            "announced credentials to the other services"
        );
    }
    // Seconds between background re-index passes after a blind-key rotation; 0: off.
    let reindex_secs = match deps.settings.extra.get("users_blind_reindex_secs") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0)
    .unwrap_or(5.0);
    let mut jobs: Vec<miliki_events::service::Job> = Vec::new();
    if reindex_secs > 0.0 {
        let (db, keys) = (deps.db.clone(), deps.keyring.clone());
        let every = std::time::Duration::from_secs_f64(reindex_secs);
        jobs.push(Box::new(move |shutdown| {
            admin::reindex_in_background(db, keys, every, shutdown).boxed()
        }));
    }
    Ok(ServiceParts {
        router: router.with_state(AppState::new(deps)),
        subscriptions: Vec::new(),
        jobs,
        readiness: Vec::new(),
    })
}

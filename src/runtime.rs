//! Starting and stopping the platform.
//!
//! `Runtime::start` decides once how things are wired — SQLite files or
//! PostgreSQL URLs, the in-process bus or RabbitMQ, counters in memory or in
//! Redis — and hands each service the same kind of [`ServiceDeps`] either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use miliki_events::bus::{AmqpBus, Bus, MemoryBus, RetryPolicy, Subscription};
use miliki_events::relay::Relay;
use miliki_events::service::{SandboxContext, ServiceDef, ServiceDeps};
use miliki_events::EventWriter;
use miliki_gateway::{Gateway, Route, Upstream};
use miliki_platform::auth::Tokens;
use miliki_platform::clock::SharedClock;
use miliki_platform::config::{Secrets, Settings};
use miliki_platform::credentials::Credentials;
use miliki_platform::crypto::Keyring;
use miliki_platform::db::Db;
use miliki_platform::http::{
    health_router, metrics_router, not_found, with_common_layers, ReadinessCheck,
};
use miliki_platform::ratelimit::{MemoryLimiter, RateLimiter, RedisLimiter};
use miliki_platform::server::{serve, ServeLimits};
use miliki_platform::streams::StreamLimits;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::SERVICES;

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Role {
    /// The gateway and every service in this process.
    #[default]
    Embedded,
    /// One service alone.
    Service(String),
    /// The gateway alone, forwarding to services at configured URLs.
    Gateway,
}

impl Role {
    pub fn parse(only: Option<&str>) -> anyhow::Result<Self> {
        match only {
            None | Some("all") => Ok(Role::Embedded),
            Some("gateway") => Ok(Role::Gateway),
            Some(name) if crate::service(name).is_some() => Ok(Role::Service(name.to_owned())),
            Some(other) => anyhow::bail!(
                "unknown service {other:?}; expected gateway or one of: {}",
                SERVICES
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The shared pieces every service gets a handle to.
pub struct Kernel {
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
    pub secrets: Secrets,
    pub keyring: Arc<Keyring>,
    pub tokens: Arc<Tokens>,
    pub limiter: Arc<dyn RateLimiter>,
    pub streams: Arc<StreamLimits>,
}

impl Kernel {
    pub async fn new(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let secrets = settings.secrets()?;
        let keyring = match &secrets.file {
            Some(path) => Keyring::from_file(path)?,
            None => Keyring::from_material(&secrets.keys)?,
        };
        let tokens = Tokens::new(
            &secrets.jwt_secret,
            &settings.jwt_issuer,
            &settings.jwt_audience,
            settings.access_token_ttl_secs,
            clock.clone(),
        );
        // Redis is optional: its limiter connects in the background and counts
        // locally while Redis is away, so no process waits for it to start.
        let limiter: Arc<dyn RateLimiter> = match &settings.redis_url {
            Some(url) => Arc::new(RedisLimiter::start(
                url,
                &settings.redis_prefix,
                Duration::from_millis(settings.redis_timeout_ms),
                clock.clone(),
            )?),
            None => Arc::new(MemoryLimiter::new(clock.clone())),
        };
        miliki_platform::auth::hashing::configure(
            settings.hash_slots(),
            Duration::from_millis(settings.hash_wait_ms),
        );
        Ok(Self {
            streams: StreamLimits::new(
                settings.max_streams_per_user,
                settings.max_streams_per_client,
            ),
            settings: Arc::new(settings),
            clock,
            secrets,
            keyring: Arc::new(keyring),
            tokens: Arc::new(tokens),
            limiter,
        })
    }

    /// Opens a service's database and brings its schema up to date.
    pub async fn open_db(&self, service: &ServiceDef) -> anyhow::Result<Db> {
        let url = self.settings.required_database_url(service.name)?;
        if url.starts_with("sqlite:") {
            std::fs::create_dir_all(&self.settings.data_dir)
                .with_context(|| format!("creating {}", self.settings.data_dir.display()))?;
            let path = url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or_default();
            if !path.is_empty() && path != ":memory:" {
                private_file(std::path::Path::new(path))?;
            }
        }
        let options = miliki_platform::db::DbOptions {
            durable_commits: service.durable_commits,
        };
        let db = Db::connect_with(&url, options).await.with_context(|| {
            format!(
                "opening the {} database at {}",
                service.name,
                miliki_platform::db::redact(&url)
            )
        })?;
        db.migrate(&miliki_events::MIGRATIONS).await?;
        db.migrate(service.migrations).await?;
        Ok(db)
    }

    /// The dependencies of one service, on its own database.
    pub async fn deps(&self, service: &ServiceDef) -> anyhow::Result<ServiceDeps> {
        let db = self.open_db(service).await?;
        // Each service checks callers against its own projection of who still
        // stands; the users service owns the accounts and reads them directly.
        let tokens = if service.name == miliki_users::SERVICE.name {
            self.tokens.clone()
        } else {
            Arc::new(
                self.tokens
                    .with_credentials(Arc::new(Credentials::new(db.clone()))),
            )
        };
        Ok(ServiceDeps {
            db,
            clock: self.clock.clone(),
            settings: self.settings.clone(),
            keyring: self.keyring.clone(),
            tokens,
            limiter: self.limiter.clone(),
            events: EventWriter::new(format!("/miliki/{}", service.name), self.clock.clone()),
            streams: self.streams.clone(),
            base_url: local_url(SocketAddr::new(self.settings.bind, self.settings.port)),
        })
    }

    pub fn bus(&self) -> Arc<dyn Bus> {
        let retry = RetryPolicy {
            max_attempts: self.settings.event_max_attempts.max(1),
            base_delay: Duration::from_millis(self.settings.event_retry_base_ms),
            max_delay: Duration::from_secs(300),
        };
        match &self.settings.amqp_url {
            Some(url) => Arc::new(AmqpBus::new(
                url,
                &self.settings.amqp_exchange,
                retry,
                topology(),
            )),
            None => Arc::new(MemoryBus::new(retry)),
        }
    }
}

/// An address this process can be reached at from itself: a wildcard bind
/// (`0.0.0.0`, `::`) is reached over loopback.
pub fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Every provider sandbox of this build, merged: full paths under `/sandbox`.
pub fn sandboxes(context: &SandboxContext) -> Router {
    SERVICES
        .iter()
        .filter_map(|s| s.sandbox)
        .fold(Router::new(), |router, sandbox| {
            router.merge(sandbox(context))
        })
}

/// Creates `path` readable by its owner only, or narrows an existing one.
/// SQLite gives its journal files the database file's mode, so they follow.
fn private_file(path: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Every consumer queue of this build and its patterns, declared by every
/// process: the services' own, and each service's credentials projection.
fn topology() -> Vec<(String, Vec<String>)> {
    let mut all = miliki_events::service::topology();
    for service in SERVICES
        .iter()
        .filter(|s| s.name != miliki_users::SERVICE.name)
    {
        all.push((
            miliki_events::credentials::consumer_name(service.name),
            vec![miliki_events::credentials::PATTERN.to_owned()],
        ));
    }
    all
}

/// A running platform (or one part of it).
pub struct Runtime {
    pub addr: SocketAddr,
    /// The operations listener: `/metrics` and health.
    pub ops_addr: SocketAddr,
    pub kernel: Arc<Kernel>,
    /// The dependencies of each service started in this process, by name.
    pub services: Vec<(&'static str, ServiceDeps)>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    background: tokio_util::task::TaskTracker,
}

struct DbReady(&'static str, Db);

#[async_trait]
impl ReadinessCheck for DbReady {
    fn name(&self) -> String {
        format!("{}_database", self.0)
    }
    async fn check(&self) -> Result<(), String> {
        self.1.ping().await.map_err(|e| e.to_string())
    }
}

/// A service that did not start: never ready.
struct Failed(&'static str, String);

#[async_trait]
impl ReadinessCheck for Failed {
    fn name(&self) -> String {
        self.0.to_owned()
    }
    async fn check(&self) -> Result<(), String> {
        Err(format!("not running: {}", self.1))
    }
}

struct BusReady(Arc<dyn Bus>);

#[async_trait]
impl ReadinessCheck for BusReady {
    fn name(&self) -> String {
        "event_bus".into()
    }
    // Writes still land in the outbox while the broker is away.
    fn critical(&self) -> bool {
        false
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ready().await.map_err(|e| e.to_string())
    }
}

struct LimiterReady(Arc<dyn RateLimiter>);

#[async_trait]
impl ReadinessCheck for LimiterReady {
    fn name(&self) -> String {
        "redis".into()
    }
    // Limits are counted in this process meanwhile.
    fn critical(&self) -> bool {
        false
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ready().await.map_err(|e| e.to_string())
    }
}

impl Runtime {
    /// Starts `role` on `listener`.
    pub async fn start(kernel: Kernel, role: Role, listener: TcpListener) -> anyhow::Result<Self> {
        let kernel = Arc::new(kernel);
        let shutdown = CancellationToken::new();
        let background = tokio_util::task::TaskTracker::new();
        let bus = kernel.bus();
        let base_url = local_url(listener.local_addr()?);
        let timeout = Duration::from_secs(kernel.settings.request_timeout_secs);
        let mut readiness: Vec<Arc<dyn ReadinessCheck>> = Vec::new();
        let mut services = Vec::new();
        let mut routes = Vec::new();

        let wanted: Vec<&'static ServiceDef> = match &role {
            Role::Embedded => SERVICES.iter().collect(),
            Role::Service(name) => SERVICES.iter().filter(|s| s.name == name).collect(),
            Role::Gateway => Vec::new(),
        };
        if !wanted.is_empty() {
            readiness.push(Arc::new(BusReady(bus.clone())));
        }
        if kernel.settings.redis_url.is_some() {
            readiness.push(Arc::new(LimiterReady(kernel.limiter.clone())));
        }
        for service in wanted {
            let upstream = match Self::start_service(
                &kernel,
                service,
                &base_url,
                &bus,
                &shutdown,
                &background,
            )
            .await
            {
                Ok((deps, router, checks)) => {
                    readiness.push(Arc::new(DbReady(service.name, deps.db.clone())));
                    readiness.extend(checks);
                    services.push((service.name, deps));
                    Upstream::InProcess(router)
                }
                // Embedded: one broken service must not take the others down.
                Err(e) if role == Role::Embedded => {
                    tracing::error!(
                        service = service.name,
                        error = format!("{e:#}"),
                        "service failed to start; its routes will answer 503"
                    );
                    readiness.push(Arc::new(Failed(service.name, format!("{e:#}"))));
                    Upstream::Unavailable(format!("{e:#}"))
                }
                Err(e) => return Err(e),
            };
            routes.push(Route {
                service: service.name,
                areas: service.areas,
                upstream,
                openapi: (service.openapi)(),
            });
        }

        let app: Router = match &role {
            Role::Service(name) => {
                let router = match routes.pop().map(|r| r.upstream) {
                    Some(Upstream::InProcess(router)) => router,
                    _ => anyhow::bail!("service {name} did not start"),
                };
                let app = router
                    .fallback(not_found)
                    .merge(health_router(readiness.clone()));
                with_common_layers(app, "service", timeout)
            }
            Role::Gateway => {
                let routes = SERVICES
                    .iter()
                    .map(|s| Route {
                        service: s.name,
                        areas: s.areas,
                        upstream: match kernel.settings.service_url(s.name) {
                            Some(url) => Upstream::Remote(url),
                            None => Upstream::Unavailable(format!(
                                "no MILIKI_{}_URL configured",
                                s.name.to_uppercase()
                            )),
                        },
                        openapi: (s.openapi)(),
                    })
                    .collect();
                Gateway {
                    settings: kernel.settings.clone(),
                    tokens: kernel.tokens.clone(),
                    limiter: kernel.limiter.clone(),
                    routes,
                    readiness: readiness.clone(),
                }
                .router()
            }
            Role::Embedded => {
                let gateway = Gateway {
                    settings: kernel.settings.clone(),
                    tokens: kernel.tokens.clone(),
                    limiter: kernel.limiter.clone(),
                    routes,
                    readiness: readiness.clone(),
                }
                .router();
                if kernel.settings.sandboxes_enabled() {
                    let context = SandboxContext {
                        clock: kernel.clock.clone(),
                        settings: kernel.settings.clone(),
                        base_url: base_url.clone(),
                    };
                    sandboxes(&context).merge(gateway)
                } else {
                    gateway
                }
            }
        };

        // Metrics (and health again, for probes) on the operations port only:
        // the public port shows nothing about the process but its health.
        let ops_port = kernel.settings.ops_port.unwrap_or(0);
        let ops_listener = TcpListener::bind((kernel.settings.bind, ops_port))
            .await
            .with_context(|| format!("binding the operations port {ops_port} (MILIKI_OPS_PORT)"))?;
        let ops_addr = ops_listener.local_addr()?;
        tracing::info!(%ops_addr, "operations listener (metrics, health)");
        let ops_app = with_common_layers(
            metrics_router()
                .merge(health_router(readiness))
                .fallback(not_found),
            "ops",
            timeout,
        );
        let limits = ServeLimits::from_settings(&kernel.settings);
        background.spawn(serve(ops_listener, ops_app, shutdown.clone(), limits));
        let addr = listener.local_addr()?;
        let server = tokio::spawn(serve(listener, app, shutdown.clone(), limits));
        Ok(Self {
            addr,
            ops_addr,
            kernel,
            services,
            shutdown,
            server,
            background,
        })
    }

    async fn start_service(
        kernel: &Arc<Kernel>,
        service: &'static ServiceDef,
        base_url: &str,
        bus: &Arc<dyn Bus>,
        shutdown: &CancellationToken,
        background: &tokio_util::task::TaskTracker,
    ) -> anyhow::Result<(ServiceDeps, Router, Vec<Arc<dyn ReadinessCheck>>)> {
        let mut deps = kernel.deps(service).await?;
        deps.base_url = base_url.to_owned();
        if let Some(credentials) = deps.tokens.credentials() {
            let name = miliki_events::credentials::consumer_name(service.name);
            bus.subscribe(
                Subscription {
                    consumer: name.clone(),
                    patterns: vec![miliki_events::credentials::PATTERN.to_owned()],
                    handler: Arc::new(miliki_events::credentials::Consumer {
                        name,
                        db: deps.db.clone(),
                        clock: kernel.clock.clone(),
                        credentials: credentials.clone(),
                    }),
                    db: deps.db.clone(),
                },
                shutdown.clone(),
            )
            .await?;
        }
        let parts = (service.build)(deps.clone()).await?;
        for (patterns, handler) in parts.subscriptions {
            bus.subscribe(
                Subscription {
                    consumer: service.name.to_owned(),
                    patterns,
                    handler,
                    db: deps.db.clone(),
                },
                shutdown.clone(),
            )
            .await?;
        }
        for job in parts.jobs {
            background.spawn(job(shutdown.clone()));
        }
        let relay = Relay::new(
            deps.db.clone(),
            bus.clone(),
            kernel.clock.clone(),
            &deps.events,
        );
        background.spawn(relay.run(shutdown.clone()));
        Ok((deps, parts.router, parts.readiness))
    }

    /// The dependencies of a service running here.
    pub fn deps(&self, name: &str) -> Option<&ServiceDeps> {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d)
    }

    /// A token that stops the runtime when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shut down: stops taking requests, lets in-flight ones
    /// finish, drains the outboxes, then closes the databases.
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.server.await;
        self.shutdown.cancel();
        self.background.close();
        self.background.wait().await;
        for (_, deps) in &self.services {
            deps.db.close().await;
        }
        served??;
        Ok(())
    }

    /// Shuts down and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

//! `miliki`: run the platform, or one part of it, and operate it.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use miliki::runtime::{Kernel, Role, Runtime};
use miliki_platform::auth::Role as UserRole;
use miliki_platform::clock::SystemClock;
use miliki_platform::config::Settings;

mod bench;
mod bench_collections;
mod bench_import;
mod bench_payments;
mod bench_telematics;
mod import;

// Returns freed memory to the OS far better than glibc's allocator after
// bursts of argon2 hashing (19 MiB each) and large responses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "miliki",
    version,
    about = "Rent-to-own mobility finance platform"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// A TOML settings file (default: ./miliki.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where embedded mode keeps its SQLite files and generated secrets.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: everything in one process, or one part with --only.
    Serve {
        /// Port to listen on (MILIKI_PORT; default 8080).
        #[arg(long)]
        port: Option<u16>,
        /// Address to listen on (MILIKI_BIND; default 127.0.0.1).
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Run one part alone: `gateway` or a service name (e.g. `users`).
        #[arg(long)]
        only: Option<String>,
        /// Seed demo accounts (idempotent) and print how to log in.
        #[arg(long)]
        demo: bool,
        /// Run on a clock admins can move forward (POST /api/v1/simulation/clock);
        /// refused when MILIKI_ENV=production.
        #[arg(long)]
        simulated_clock: bool,
    },
    /// Serve the provider sandboxes alone (fake M-Pesa, MTN MoMo, SMS, push),
    /// for distributed setups whose services point their provider URLs here.
    Sandbox {
        /// Port to listen on (default 8090).
        #[arg(long, default_value_t = 8090)]
        port: u16,
        /// Address to listen on (MILIKI_BIND; default 127.0.0.1).
        #[arg(long)]
        bind: Option<IpAddr>,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// Only this service's database.
        #[arg(long)]
        only: Option<String>,
    },
    /// Operator accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Field-encryption keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The vehicle inventory.
    Vehicles {
        #[command(subcommand)]
        command: VehiclesCommand,
    },
    /// The payments ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Measure speed on this machine (embedded mode, in a temporary data directory).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum VehiclesCommand {
    /// Import an inventory sheet (CSV with a header row); safe to repeat.
    Import {
        /// The sheet.
        file: PathBuf,
        /// Where to write the per-row error report (default: FILE with `.errors.csv`).
        #[arg(long)]
        errors: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check that every journal transaction balances and every contract's
    /// balances equal its ledger; exits non-zero with the first difference.
    Verify,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Load vehicles, then time searches and reads through the gateway.
    Vehicles(bench::VehiclesArgs),
    /// Load active contracts, then time a due day's payments and the daily arrears job.
    Payments(bench_payments::PaymentsArgs),
    /// Contracts due on one day, collected by M-Pesa through the sandbox over HTTP: settled/s, prompts, double charges.
    Collections(bench_collections::CollectionsArgs),
    /// Simulated Teltonika trackers over TCP: memory per connection, positions/s, ack latency.
    Telematics(bench_telematics::TelematicsArgs),
    /// The inventory importer alone (as `vehicles import` runs it): rows/s into fresh databases.
    Import(bench_import::ImportArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account (the first one, typically).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: String,
        #[arg(long)]
        email: Option<String>,
        /// The password; prefer MILIKI_ADMIN_PASSWORD so it stays out of shell history.
        #[arg(long, env = "MILIKI_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new data key, make it active and re-encrypt every field under it.
    /// With keys from configuration, re-encrypts under the configured active key.
    Rotate,
    /// Add a new blind-index key (phone and email lookups), make it active
    /// and re-index every account under it; running servers keep finding
    /// everyone throughout. With keys from configuration, re-indexes under
    /// the configured active blind key.
    RotateBlind,
    /// Drop an old blind-index key, refused while any account is still indexed under it.
    RetireBlind {
        /// The key's id, e.g. `b1`.
        id: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.common.config.as_deref())?;
    if let Some(dir) = cli.common.data_dir {
        settings.data_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Traces only where a process serves requests, named after what it runs.
    let otlp = match (&cli.command, settings.otlp_endpoint()) {
        (Command::Serve { only, .. }, Some(endpoint)) => {
            Some(miliki_platform::telemetry::OtlpConfig {
                endpoint,
                service_name: match only.as_deref() {
                    None | Some("all") => "miliki".to_owned(),
                    Some(part) => format!("miliki-{part}"),
                },
            })
        }
        _ => None,
    };
    let telemetry = {
        // The exporter's batch task lives on this runtime.
        let _entered = runtime.enter();
        miliki_platform::telemetry::init_with_otlp(settings.log_format, otlp.as_ref())
            .context("MILIKI_OTLP_ENDPOINT")?
    };
    if let Some(limit) = miliki_platform::server::raise_file_limit() {
        tracing::debug!(limit, "open-file limit");
    }
    let outcome = runtime.block_on(run(cli.command, settings));
    // Sends the spans still buffered while the runtime can still run the exporter.
    telemetry.shutdown();
    outcome
}

async fn run(command: Command, mut settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            port,
            bind,
            only,
            demo,
            simulated_clock,
        } => {
            if let Some(port) = port {
                settings.port = port;
            }
            if let Some(bind) = bind {
                settings.bind = bind;
            }
            if simulated_clock {
                if settings.is_production() {
                    anyhow::bail!("--simulated-clock is refused when MILIKI_ENV=production");
                }
                settings
                    .extra
                    .insert("simulated_clock".into(), serde_json::Value::Bool(true));
            }
            if demo {
                // The simulated fleet drives over the real tracker listeners.
                settings
                    .extra
                    .insert("telematics_demo".into(), serde_json::Value::Bool(true));
            }
            serve(settings, only.as_deref(), demo, simulated_clock).await
        }
        Command::Ledger {
            command: LedgerCommand::Verify,
        } => {
            let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
            let db = kernel.open_db(&miliki_payments::SERVICE).await?;
            let report = miliki_payments::verify::verify(&db).await?;
            db.close().await;
            match report.difference {
                None => {
                    println!(
                        "ledger verified: {} transactions balance; {} contracts agree with their ledger",
                        report.transactions, report.contracts
                    );
                    Ok(())
                }
                Some(diff) => {
                    eprintln!("ledger difference: {diff}");
                    std::process::exit(1);
                }
            }
        }
        Command::Sandbox { port, bind } => {
            if let Some(bind) = bind {
                settings.bind = bind;
            }
            sandbox(settings, port).await
        }
        Command::Migrate { only } => {
            if let Some(name) = only.as_deref() {
                if miliki::service(name).is_none() {
                    anyhow::bail!(
                        "unknown service {name:?}; expected one of: {}",
                        miliki::SERVICES
                            .iter()
                            .map(|s| s.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
            for service in miliki::SERVICES
                .iter()
                .filter(|s| only.as_deref().is_none_or(|o| o == s.name))
            {
                let db = kernel.open_db(service).await?;
                db.close().await;
                println!("{}: migrations applied", service.name);
            }
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    name,
                    phone,
                    email,
                    password,
                },
        } => {
            let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
            let deps = kernel.deps(&miliki_users::SERVICE).await?;
            let id = miliki_users::admin::create_user(
                &deps,
                &name,
                &phone,
                email.as_deref(),
                &password,
                UserRole::Admin,
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
            deps.db.close().await;
            println!("admin {name} created with id {id}");
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => rotate_keys(settings).await,
        Command::Keys {
            command: KeysCommand::RotateBlind,
        } => rotate_blind_key(settings).await,
        Command::Keys {
            command: KeysCommand::RetireBlind { id },
        } => retire_blind_key(settings, &id).await,
        Command::Vehicles {
            command: VehiclesCommand::Import { file, errors },
        } => import::run(settings, &file, errors.as_deref()).await,
        Command::Bench {
            command: BenchCommand::Vehicles(args),
        } => bench::vehicles(settings, args).await,
        Command::Bench {
            command: BenchCommand::Payments(args),
        } => bench_payments::payments(settings, args).await,
        Command::Bench {
            command: BenchCommand::Collections(args),
        } => bench_collections::collections(settings, args).await,
        Command::Bench {
            command: BenchCommand::Telematics(args),
        } => bench_telematics::telematics(settings, args).await,
        Command::Bench {
            command: BenchCommand::Import(args),
        } => bench_import::import(settings, args).await,
    }
}

/// A problem as one line for the terminal.
fn describe(e: &miliki_platform::ApiError) -> String {
    let p = e.to_problem();
    let mut parts: Vec<String> = p.detail.into_iter().collect();
    parts.extend(
        p.errors
            .iter()
            .map(|f| format!("{} {}", f.field, f.message)),
    );
    format!("{}: {}", p.title, parts.join("; "))
}

/// `miliki sandbox`: every provider sandbox on one port, until Ctrl-C / SIGTERM.
async fn sandbox(settings: Settings, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((settings.bind, port))
        .await
        .with_context(|| format!("listening on {}:{port}", settings.bind))?;
    let base_url = miliki::runtime::local_url(listener.local_addr()?);
    let context = miliki_events::service::SandboxContext {
        clock: Arc::new(SystemClock),
        settings: Arc::new(settings),
        base_url: base_url.clone(),
    };
    let app = miliki::runtime::sandboxes(&context).fallback(miliki_platform::http::not_found);
    println!("Provider sandboxes on {base_url}/sandbox/ (Ctrl-C to stop)");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        miliki_platform::http::shutdown_signal().await;
        stop.cancel();
    });
    let limits = miliki_platform::server::ServeLimits::from_settings(&context.settings);
    miliki_platform::server::serve(listener, app, shutdown, limits).await?;
    Ok(())
}

async fn serve(
    settings: Settings,
    only: Option<&str>,
    demo: bool,
    simulated_clock: bool,
) -> anyhow::Result<()> {
    let role = Role::parse(only)?;
    let started = std::time::Instant::now();
    let addr = std::net::SocketAddr::new(settings.bind, settings.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let clock: miliki_platform::clock::SharedClock = if simulated_clock {
        Arc::new(miliki_platform::clock::ManualClock::new(chrono::Utc::now()))
    } else {
        Arc::new(SystemClock)
    };
    let kernel = Kernel::new(settings, clock).await?;
    let runtime = Runtime::start(kernel, role.clone(), listener).await?;
    // Serving from here on; demo seeding below runs while requests are answered.
    let ready_in = started.elapsed();
    if demo {
        match runtime.deps("users") {
            Some(deps) => {
                let created = miliki_users::admin::seed_demo(deps)
                    .await
                    .map_err(|e| anyhow::anyhow!(describe(&e)))?;
                tracing::info!(created, "demo accounts ready");
            }
            None => tracing::warn!("--demo needs the users service in this process"),
        }
        if let Some(deps) = runtime.deps("vehicles") {
            let state = miliki_vehicles::AppState::new(deps.clone());
            let added = miliki_vehicles::demo::seed_demo(&state)
                .await
                .map_err(|e| anyhow::anyhow!(describe(&e)))?;
            tracing::info!(added, "demo inventory ready");
        }
        if let Some(deps) = runtime.deps("payments") {
            let state = miliki_payments::AppState::new(deps.clone())?;
            let added = miliki_payments::demo::seed_demo(&state)
                .await
                .map_err(|e| anyhow::anyhow!(describe(&e)))?;
            tracing::info!(added, "demo financing products ready");
        }
        // Credit's demo customers go through the whole API (users, KYC,
        // vehicles, payments' quotes), so only where every service is here;
        // in the background, as it waits on events between the steps.
        if matches!(role, Role::Embedded) && runtime.deps("credit").is_some() {
            let base = miliki::runtime::local_url(runtime.addr);
            let staff = |r: miliki_platform::auth::Role| {
                miliki_users::admin::DEMO_ACCOUNTS
                    .iter()
                    .find(|a| a.role == r)
                    .map(|a| (a.phone, a.password))
            };
            if let (Some(admin), Some(agent)) = (
                staff(miliki_platform::auth::Role::Admin),
                staff(miliki_platform::auth::Role::Agent),
            ) {
                tokio::spawn(async move {
                    match miliki_credit::demo::seed_demo(&base, admin, agent).await {
                        Ok(added) => tracing::info!(added, "demo credit customers ready"),
                        Err(e) => tracing::warn!(error = %e, "demo credit customers"),
                    }
                });
            }
        }
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "demo data seeded"
        );
    }
    print_banner(&runtime, &role, demo, ready_in);
    let token = runtime.shutdown_token();
    tokio::spawn(async move {
        miliki_platform::http::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and draining outboxes");
        token.cancel();
    });
    runtime.wait().await
}

fn print_banner(runtime: &Runtime, role: &Role, demo: bool, took: std::time::Duration) {
    let base = format!("http://{}", runtime.addr);
    let what = match role {
        Role::Embedded => "all services (embedded)".to_owned(),
        Role::Gateway => "the gateway".to_owned(),
        Role::Service(name) => format!("the {name} service"),
    };
    let bold = |s: &str| {
        if std::io::stdout().is_terminal() {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    };
    println!(
        "\n{} {what} ready in {} ms",
        bold("Miliki"),
        took.as_millis()
    );
    println!("  API          {base}/api/v1");
    if *role != Role::Service(String::new()) && !matches!(role, Role::Service(_)) {
        println!("  API docs     {base}/api/docs");
        println!("  OpenAPI      {base}/api/openapi.json");
    }
    println!("  Health       {base}/health/ready");
    if let Some(t) = runtime.deps("telematics") {
        if let Ok(c) = miliki_telematics::Config::from_settings(&t.settings) {
            let show = |l: miliki_telematics::Listen| match l {
                miliki_telematics::Listen::On(a) => a.to_string(),
                miliki_telematics::Listen::Off => "off".into(),
            };
            println!(
                "  Trackers     Teltonika tcp {} · GT06 tcp {} · OsmAnd http {}",
                show(c.teltonika),
                show(c.gt06),
                show(c.osmand)
            );
        }
    }
    println!("  Metrics      http://{}/metrics", runtime.ops_addr);
    if matches!(role, Role::Embedded) {
        println!(
            "  Data         {}",
            runtime.kernel.settings.data_dir.display()
        );
    }
    if demo {
        println!("\nDemo accounts (log in with POST {base}/api/v1/auth/login):");
        for a in miliki_users::admin::DEMO_ACCOUNTS {
            println!(
                "  {:<9} login {:<14} password {}",
                a.role.as_str(),
                a.phone,
                a.password
            );
        }
        println!(
            "\n  curl -s {base}/api/v1/auth/login -H 'content-type: application/json' \\\n    -d '{{\"login\":\"{}\",\"password\":\"{}\"}}'",
            miliki_users::admin::DEMO_ACCOUNTS[0].phone,
            miliki_users::admin::DEMO_ACCOUNTS[0].password
        );
    }
    if demo && matches!(role, Role::Embedded) {
        println!(
            "\nDemo inventory: {} vehicles across Kenya, e.g. motorcycles near Nairobi CBD:\n  GET {base}/api/v1/vehicles?type=motorcycle&near=-1.2864,36.8172&radius_km=10",
            miliki_vehicles::demo::DEMO_SIZE
        );
    }
    println!("\nPress Ctrl-C to stop.\n");
}

async fn rotate_keys(settings: Settings) -> anyhow::Result<()> {
    let secrets = settings.secrets()?;
    if let Some(path) = &secrets.file {
        // Embedded: a new key goes into the secrets file first; running servers
        // re-read the file when they meet a ciphertext under a key they lack.
        let mut material = secrets.keys.clone();
        let id = material.add_key();
        let jwt = String::from_utf8(secrets.jwt_secret.clone()).context("jwt secret")?;
        miliki_platform::config::write_secrets_file(path, &jwt, &material)?;
        println!("added key {id} to {} and made it active", path.display());
    } else {
        println!("keys come from configuration; re-encrypting under the configured active key");
    }
    let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
    let db = kernel.open_db(&miliki_users::SERVICE).await?;
    let n = miliki_users::admin::reencrypt_all(&db, &kernel.keyring).await?;
    db.close().await;
    println!(
        "re-encrypted {n} fields under key {}",
        kernel.keyring.active_key_id()
    );
    Ok(())
}

async fn rotate_blind_key(settings: Settings) -> anyhow::Result<()> {
    let secrets = settings.secrets()?;
    if let Some(path) = &secrets.file {
        // The new key goes into the secrets file first: running servers re-read
        // it within seconds and look up under every key they hold meanwhile.
        let mut material = secrets.keys.clone();
        let id = material.add_blind_key();
        let jwt = String::from_utf8(secrets.jwt_secret.clone()).context("jwt secret")?;
        miliki_platform::config::write_secrets_file(path, &jwt, &material)?;
        println!(
            "added blind-index key {id} to {} and made it active",
            path.display()
        );
    } else {
        println!("keys come from configuration; re-indexing under the configured active blind key");
    }
    let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
    let db = kernel.open_db(&miliki_users::SERVICE).await?;
    let n = miliki_users::admin::reindex_contacts(&db, &kernel.keyring, None).await?;
    let usage = miliki_users::admin::blind_key_usage(&db).await?;
    db.close().await;
    let active = kernel.keyring.active_blind_key_id();
    println!("re-indexed {n} accounts under blind-index key {active}");
    for id in kernel.keyring.blind_key_ids() {
        if id != active && !usage.iter().any(|(k, n)| *k == id && *n > 0) {
            println!("no account uses blind-index key {id} any more: `miliki keys retire-blind {id}` drops it");
        }
    }
    Ok(())
}

async fn retire_blind_key(settings: Settings, id: &str) -> anyhow::Result<()> {
    let secrets = settings.secrets()?;
    if secrets.keys.active_blind_id().as_deref() == Some(id) {
        anyhow::bail!("blind-index key {id} is the active one; rotate to a new one first");
    }
    if !secrets.keys.blind_keys().contains_key(id) {
        anyhow::bail!("there is no blind-index key {id}");
    }
    let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
    let db = kernel.open_db(&miliki_users::SERVICE).await?;
    // Catch up rows a server wrote under the old key before it heard of the new one.
    miliki_users::admin::reindex_contacts(&db, &kernel.keyring, None).await?;
    let usage = miliki_users::admin::blind_key_usage(&db).await?;
    db.close().await;
    if let Some((_, n)) = usage.iter().find(|(k, n)| k == id && *n > 0) {
        anyhow::bail!("{n} accounts are still indexed under blind-index key {id}; run `miliki keys rotate-blind` to re-index them first");
    }
    match &secrets.file {
        Some(path) => {
            let mut material = secrets.keys.clone();
            material.remove_blind_key(id)?;
            let jwt = String::from_utf8(secrets.jwt_secret.clone()).context("jwt secret")?;
            miliki_platform::config::write_secrets_file(path, &jwt, &material)?;
            println!("retired blind-index key {id} from {}", path.display());
        }
        None => println!(
            "no account uses blind-index key {id}: remove it from MILIKI_BLIND_INDEX_KEYS (or MILIKI_BLIND_INDEX_KEY) and restart"
        ),
    }
    Ok(())
}

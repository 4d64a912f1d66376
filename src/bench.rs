//! `miliki bench vehicles`: loads an inventory into a fresh embedded platform
//! (SQLite, in-process bus, in a temporary directory; or the vehicles service
//! on a fresh PostgreSQL database with `--postgres`), then drives typical
//! searches and reads through the gateway over HTTP and reports throughput
//! and latency percentiles. The load generator runs on the same machine and
//! shares its cores with the server: figures are for the two together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use miliki::runtime::{Kernel, Role, Runtime};
use miliki_platform::auth::Role as UserRole;
use miliki_platform::clock::SystemClock;
use miliki_platform::config::Settings;
use miliki_vehicles::demo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(clap::Args)]
pub struct VehiclesArgs {
    /// How many vehicles to load.
    #[arg(long, default_value_t = 100_000)]
    pub vehicles: u64,
    /// Timed requests per scenario and concurrency level.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent clients for the throughput runs (latency runs use one).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Keep the temporary data directory (its path is printed) and the PostgreSQL database.
    #[arg(long)]
    pub keep: bool,
    /// A PostgreSQL server URL without a database name (e.g.
    /// `postgres://postgres@127.0.0.1:5432`): the vehicles service runs on a
    /// fresh database created there, dropped at the end.
    #[arg(long)]
    pub postgres: Option<String>,
}

struct Measured {
    count: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }
}

async fn drive(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    paths: Arc<Vec<String>>,
    requests: usize,
    concurrency: usize,
) -> Measured {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers = (0..concurrency.max(1)).map(|_| {
        let (client, next, paths) = (client.clone(), next.clone(), paths.clone());
        let (base, token) = (base.to_owned(), token.to_owned());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let path = &paths[i % paths.len()];
                let t = Instant::now();
                let ok = match client
                    .get(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        ok && resp.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                latencies.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        })
    });
    let mut all = Vec::with_capacity(requests);
    let mut errors = 0;
    for (l, e) in futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
    {
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    Measured {
        count: all.len(),
        errors,
        elapsed,
        latencies: all,
    }
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn scenarios(ids: &[String]) -> Vec<(&'static str, Vec<String>)> {
    let mut rng = StdRng::seed_from_u64(42);
    let types = [
        ("motorcycle", 100_000i64, 250_000i64),
        ("car", 500_000, 1_800_000),
        ("van", 800_000, 3_500_000),
        ("truck", 2_000_000, 10_000_000),
    ];
    let sorts = ["price_asc", "newest", "year_desc", "price_desc"];
    let filtered = (0..500)
        .map(|_| {
            let (t, lo, hi) = types[rng.gen_range(0..types.len())];
            let min = rng.gen_range(lo..hi) / 1000 * 1000;
            let max = min + (hi - lo) / 3;
            let mut p = format!(
                "/api/v1/vehicles?type={t}&price_min={}&price_max={}&year_min={}&sort={}",
                min * 100,
                max * 100,
                rng.gen_range(2012..2022),
                sorts[rng.gen_range(0..sorts.len())]
            );
            if rng.gen_bool(0.5) {
                let (b, _, _) = demo::BRANCHES[rng.gen_range(0..demo::BRANCHES.len())];
                p.push_str(&format!("&branch={}", b.replace(' ', "%20")));
            }
            p
        })
        .collect();
    let words = [
        "toyota",
        "boda",
        "hiace",
        "isuzu frr",
        "ride hailing",
        "fielder hybrid",
        "haulage",
        "canter",
        "school transport",
        "bajaj boxer",
        "nissan note",
        "deliveries",
    ];
    let text = words
        .iter()
        .map(|w| format!("/api/v1/vehicles?q={}", w.replace(' ', "%20")))
        .collect();
    let near = (0..500)
        .map(|_| {
            let (_, lat, lon) = demo::BRANCHES[rng.gen_range(0..demo::BRANCHES.len())];
            format!(
                "/api/v1/vehicles?near={:.4},{:.4}&radius_km={}",
                lat + rng.gen_range(-0.02..0.02),
                lon + rng.gen_range(-0.02..0.02),
                rng.gen_range(2..8)
            )
        })
        .collect();
    let detail = (0..1000)
        .map(|_| format!("/api/v1/vehicles/{}", ids[rng.gen_range(0..ids.len())]))
        .collect();
    vec![
        ("filtered search", filtered),
        ("text search", text),
        ("near-me search", near),
        ("detail read", detail),
    ]
}

async fn fresh_postgres(server: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection;
    let server = server.trim_end_matches('/');
    let name = format!("miliki_bench_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok((format!("{server}/{name}"), name))
}

async fn drop_postgres(server: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let server = server.trim_end_matches('/');
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(())
}

pub async fn vehicles(_settings: Settings, args: VehiclesArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        port: 0,
        // The load generator is one client; the gateway's per-client limit would throttle it.
        rate_limit_per_minute: 0,
        ..Settings::default()
    };
    let postgres = match &args.postgres {
        Some(server) => {
            let (url, name) = fresh_postgres(server).await?;
            settings
                .extra
                .insert("vehicles_database_url".into(), url.into());
            Some((server.clone(), name))
        }
        None => None,
    };
    let backend = if postgres.is_some() {
        "vehicles on PostgreSQL, the rest on SQLite"
    } else {
        "SQLite"
    };
    let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime = Runtime::start(kernel, Role::Embedded, listener).await?;
    let base = format!("http://{}", runtime.addr);
    let vehicles_deps = runtime
        .deps("vehicles")
        .context("vehicles service")?
        .clone();
    let users_deps = runtime.deps("users").context("users service")?.clone();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "Miliki vehicles benchmark: embedded mode ({backend}), {cores} cores ({})",
        cpu_model()
    );
    println!("data in {}", dir.path().display());

    // The inventory, through the same loader as `miliki vehicles import`.
    let sheet = dir.path().join("inventory.csv");
    let n = args.vehicles;
    let path = sheet.clone();
    tokio::task::spawn_blocking(move || {
        let f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        miliki_vehicles::import::write_csv(f, demo::generate(n, 1))
    })
    .await??;
    let state = miliki_vehicles::AppState::new(vehicles_deps.clone());
    let (report, took) = crate::import::import_file(&state, &sheet, true).await?;
    println!(
        "import: {} rows, {} imported, {} failed in {:.1} s = {:.0} rows/s",
        report.rows,
        report.imported,
        report.failed,
        took.as_secs_f64(),
        report.rows as f64 / took.as_secs_f64()
    );
    // Let the relay publish the import's events so the timed runs do not share the writer with it.
    let drain_started = Instant::now();
    loop {
        let pending = miliki_events::relay::pending(&vehicles_deps.db).await?;
        if pending == 0 {
            break;
        }
        if drain_started.elapsed() > Duration::from_secs(600) {
            println!("outbox still has {pending} events after 10 min; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "outbox drained in {:.1} s",
        drain_started.elapsed().as_secs_f64()
    );

    let phone = "+254700009999";
    miliki_users::admin::create_user(
        &users_deps,
        "Bench Customer",
        phone,
        None,
        "bench-password-2026",
        UserRole::Customer,
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!(crate::describe(&e)))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"login": phone, "password": "bench-password-2026"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("login")?.to_owned();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM vehicles")
        .fetch_all(vehicles_deps.db.reader())
        .await?;

    // The import ran beside the service: its index learns of the rows from the change log.
    let caught_up = Instant::now();
    loop {
        let page: serde_json::Value = client
            .get(format!("{base}/api/v1/vehicles?limit=1"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if page["facets"]["total"].as_u64() >= Some(report.imported as u64) {
            break;
        }
        if caught_up.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the search index did not catch up with the import in 10 min: {page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "search index followed the change log in {:.1} s",
        caught_up.elapsed().as_secs_f64()
    );
    // What a restart costs: the whole index built again from the database.
    let rebuilt = miliki_vehicles::index::Index::default();
    let started = Instant::now();
    let n = rebuilt.load(&vehicles_deps.db).await?;
    println!(
        "search index rebuilt from the database: {n} vehicles in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    drop(rebuilt);

    println!(
        "\n{:<16} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "scenario", "conc", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    for (name, paths) in scenarios(&ids) {
        let paths = Arc::new(paths);
        // Warm every pooled connection's page and statement caches, untimed:
        // the figures are for a running server, not a cold start.
        drive(&client, &base, &token, paths.clone(), 300, args.concurrency).await;
        for conc in [1, args.concurrency] {
            let requests = if conc == 1 {
                args.requests / 2
            } else {
                args.requests
            };
            let m = drive(&client, &base, &token, paths.clone(), requests, conc).await;
            println!(
                "{:<16} {:>5} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}",
                name,
                conc,
                m.count as f64 / m.elapsed.as_secs_f64(),
                m.percentile(0.50),
                m.percentile(0.90),
                m.percentile(0.99),
                m.latencies
                    .last()
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .unwrap_or(f64::NAN),
                m.errors
            );
        }
    }
    runtime.stop().await?;
    if args.keep {
        let kept = dir.keep();
        println!("\nkept {}", kept.display());
        if let Some((_, name)) = &postgres {
            println!("kept PostgreSQL database {name}");
        }
    } else if let Some((server, name)) = &postgres {
        drop_postgres(server, name).await?;
    }
    Ok(())
}

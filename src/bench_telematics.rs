//! `miliki bench telematics`: N simulated Teltonika trackers on real TCP
//! connections to a fresh platform (embedded SQLite by default, or a fresh
//! PostgreSQL database with `--postgres`). Reports memory per open
//! connection, positions persisted per second and acknowledgement latency.
//! Trackers and server share the machine (and this process): the memory
//! figure includes the client's side of each socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use miliki::runtime::{Kernel, Role, Runtime};
use miliki_platform::auth::Role as UserRole;
use miliki_platform::clock::SystemClock;
use miliki_platform::config::Settings;
use miliki_telematics::demo::{self, Sim};
use miliki_telematics::domain::Protocol;
use miliki_telematics::protocol::teltonika;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(clap::Args)]
pub struct TelematicsArgs {
    /// Simulated trackers, each on its own TCP connection.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// AVL packets each tracker sends (waiting for each acknowledgement).
    #[arg(long, default_value_t = 20)]
    pub packets: usize,
    /// Records per packet (trackers catching up send dozens at once).
    #[arg(long, default_value_t = 50)]
    pub records: usize,
    /// A PostgreSQL server URL without a database name; a fresh database is created on it.
    #[arg(long)]
    pub postgres: Option<String>,
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A fresh database on `server`, for one benchmark run.
pub async fn fresh_postgres(server: &str) -> anyhow::Result<String> {
    let server = server.trim_end_matches('/');
    let name = format!("miliki_bench_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(format!("{server}/{name}"))
}

pub async fn telematics(_settings: Settings, args: TelematicsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        port: 0,
        rate_limit_per_minute: 0,
        ..Settings::default()
    };
    let x = &mut settings.extra;
    x.insert("telematics_teltonika_port".into(), "127.0.0.1:0".into());
    x.insert("telematics_gt06_port".into(), "0".into());
    x.insert("telematics_osmand_port".into(), "0".into());
    x.insert(
        "telematics_max_connections".into(),
        (args.connections + 100).into(),
    );
    x.insert("telematics_batch_max".into(), 5000.into());
    let backend = match &args.postgres {
        Some(server) => {
            let url = fresh_postgres(server).await?;
            settings
                .extra
                .insert("telematics_database_url".into(), url.into());
            "PostgreSQL"
        }
        None => "SQLite",
    };
    let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime = Runtime::start(kernel, Role::Embedded, listener).await?;
    let base = format!("http://{}", runtime.addr);
    let deps = runtime
        .deps("telematics")
        .context("telematics service")?
        .clone();
    let users = runtime.deps("users").context("users service")?.clone();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("Miliki telematics benchmark: embedded mode, positions on {backend}, {cores} cores");

    // The trackers, registered straight into the store.
    let imeis: Vec<String> = (0..args.connections as u64)
        .map(|i| demo::imei(100_000 + i))
        .collect();
    let mut tx = deps.db.begin().await?;
    for imei in &imeis {
        miliki_telematics::store::insert_device(
            &mut tx,
            &miliki_telematics::store::NewDevice {
                id: miliki_platform::id::new_id(),
                imei,
                protocol: Protocol::Teltonika,
                vehicle_id: miliki_platform::id::new_id(),
                sim_phone: None,
                model: Some("bench"),
                token_hash: None,
                created_by: uuid::Uuid::nil(),
            },
            chrono::Utc::now(),
        )
        .await?;
    }
    tx.commit().await?;

    // Where the Teltonika listener is, as an operator would ask.
    let phone = "+254700009998";
    miliki_users::admin::create_user(
        &users,
        "Bench Admin",
        phone,
        None,
        "bench-password-2026",
        UserRole::Admin,
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!(crate::describe(&e)))?;
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"login": phone, "password": "bench-password-2026"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("login")?;
    let info: serde_json::Value = client
        .get(format!("{base}/api/v1/telematics/listeners"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let addr: std::net::SocketAddr = info["teltonika"]
        .as_str()
        .context("teltonika listener")?
        .parse()?;

    // Memory: connect everyone, handshake, idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes().unwrap_or(0);
    let mut streams = Vec::with_capacity(imeis.len());
    for chunk in imeis.chunks(500) {
        let opened = futures::future::join_all(chunk.iter().map(|imei| async move {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(&teltonika::encode_imei(imei)).await?;
            let mut answer = [0u8; 1];
            s.read_exact(&mut answer).await?;
            anyhow::ensure!(answer[0] == 1, "refused");
            Ok::<_, anyhow::Error>(s)
        }))
        .await;
        for s in opened {
            streams.push(s?);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes().unwrap_or(0);
    let per_conn = after.saturating_sub(before) as f64 / imeis.len().max(1) as f64;
    println!(
        "connections: {} open; process RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection (both ends)",
        streams.len(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_conn / 1024.0
    );

    // Throughput: every tracker sends its packets, each waiting for its acknowledgement.
    let start_at = chrono::Utc::now() - chrono::Duration::days(1);
    let started = Instant::now();
    let tasks = streams.into_iter().enumerate().map(|(n, mut s)| {
        let (packets, records) = (args.packets, args.records);
        tokio::spawn(async move {
            let mut sim = Sim::new(n % 8, n % 10 == 0);
            let mut latencies = Vec::with_capacity(packets);
            let mut seq = 0i64;
            for _ in 0..packets {
                let recs: Vec<_> = (0..records)
                    .map(|_| {
                        seq += 1;
                        demo::record(start_at + chrono::Duration::seconds(seq), &sim.step(1.0))
                    })
                    .collect();
                let packet = teltonika::encode_avl(teltonika::CODEC_8E, &recs);
                let t = Instant::now();
                s.write_all(&packet).await?;
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).await?;
                latencies.push(t.elapsed());
                anyhow::ensure!(
                    u32::from_be_bytes(ack) as usize == records,
                    "short acknowledgement"
                );
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    });
    let mut latencies = Vec::new();
    let mut errors = 0;
    for r in futures::future::join_all(tasks).await {
        match r {
            Ok(Ok(l)) => latencies.extend(l),
            _ => errors += 1,
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM positions")
        .fetch_one(deps.db.reader())
        .await?;
    println!(
        "positions: {stored} persisted in {:.2} s = {:.0} positions/s ({} packets of {} records, {} trackers failed)",
        elapsed.as_secs_f64(),
        stored as f64 / elapsed.as_secs_f64(),
        latencies.len(),
        args.records,
        errors
    );
    println!(
        "acknowledgement latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    );
    runtime.stop().await?;
    Ok(())
}

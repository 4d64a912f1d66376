//! `miliki bench import`: the inventory importer on its own, as `miliki
//! vehicles import` runs it (CSV read, validation, batched inserts with their
//! outbox events), into a fresh vehicles database each run: SQLite in a
//! temporary directory, or a fresh PostgreSQL database with `--postgres`.
//! Each run then imports the same sheet again, which must find every row
//! already present and create nothing.

use std::sync::Arc;
use std::time::Duration;

use miliki::runtime::Kernel;
use miliki_platform::clock::SystemClock;
use miliki_platform::config::Settings;
use miliki_vehicles::demo;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Rows in the generated sheet.
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Fresh databases to import into; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// A PostgreSQL server URL without a database name; a fresh database is created on it per run.
    #[arg(long)]
    pub postgres: Option<String>,
}

fn rate(rows: usize, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64().max(1e-9)
}

pub async fn import(base: Settings, args: ImportArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sheet = dir.path().join("inventory.csv");
    let path = sheet.clone();
    let n = args.rows;
    tokio::task::spawn_blocking(move || {
        let f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        miliki_vehicles::import::write_csv(f, demo::generate(n, 1))
    })
    .await??;
    let backend = if args.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "Miliki import benchmark: {} rows into {backend}, {cores} cores ({})",
        args.rows,
        crate::bench::cpu_model()
    );
    let mut firsts = Vec::new();
    let mut repeats = Vec::new();
    for run in 1..=args.runs.max(1) {
        let mut settings = Settings {
            data_dir: dir.path().join(format!("run-{run}")),
            ..Settings::default()
        };
        // Only the batch size is taken from the configuration, to compare sizes;
        // the databases are always fresh ones.
        if let Some(batch) = base.extra.get("vehicles_import_batch") {
            settings
                .extra
                .insert("vehicles_import_batch".into(), batch.clone());
        }
        if let Some(server) = &args.postgres {
            let url = crate::bench_telematics::fresh_postgres(server).await?;
            settings
                .extra
                .insert("vehicles_database_url".into(), url.into());
        }
        let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
        let deps = kernel.deps(&miliki_vehicles::SERVICE).await?;
        let state = miliki_vehicles::AppState::new(deps.clone());
        let (first, took) = crate::import::import_file(&state, &sheet, false).await?;
        let (again, took_again) = crate::import::import_file(&state, &sheet, false).await?;
        let events = miliki_events::relay::pending(&deps.db).await?;
        deps.db.close().await;
        anyhow::ensure!(
            first.imported == first.rows && first.failed == 0,
            "run {run}: {} of {} rows imported, {} failed",
            first.imported,
            first.rows,
            first.failed
        );
        anyhow::ensure!(
            again.imported == 0 && again.already_present == again.rows,
            "run {run}: the repeated import created {} vehicles",
            again.imported
        );
        anyhow::ensure!(
            events == first.imported as i64,
            "run {run}: {events} events in the outbox for {} vehicles",
            first.imported
        );
        println!(
            "run {run}: {} rows imported in {:.2} s = {:.0} rows/s ({events} events in the outbox); \
             again: {} already present in {:.2} s = {:.0} rows/s",
            first.imported,
            took.as_secs_f64(),
            rate(first.rows, took),
            again.already_present,
            took_again.as_secs_f64(),
            rate(again.rows, took_again),
        );
        firsts.push(rate(first.rows, took));
        repeats.push(rate(again.rows, took_again));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median of {} runs: import {:.0} rows/s, repeated import {:.0} rows/s",
        firsts.len(),
        median(&mut firsts),
        median(&mut repeats)
    );
    Ok(())
}

//! `miliki bench payments`: a fresh payments database (SQLite in a temporary
//! directory, or a fresh PostgreSQL database with `--postgres`) is loaded with
//! active contracts; then one due day's payments are posted through the same
//! allocation and ledger path the HTTP route uses, and the daily arrears job
//! runs over every contract. The service runs in-process without HTTP, so
//! the figures are for the money path itself, with `synchronous = FULL`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{TimeZone, Utc};
use miliki::runtime::Kernel;
use miliki_payments::domain::product::ProductInput;
use miliki_payments::ops::{self, NewContract};
use miliki_platform::clock::{Clock, ManualClock};
use miliki_platform::config::Settings;
use miliki_platform::id::new_id;
use miliki_platform::money::Currency;
use sqlx::Connection;

#[derive(clap::Args)]
pub struct PaymentsArgs {
    /// How many active contracts to load.
    #[arg(long, default_value_t = 100_000)]
    pub contracts: usize,
    /// Payments per transaction in the batched run (a reconciliation file, say).
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// In every this-many contracts one does not pay, so the job has arrears to age.
    #[arg(long, default_value_t = 10)]
    pub miss_every: usize,
    /// A PostgreSQL server URL without a database name (a fresh database is created).
    #[arg(long)]
    pub postgres: Option<String>,
    /// Keep the temporary data directory (its path is printed).
    #[arg(long)]
    pub keep: bool,
}

fn product() -> anyhow::Result<miliki_payments::domain::product::ProductTerms> {
    let input: ProductInput = serde_json::from_value(serde_json::json!({
        "name": "Bench monthly",
        "vehicle_types": ["motorcycle"], "currency": "KES", "frequency": "monthly",
        "term_periods_min": 1, "term_periods_max": 60,
        "interest_method": "declining_balance", "annual_rate_bps": 2400,
        "min_deposit_bps": 1000, "processing_fee_bps": 100,
        "late_fee": {"kind": "fixed", "amount_minor": 20_000, "grace_days": 0}
    }))?;
    input.parse().map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn payments(_settings: Settings, args: PaymentsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    let backend = match &args.postgres {
        Some(server) => {
            let server = server.trim_end_matches('/');
            let name = format!("miliki_bench_{}", uuid::Uuid::now_v7().simple());
            let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                .await
                .context("connecting to PostgreSQL")?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
            conn.close().await.ok();
            settings.extra.insert(
                "payments_database_url".into(),
                format!("{server}/{name}").into(),
            );
            format!("PostgreSQL (database {name})")
        }
        None => "SQLite, synchronous = FULL".to_owned(),
    };
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
            .single()
            .context("start")?,
    ));
    let kernel = Kernel::new(settings, clock.clone()).await?;
    let deps = kernel.deps(&miliki_payments::SERVICE).await?;
    let state = miliki_payments::AppState::new(deps.clone())?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("Miliki payments benchmark: {backend}, {cores} cores");
    println!("data in {}", dir.path().display());

    // A product, then contracts signed and activated (deposit paid) today.
    let terms = product()?;
    let product_id = miliki_platform::id::new_id();
    {
        let mut conn = deps.db.writer().acquire().await?;
        miliki_payments::store::insert_product(
            &mut conn,
            product_id,
            &terms,
            uuid::Uuid::nil(),
            clock.now(),
        )
        .await?;
    }
    let admin = uuid::Uuid::nil();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.contracts);
    let mut installment = 0;
    for chunk_start in (0..args.contracts).step_by(500) {
        let mut tx = deps.db.begin().await?;
        for _ in chunk_start..(chunk_start + 500).min(args.contracts) {
            let input = NewContract {
                application_id: None,
                customer_id: miliki_platform::id::new_id(),
                vehicle_id: miliki_platform::id::new_id(),
                reservation_id: None,
                product_id,
                price_minor: 16_500_000,
                currency: Currency::Kes,
                deposit_minor: 3_300_000,
                term_periods: 12,
                upgrade: None,
            };
            let (c, book) = ops::create_contract(&state, &mut tx, &input, Some(admin))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let deposit = book.lines[0].total_due();
            installment = book.lines[1].total_due();
            ops::take_payment(&state, &mut tx, c.id, new_id(), deposit, "cash", admin)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ids.push(c.id);
        }
        deps.events.commit(tx).await?;
    }
    let took = started.elapsed();
    println!(
        "load: {} contracts signed and activated in {:.1} s ({:.0}/s)",
        ids.len(),
        took.as_secs_f64(),
        ids.len() as f64 / took.as_secs_f64()
    );

    // The first due date: a month on, with the daily job run up to it (as it
    // would have run every day). Everyone but every `miss_every`-th pays.
    clock.advance(chrono::Duration::days(31));
    let started = Instant::now();
    let caught_up = ops::age_all(&state, state.today())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "daily job catching up a month: {caught_up} contracts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let payers: Vec<_> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| args.miss_every == 0 || i % args.miss_every != 0)
        .map(|(_, id)| *id)
        .collect();
    let half = payers.len() / 2;
    // One transaction per payment, as the HTTP route commits each.
    let started = Instant::now();
    for id in &payers[..half] {
        let mut tx = deps.db.begin().await?;
        ops::take_payment(&state, &mut tx, *id, new_id(), installment, "cash", admin)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        deps.events.commit(tx).await?;
    }
    let single = started.elapsed();
    println!(
        "payments, one per transaction: {half} in {:.1} s = {:.0} payments/s",
        single.as_secs_f64(),
        half as f64 / single.as_secs_f64()
    );
    // Batched, as a reconciliation file or a provider's callbacks in bulk would be.
    let started = Instant::now();
    for chunk in payers[half..].chunks(args.batch.max(1)) {
        let mut tx = deps.db.begin().await?;
        for id in chunk {
            ops::take_payment(&state, &mut tx, *id, new_id(), installment, "cash", admin)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        deps.events.commit(tx).await?;
    }
    let batched = started.elapsed();
    let n = payers.len() - half;
    println!(
        "payments, {} per transaction: {n} in {:.1} s = {:.0} payments/s",
        args.batch,
        batched.as_secs_f64(),
        n as f64 / batched.as_secs_f64()
    );

    // The next day: the daily job ages every contract; the ones that missed get a fee.
    clock.advance(chrono::Duration::days(1));
    let today = state.today();
    let started = Instant::now();
    let aged = ops::age_all(&state, today)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let job = started.elapsed();
    let late: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contracts WHERE days_past_due > 0")
        .fetch_one(deps.db.reader())
        .await?;
    println!(
        "daily job: {aged} contracts aged for {today} in {:.1} s ({late} late, each charged one fee)",
        job.as_secs_f64()
    );
    let started = Instant::now();
    let again = ops::age_all(&state, today)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "daily job again for the same day: {again} contracts in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let report = miliki_payments::verify::verify(&deps.db).await?;
    println!(
        "ledger verify: {} transactions, {} contracts in {:.1} s: {}",
        report.transactions,
        report.contracts,
        started.elapsed().as_secs_f64(),
        report.difference.as_deref().unwrap_or("no difference")
    );
    deps.db.close().await;
    if args.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}

//! `miliki bench collections`: the whole platform runs embedded on a random
//! port (SQLite in a temporary directory, `synchronous = FULL` for payments)
//! with the in-process M-Pesa sandbox; active contracts, collected by M-Pesa,
//! fall due on one day; the clock moves to that day's collection time and the
//! collector runs one cycle: a prompt per contract over HTTP, the sandbox's
//! callbacks over HTTP, an STK query per callback, and the credit. Reports
//! installments settled per second, prompts the sandbox saw, double charges
//! and the ledger check.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeZone, Utc};
use miliki::runtime::{Kernel, Role, Runtime};
use miliki_payments::collect::{phone_index, PHONE_FIELD};
use miliki_payments::domain::product::ProductInput;
use miliki_payments::money::{put_settings, CollectionSettings};
use miliki_payments::ops::{self, NewContract};
use miliki_payments::rails::Rail;
use miliki_platform::clock::{Clock, ManualClock};
use miliki_platform::config::Settings;
use miliki_platform::id::new_id;
use miliki_platform::money::Currency;

#[derive(clap::Args)]
pub struct CollectionsArgs {
    /// How many active contracts fall due.
    #[arg(long, default_value_t = 100_000)]
    pub contracts: usize,
    /// Prompts and checks the collector keeps out at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long the sandbox's payers take to answer, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub answer_ms: u64,
    /// Keep the temporary data directory (its path is printed).
    #[arg(long)]
    pub keep: bool,
}

pub async fn collections(_settings: Settings, args: CollectionsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        port: 0,
        // The collector, the sandbox and its callbacks all come from
        // 127.0.0.1 here: one "client" holding every connection.
        max_connections_per_client: 4_096,
        ..Settings::default()
    };
    for (key, value) in [
        ("payments_collect_poll_ms", "50".to_owned()),
        ("payments_collect_concurrency", args.concurrency.to_string()),
        ("sandbox_answer_ms", args.answer_ms.to_string()),
        // The arrears job has nothing to say here; keep it out of the way.
        ("payments_arrears_poll_ms", "600000".to_owned()),
    ] {
        settings.extra.insert(key.into(), value.into());
    }
    for key in ["teltonika_port", "gt06_port", "osmand_port"] {
        settings
            .extra
            .insert(format!("telematics_{key}"), "127.0.0.1:0".into());
    }
    // 2026-03-02 09:00 in Nairobi: contracts are signed and activated today.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0)
            .single()
            .context("start")?,
    ));
    let kernel = Kernel::new(settings, clock.clone()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime = Runtime::start(kernel, Role::Embedded, listener).await?;
    let base = format!("http://{}", runtime.addr);
    let deps = runtime
        .deps("payments")
        .context("the payments service did not start")?
        .clone();
    let state = miliki_payments::AppState::new(deps.clone())?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "Miliki collections benchmark: embedded, SQLite (synchronous = FULL), {cores} cores, \
         the M-Pesa sandbox answering after {} ms, {} prompts out at once",
        args.answer_ms, args.concurrency
    );
    println!("platform on {base}, data in {}", dir.path().display());

    let input: ProductInput = serde_json::from_value(serde_json::json!({
        "name": "Bench weekly",
        "vehicle_types": ["motorcycle"], "currency": "KES", "frequency": "weekly",
        "term_periods_min": 1, "term_periods_max": 104,
        "interest_method": "flat", "annual_rate_bps": 3000,
        "min_deposit_bps": 1000, "processing_fee_bps": 0,
        "late_fee": {"kind": "fixed", "amount_minor": 20_000, "grace_days": 2}
    }))?;
    let terms = input.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let product_id = new_id();
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

    // Contracts signed and activated today, each collected by M-Pesa from a
    // phone of its own whose last digit the sandbox reads as "pays".
    let admin = uuid::Uuid::nil();
    let started = Instant::now();
    let mut installment = 0;
    for chunk_start in (0..args.contracts).step_by(500) {
        let mut tx = deps.db.begin().await?;
        for i in chunk_start..(chunk_start + 500).min(args.contracts) {
            let input = NewContract {
                application_id: None,
                customer_id: new_id(),
                vehicle_id: new_id(),
                reservation_id: None,
                product_id,
                price_minor: 16_500_000,
                currency: Currency::Kes,
                deposit_minor: 3_300_000,
                term_periods: 78,
                upgrade: None,
            };
            let (c, book) = ops::create_contract(&state, &mut tx, &input, Some(admin))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            installment = book.lines[1].total_due();
            ops::take_payment(
                &state,
                &mut tx,
                c.id,
                new_id(),
                book.lines[0].total_due(),
                "cash",
                admin,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let phone = format!("+2547{:08}", i * 10);
            put_settings(
                &mut tx,
                &CollectionSettings {
                    contract_id: c.id,
                    rail: Rail::Mpesa,
                    phone: deps.keyring.encrypt_str(PHONE_FIELD, &phone),
                    phone_index: phone_index(&state, &phone),
                    collect_at: "07:00".into(),
                    updated_by: None,
                    updated_at: clock.now(),
                },
                false,
            )
            .await?;
        }
        deps.events.commit(tx).await?;
    }
    let took = started.elapsed();
    println!(
        "load: {} contracts activated with M-Pesa collection in {:.1} s",
        args.contracts,
        took.as_secs_f64()
    );

    // The first due date, 2026-03-09, at 07:00 in Nairobi.
    let due = Utc
        .with_ymd_and_hms(2026, 3, 9, 4, 0, 0)
        .single()
        .context("due")?;
    clock.advance(due - clock.now());
    // From here the clock runs with real time, as it would in production:
    // a prompt whose callback is lost is queried a minute on.
    let ticking = clock.clone();
    let ticker = tokio::spawn(async move {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let step = last.elapsed();
            last = Instant::now();
            ticking.advance(chrono::Duration::from_std(step).unwrap_or_default());
        }
    });
    let started = Instant::now();
    let n = args.contracts as i64;
    let mut last_print = Instant::now();
    let settled = loop {
        let settled: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM money_requests WHERE status IN ('succeeded', 'failed')",
        )
        .fetch_one(deps.db.reader())
        .await?;
        if settled >= n {
            break settled;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!(
                "  … {settled} settled after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!("only {settled} of {n} settled within an hour");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cycle = started.elapsed();
    ticker.abort();
    let succeeded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM money_requests WHERE status = 'succeeded'")
            .fetch_one(deps.db.reader())
            .await?;
    // A double charge: more than one mobile-money payment on a contract, or
    // more paid on it than the installment.
    let doubles: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT contract_id FROM payments WHERE method = 'mpesa' \
         GROUP BY contract_id HAVING COUNT(*) > 1 OR SUM(amount_minor) > $1) d",
    )
    .bind(installment)
    .fetch_one(deps.db.reader())
    .await?;
    let client = reqwest::Client::new();
    let stats: serde_json::Value = client
        .get(format!("{base}/sandbox/mpesa/stats"))
        .send()
        .await?
        .json()
        .await?;
    let paid: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM installments WHERE number = 1 AND principal_paid + interest_paid = principal_due + interest_due",
    )
    .fetch_one(deps.db.reader())
    .await?;
    println!(
        "one collection cycle: {settled} prompts settled ({succeeded} paid) in {:.1} s = {:.0} installments settled/s",
        cycle.as_secs_f64(),
        succeeded as f64 / cycle.as_secs_f64()
    );
    println!(
        "prompts the sandbox received: {} (contracts: {}); installments paid: {paid}; double charges: {doubles}",
        stats["transactions"], args.contracts
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
    runtime.stop().await?;
    if args.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}

//! `miliki vehicles import FILE.csv`: an inventory sheet into the vehicles
//! database, with a progress bar and a per-row error report. The events it
//! writes wait in the outbox and leave when the service next runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use miliki::runtime::Kernel;
use miliki_platform::clock::SystemClock;
use miliki_platform::config::Settings;
use miliki_vehicles::import::{self, ImportReport};
use miliki_vehicles::AppState;

/// Reads, validates and imports `file`; returns the report and how long the import took.
pub async fn import_file(
    state: &AppState,
    file: &Path,
    show_progress: bool,
) -> anyhow::Result<(ImportReport, std::time::Duration)> {
    let path = file.to_owned();
    let rows = tokio::task::spawn_blocking(move || {
        let f =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        import::read_csv(std::io::BufReader::new(f))
            .map_err(|e| anyhow::anyhow!(crate::describe(&e)))
    })
    .await??;
    let bar = if show_progress {
        ProgressBar::new(rows.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} rows ({per_sec}, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let progress_bar = bar.clone();
    let report = import::import_rows(state, rows, &mut move |done| {
        progress_bar.set_position(done as u64)
    })
    .await
    .map_err(|e| anyhow::anyhow!(crate::describe(&e)))?;
    let took = started.elapsed();
    bar.finish_and_clear();
    Ok((report, took))
}

pub async fn run(settings: Settings, file: &Path, errors: Option<&Path>) -> anyhow::Result<()> {
    let kernel = Kernel::new(settings, Arc::new(SystemClock)).await?;
    let deps = kernel.deps(&miliki_vehicles::SERVICE).await?;
    let state = AppState::new(deps.clone());
    let (report, took) = import_file(
        &state,
        file,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )
    .await?;
    deps.db.close().await;
    println!(
        "{}: {} rows: {} imported, {} already present, {} failed ({:.1} s, {:.0} rows/s)",
        file.display(),
        report.rows,
        report.imported,
        report.already_present,
        report.failed,
        took.as_secs_f64(),
        report.rows as f64 / took.as_secs_f64().max(1e-9),
    );
    if !report.errors.is_empty() {
        let out: PathBuf = errors
            .map(Path::to_owned)
            .unwrap_or_else(|| file.with_extension("errors.csv"));
        let f =
            std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
        import::write_error_report(f, &report.errors)?;
        println!("errors, one line per problem: {}", out.display());
        for e in report.errors.iter().take(5) {
            println!("  row {}: {}: {}", e.row, e.field, e.message);
        }
        if report.errors.len() > 5 {
            println!("  … and {} more", report.errors.len() - 5);
        }
    }
    Ok(())
}

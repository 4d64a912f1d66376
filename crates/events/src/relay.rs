//! Moves a service's outbox onto the bus.
//!
//! A row is marked published only after the bus accepted it, so a crash in
//! between publishes it again (consumers' inboxes absorb the duplicate). On
//! PostgreSQL the batch is claimed with `FOR UPDATE SKIP LOCKED`, so replicas
//! share the work instead of publishing the same rows; SQLite runs one relay
//! per file and holds no transaction while publishing.

use std::sync::Arc;
use std::time::Duration;

use miliki_platform::clock::{to_micros, SharedClock};
use miliki_platform::db::{Backend, Db};
use sqlx::Row;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::envelope::Event;
use crate::outbox::EventWriter;

pub struct Relay {
    db: Db,
    bus: Arc<dyn Bus>,
    clock: SharedClock,
    notify: Arc<Notify>,
    poll: Duration,
    batch: i64,
}

impl Relay {
    pub fn new(db: Db, bus: Arc<dyn Bus>, clock: SharedClock, writer: &EventWriter) -> Self {
        Self {
            db,
            bus,
            clock,
            notify: writer.notifier(),
            poll: Duration::from_millis(500),
            batch: 100,
        }
    }

    /// Publishes until `shutdown`, then drains what is left.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            match self.publish_batch().await {
                Ok(n) if n > 0 => {
                    failures = 0;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "outbox relay could not publish; will retry");
                }
            }
            let wait = if failures == 0 {
                self.poll
            } else {
                (self.poll * failures.min(10)).min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), self.drain()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(published = n, "outbox drained on shutdown"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "outbox not fully drained on shutdown; it will be published on next start")
            }
            Err(_) => {
                tracing::warn!("outbox drain timed out; the rest will be published on next start")
            }
            _ => {}
        }
    }

    /// Publishes everything pending now; returns how many events went out.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.publish_batch().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Publishes one batch in order, stopping at the first failure.
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let select = format!(
            "SELECT id, envelope FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1{}",
            self.db.skip_locked()
        );
        match self.db.backend() {
            Backend::Postgres => {
                // Every write goes through the claiming transaction: another
                // connection would wait on the very row locks it holds.
                let mut tx = self.db.begin().await?;
                let rows = sqlx::query(&select)
                    .bind(self.batch)
                    .fetch_all(&mut *tx)
                    .await?;
                let outcome = self.publish_rows(&rows).await;
                for id in &outcome.published {
                    self.mark(&mut *tx, id).await?;
                }
                if let Some((id, error)) = &outcome.failed {
                    self.record_failure(&mut *tx, id, error).await?;
                }
                tx.commit().await?;
                outcome.result()
            }
            Backend::Sqlite => {
                let rows = sqlx::query(&select)
                    .bind(self.batch)
                    .fetch_all(self.db.reader())
                    .await?;
                let outcome = self.publish_rows(&rows).await;
                for id in &outcome.published {
                    self.mark(self.db.writer(), id).await?;
                }
                if let Some((id, error)) = &outcome.failed {
                    self.record_failure(self.db.writer(), id, error).await?;
                }
                outcome.result()
            }
        }
    }

    async fn publish_rows(&self, rows: &[sqlx::any::AnyRow]) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        for row in rows {
            let id: String = match row.try_get("id") {
                Ok(id) => id,
                Err(e) => {
                    outcome.broken = Some(e.into());
                    break;
                }
            };
            let published = match row.try_get::<String, _>("envelope") {
                Ok(envelope) => match Event::from_json(envelope.as_bytes()) {
                    Ok(event) => self
                        .bus
                        .publish(&event)
                        .await
                        .map(|()| event)
                        .map_err(anyhow::Error::from),
                    Err(e) => Err(anyhow::anyhow!("outbox row {id} is not an event: {e}")),
                },
                Err(e) => Err(e.into()),
            };
            match published {
                Ok(event) => {
                    metrics::counter!("events_published_total", "type" => event.event_type)
                        .increment(1);
                    outcome.published.push(id);
                }
                Err(e) => {
                    outcome.failed = Some((id, e));
                    break;
                }
            }
        }
        outcome
    }

    async fn record_failure<'e, E>(
        &self,
        executor: E,
        id: &str,
        error: &anyhow::Error,
    ) -> Result<(), sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2")
            .bind(format!("{error:#}"))
            .bind(id)
            .execute(executor)
            .await
            .map(|_| ())
    }

    async fn mark<'e, E>(&self, executor: E, id: &str) -> Result<(), sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        sqlx::query("UPDATE outbox SET published_at = $1, attempts = attempts + 1 WHERE id = $2")
            .bind(to_micros(self.clock.now()))
            .bind(id)
            .execute(executor)
            .await
            .map(|_| ())
    }
}

/// What one batch achieved.
#[derive(Default)]
struct BatchOutcome {
    published: Vec<String>,
    /// The row that could not be published, and why; the batch stopped there.
    failed: Option<(String, anyhow::Error)>,
    /// A row that could not even be read.
    broken: Option<anyhow::Error>,
}

impl BatchOutcome {
    fn result(self) -> anyhow::Result<usize> {
        match (self.failed, self.broken) {
            (Some((_, e)), _) | (None, Some(e)) => Err(e),
            (None, None) => Ok(self.published.len()),
        }
    }
}

/// How many events wait in a service's outbox.
pub async fn pending(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(db.reader())
        .await
}

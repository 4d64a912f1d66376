//! Shared pieces of the event-machinery tests: a fresh database, a consumer
//! that records effects with its inbox, and a fault-injecting bus wrapper.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use miliki_events::bus::{AmqpBus, Bus, BusError, MemoryBus, RetryPolicy, Subscription};
use miliki_events::catalogue::users::UserRegistered;
use miliki_events::{inbox, Event, EventHandler, EventWriter};
use miliki_platform::clock::{SharedClock, SystemClock};
use miliki_platform::db::{Db, Migration, MigrationSet};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

static EFFECTS: MigrationSet = MigrationSet {
    name: "test_effects",
    migrations: &[Migration {
        version: 1,
        name: "effects",
        // No key on event_id: a double effect must be visible, not absorbed.
        sql: "CREATE TABLE effects (id TEXT PRIMARY KEY, event_id TEXT NOT NULL)",
    }],
};

pub fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|s| !s.is_empty())
}

/// A fresh database: SQLite in `dir`, or a new PostgreSQL database.
pub async fn fresh_db(dir: &std::path::Path, postgres: bool) -> Db {
    let url = if postgres {
        let server = env("MILIKI_TEST_DATABASE_URL").expect("postgres url");
        let server = server.trim_end_matches('/');
        let name = format!("miliki_test_{}", Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        format!("{server}/{name}")
    } else {
        format!(
            "sqlite://{}",
            dir.join(format!("{}.db", Uuid::now_v7().simple()))
                .display()
        )
    };
    let db = Db::connect(&url).await.unwrap();
    db.migrate(&miliki_events::MIGRATIONS).await.unwrap();
    db.migrate(&EFFECTS).await.unwrap();
    db
}

pub fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

/// The consumer: records an effect and its inbox entry in one transaction.
/// It can be told to "crash" after committing (before acknowledging) a number
/// of times, or to fail outright every time.
pub struct Recorder {
    pub db: Db,
    pub crash_after_commit: AtomicU32,
    pub always_fail: bool,
}

impl Recorder {
    /// Handles everything, once.
    pub fn healthy(db: &Db) -> Arc<Self> {
        Self::new(db, 0, false)
    }

    /// "Crashes" after committing its first `times` deliveries.
    pub fn crashing(db: &Db, times: u32) -> Arc<Self> {
        Self::new(db, times, false)
    }

    /// Fails every delivery.
    pub fn failing(db: &Db) -> Arc<Self> {
        Self::new(db, 0, true)
    }

    fn new(db: &Db, crashes: u32, always_fail: bool) -> Arc<Self> {
        Arc::new(Self {
            db: db.clone(),
            crash_after_commit: AtomicU32::new(crashes),
            always_fail,
        })
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        if self.always_fail {
            anyhow::bail!("this consumer cannot handle anything");
        }
        let mut tx = self.db.begin().await?;
        if inbox::claim(&mut tx, "recorder", event, chrono::Utc::now()).await? {
            sqlx::query("INSERT INTO effects (id, event_id) VALUES ($1, $2)")
                .bind(Uuid::now_v7().to_string())
                .bind(event.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if self.crash_after_commit.load(Ordering::SeqCst) > 0 {
            self.crash_after_commit.fetch_sub(1, Ordering::SeqCst);
            anyhow::bail!("crashed before acknowledging");
        }
        Ok(())
    }
}

/// A real bus whose publish "crashes" after the bus accepted the event but
/// before the relay could mark the row, a set number of times.
pub struct CrashAfterPublish {
    pub inner: Arc<dyn Bus>,
    pub crashes: AtomicU32,
}

#[async_trait]
impl Bus for CrashAfterPublish {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        self.inner.publish(event).await?;
        if self.crashes.load(Ordering::SeqCst) > 0 {
            self.crashes.fetch_sub(1, Ordering::SeqCst);
            return Err(BusError::Unavailable(
                "relay crashed after publishing".into(),
            ));
        }
        Ok(())
    }
    async fn subscribe(&self, s: Subscription, t: CancellationToken) -> Result<(), BusError> {
        self.inner.subscribe(s, t).await
    }
    async fn ready(&self) -> Result<(), BusError> {
        self.inner.ready().await
    }
}

pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub exchange: String,
    pub db: Db,
    pub bus: Arc<dyn Bus>,
    pub clock: SharedClock,
    pub writer: EventWriter,
    pub shutdown: CancellationToken,
}

pub async fn setup(distributed: bool) -> Option<Setup> {
    if distributed
        && (env("MILIKI_TEST_DATABASE_URL").is_none() || env("MILIKI_TEST_AMQP_URL").is_none())
    {
        eprintln!("SKIPPED: the PostgreSQL + RabbitMQ variant needs MILIKI_TEST_DATABASE_URL and MILIKI_TEST_AMQP_URL (set by .ci/run)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path(), distributed).await;
    let exchange = format!("miliki.test.{}", Uuid::now_v7().simple());
    let bus: Arc<dyn Bus> = if distributed {
        Arc::new(AmqpBus::new(
            &env("MILIKI_TEST_AMQP_URL").unwrap(),
            &exchange,
            retry(),
            Vec::new(),
        ))
    } else {
        Arc::new(MemoryBus::new(retry()))
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let writer = EventWriter::new("/miliki/test", clock.clone());
    Some(Setup {
        _dir: dir,
        exchange,
        db,
        bus,
        clock,
        writer,
        shutdown: CancellationToken::new(),
    })
}

impl Setup {
    pub async fn subscribe(&self, handler: Arc<dyn EventHandler>) {
        let sub = Subscription {
            consumer: "recorder".into(),
            patterns: vec!["users.#".into()],
            handler,
            db: self.db.clone(),
        };
        self.bus
            .subscribe(sub, self.shutdown.clone())
            .await
            .unwrap();
        // RabbitMQ: let the consumer declare and bind its queue.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    pub async fn write_events(&self, n: usize) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let mut tx = self.db.begin().await.unwrap();
            let e = self
                .writer
                .write(
                    &mut tx,
                    &UserRegistered {
                        user_id: Uuid::now_v7(),
                        role: "customer".into(),
                        onboarded_by: None,
                    },
                )
                .await
                .unwrap();
            self.writer.commit(tx).await.unwrap();
            ids.push(e.id);
        }
        ids
    }

    /// Waits until every id has exactly one effect (or fails after a while).
    pub async fn effects_per_event(&self, ids: &[Uuid]) -> Vec<i64> {
        self.effects_within(ids, 400).await
    }

    /// Like `effects_per_event`, polling up to `rounds` × 25 ms.
    pub async fn effects_within(&self, ids: &[Uuid], rounds: u32) -> Vec<i64> {
        let mut counts = Vec::new();
        for _ in 0..rounds {
            counts.clear();
            for id in ids {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM effects WHERE event_id = $1")
                    .bind(id.to_string())
                    .fetch_one(self.db.reader())
                    .await
                    .unwrap();
                counts.push(n);
            }
            if counts.iter().all(|&n| n >= 1) {
                // Give any duplicate a moment to show itself.
                tokio::time::sleep(Duration::from_millis(200)).await;
                counts.clear();
                for id in ids {
                    let n: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM effects WHERE event_id = $1")
                            .bind(id.to_string())
                            .fetch_one(self.db.reader())
                            .await
                            .unwrap();
                    counts.push(n);
                }
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        counts
    }
}

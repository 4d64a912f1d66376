//! The live availability feed behind `GET /vehicles/availability/stream`.
//!
//! Status changes are rows of `vehicle_status_history`, whose UUIDv7 ids are
//! ordered by time, so the table itself is the feed: a client that reconnects
//! with `Last-Event-ID` is replayed everything after that id from the
//! database. For live delivery one poller per process reads new rows (nudged
//! at once by this process's own writes, and on an interval for writes made
//! by other replicas) and fans them out over a broadcast channel.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use miliki_platform::db::Db;
use serde::Serialize;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{self, HistoryRecord};

/// One status change as the stream shows it: public facts only.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AvailabilityChange {
    pub vehicle_id: Uuid,
    pub from: String,
    pub to: String,
    /// Whether the vehicle can be reserved now.
    pub available: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct FeedItem {
    pub id: Uuid,
    pub change: AvailabilityChange,
}

impl From<&HistoryRecord> for FeedItem {
    fn from(h: &HistoryRecord) -> Self {
        Self {
            id: h.id,
            change: AvailabilityChange {
                vehicle_id: h.vehicle_id,
                from: h.from.as_str().to_owned(),
                to: h.to.as_str().to_owned(),
                available: h.to == crate::domain::Status::Available,
                at: h.at,
            },
        }
    }
}

#[derive(Clone)]
pub struct Feed {
    sender: broadcast::Sender<FeedItem>,
    nudge: Arc<Notify>,
    /// Cancelled when the process shuts down, so open streams end and
    /// graceful shutdown does not wait on them forever.
    closed: CancellationToken,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self {
            sender,
            nudge: Arc::new(Notify::new()),
            closed: CancellationToken::new(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.sender.subscribe()
    }

    /// Resolves when the process is shutting down.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Called after committing a status change here, so the stream need not wait for a poll.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Polls the history table until `shutdown`, broadcasting what is new.
    pub async fn run(self, db: Db, poll: std::time::Duration, shutdown: CancellationToken) {
        let mut cursor = match store::latest_history_id(&db).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "availability feed could not start; retrying");
                None
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.closed.cancel();
                    return;
                }
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            loop {
                match store::history_since(&db, cursor, 500).await {
                    Ok(rows) => {
                        for row in &rows {
                            // No receivers is fine: nobody is watching.
                            let _ = self.sender.send(FeedItem::from(row));
                            cursor = Some(row.id);
                        }
                        if rows.len() < 500 {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "availability feed poll failed");
                        break;
                    }
                }
            }
        }
    }
}

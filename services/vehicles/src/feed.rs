//! The change-log follower: the live availability feed behind
//! `GET /vehicles/availability/stream`, and what keeps each replica's search
//! index current with the others' writes.
//!
//! Every write of a vehicle logs a row in `vehicle_changes`; after commit the
//! relay ([`store::assign_positions`]) numbers them in the order it sees them
//! committed, so the log is ordered by commit, not by id: a transaction that
//! commits late with an older id still gets a position after everything
//! already read. An event's id on the stream is its position; a client that
//! reconnects with `Last-Event-ID` is replayed every status change after it.
//! One follower per process numbers, reads and fans out new rows (nudged at
//! once by this process's own writes, and on an interval for other replicas').

use std::sync::Arc;

use chrono::{DateTime, Utc};
use miliki_platform::db::Db;
use serde::Serialize;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::index::Index;
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
    /// The change's position in the log.
    pub id: i64,
    pub change: AvailabilityChange,
}

impl FeedItem {
    pub fn new(position: i64, h: &HistoryRecord) -> Self {
        Self {
            id: position,
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

    /// Follows the change log until `shutdown`: numbers committed changes,
    /// refreshes them in `index`, and broadcasts the status changes.
    pub async fn run(
        self,
        db: Db,
        index: Index,
        poll: std::time::Duration,
        shutdown: CancellationToken,
    ) {
        const BATCH: i64 = 500;
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
                if let Err(e) = store::assign_positions(&db, BATCH).await {
                    tracing::warn!(error = %e, "numbering vehicle changes failed");
                }
                let changes = match store::changes_since(&db, index.position(), BATCH, false).await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading vehicle changes failed");
                        break;
                    }
                };
                let mut ids: Vec<Uuid> = changes.iter().map(|c| c.vehicle_id).collect();
                ids.sort_unstable();
                ids.dedup();
                if let Err(e) = index.refresh(db.reader(), &ids).await {
                    tracing::warn!(error = %e, "search index refresh failed");
                    break;
                }
                for c in &changes {
                    if let Some(h) = &c.history {
                        // No receivers is fine: nobody is watching.
                        let _ = self.sender.send(FeedItem::new(c.position, h));
                    }
                }
                if let Some(last) = changes.last() {
                    index.set_position(last.position);
                }
                if (changes.len() as i64) < BATCH {
                    break;
                }
            }
        }
    }
}

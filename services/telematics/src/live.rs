//! The in-process fan-out of positions and risk events to live feeds.

use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

/// One message for live feeds, serialised once for every subscriber.
#[derive(Debug, Clone)]
pub struct LiveItem {
    pub vehicle_id: Uuid,
    pub json: Arc<str>,
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<LiveItem>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }

    pub fn publish(&self, vehicle_id: Uuid, value: &serde_json::Value) {
        // Nobody listening is not an error.
        let _ = self.tx.send(LiveItem {
            vehicle_id,
            json: Arc::from(value.to_string()),
        });
    }

    pub fn has_listeners(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveItem> {
        self.tx.subscribe()
    }
}

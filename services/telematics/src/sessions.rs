//! Trackers connected to this replica right now, so commands can reach them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::domain::CommandAction;

/// A command on its way down a tracker's connection.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub command_id: Uuid,
    pub action: CommandAction,
    /// The protocol's command text (`setdigout 1`, `Relay,1#`).
    pub text: String,
}

type Table = HashMap<Uuid, (u64, mpsc::Sender<Outgoing>)>;

#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Table>>,
    next: Arc<AtomicU64>,
}

/// Removes its session when the connection ends, unless a newer connection of
/// the same device replaced it.
pub struct SessionGuard {
    sessions: Sessions,
    device: Uuid,
    generation: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut t = self.sessions.lock();
        if t.get(&self.device)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            t.remove(&self.device);
        }
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection of `device`; a tracker that reconnects replaces its old session.
    pub fn register(&self, device: Uuid) -> (SessionGuard, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(8);
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(device, (generation, tx));
        (
            SessionGuard {
                sessions: self.clone(),
                device,
                generation,
            },
            rx,
        )
    }

    pub fn is_connected(&self, device: Uuid) -> bool {
        self.lock().contains_key(&device)
    }

    /// Queues a command for a connected device; false when it is not connected here.
    pub fn send(&self, device: Uuid, out: Outgoing) -> bool {
        let sender = self.lock().get(&device).map(|(_, s)| s.clone());
        match sender {
            Some(s) => s.try_send(out).is_ok(),
            None => false,
        }
    }

    /// Drops a device's session: its connection sees the channel close and hangs up.
    pub fn disconnect(&self, device: Uuid) {
        self.lock().remove(&device);
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

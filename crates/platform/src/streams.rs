//! Long-lived responses (Server-Sent Events, WebSockets) hold a connection and
//! a task for as long as the client likes, so they are bounded: a few per
//! user and per client address (429 beyond), and each ends when its token
//! expires or its account stops standing (suspended, credentials changed).
//! Counts are per process; a replica enforces its own share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use uuid::Uuid;

use crate::auth::{AuthUser, Tokens};
use crate::clock::SharedClock;
use crate::problem::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    User(Uuid),
    Client(IpAddr),
}

/// The open streams of this process, by user and by client address.
#[derive(Debug)]
pub struct StreamLimits {
    per_user: usize,
    per_client: usize,
    open: Mutex<HashMap<Holder, usize>>,
}

/// One open stream; its counts are returned when it is dropped.
#[derive(Debug)]
pub struct StreamSlot {
    limits: Arc<StreamLimits>,
    holders: [Holder; 2],
}

impl StreamLimits {
    pub fn new(per_user: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            per_user: per_user.max(1),
            per_client: per_client.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more stream of `user` from `client`, or 429.
    pub fn acquire(self: &Arc<Self>, user: Uuid, client: IpAddr) -> Result<StreamSlot, ApiError> {
        let holders = [Holder::User(user), Holder::Client(client)];
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let full = holders.iter().any(|h| {
            let max = match h {
                Holder::User(_) => self.per_user,
                Holder::Client(_) => self.per_client,
            };
            open.get(h).copied().unwrap_or(0) >= max
        });
        if full {
            metrics::counter!("streams_refused_total").increment(1);
            return Err(ApiError::TooManyRequests {
                retry_after_secs: 30,
            });
        }
        for h in holders {
            *open.entry(h).or_insert(0) += 1;
        }
        Ok(StreamSlot {
            limits: self.clone(),
            holders,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        for h in &self.holders {
            if let Some(n) = open.get_mut(h) {
                *n -= 1;
                if *n == 0 {
                    open.remove(h);
                }
            }
        }
    }
}

/// How often an open stream re-checks its caller.
const RECHECK: Duration = Duration::from_secs(1);

/// `inner`, ended once `caller`'s token expires (by the injected clock) or
/// the account stops standing in this service's credentials projection.
/// The slot is held for as long as the stream lives.
pub fn guarded<S>(
    inner: S,
    slot: StreamSlot,
    caller: AuthUser,
    tokens: Arc<Tokens>,
    clock: SharedClock,
) -> impl Stream<Item = S::Item> + Send
where
    S: Stream + Send + 'static,
{
    let ended = async move {
        let _slot = slot;
        loop {
            tokio::time::sleep(RECHECK).await;
            if clock.now().timestamp() >= caller.expires_at {
                return;
            }
            if let Some(credentials) = tokens.credentials() {
                if credentials
                    .check(caller.id, caller.role, caller.ver)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    };
    inner.take_until(Box::pin(ended))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_user_and_per_client() {
        let limits = StreamLimits::new(2, 3);
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let here = IpAddr::from([10, 0, 0, 1]);
        let a1 = limits.acquire(alice, here).unwrap();
        let _a2 = limits.acquire(alice, here).unwrap();
        assert!(limits.acquire(alice, IpAddr::from([10, 0, 0, 2])).is_err());
        let _b1 = limits.acquire(bob, here).unwrap();
        assert!(limits.acquire(bob, here).is_err(), "the address is full");
        drop(a1);
        assert!(limits.acquire(bob, here).is_ok());
    }
}

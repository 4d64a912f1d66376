//! Search results shared through Redis in distributed mode, so replicas do
//! not each repeat the same popular query. Every key carries a generation
//! number; the service's own inventory and reservation events bump it (see
//! [`crate::events`]), which retires every cached page at once. A TTL bounds
//! the staleness between a write and its event arriving, and after an outage
//! (bumps made while Redis was away are lost).
//!
//! Redis is optional ([`OptionalRedis`]): while it is away every lookup is a
//! miss, answered within the Redis timeout, and search runs uncached.

use std::time::Duration;

use miliki_platform::optional_redis::OptionalRedis;
use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct SearchCache {
    redis: OptionalRedis,
    prefix: String,
    ttl_secs: u64,
}

impl SearchCache {
    /// Never waits for Redis: it is connected in the background.
    pub fn start(
        url: &str,
        prefix: &str,
        ttl_secs: u64,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            redis: OptionalRedis::start(url, timeout).map_err(anyhow::Error::msg)?,
            prefix: format!("{prefix}:vehicles:search"),
            ttl_secs,
        })
    }

    fn generation_key(&self) -> String {
        format!("{}:generation", self.prefix)
    }

    fn key(&self, generation: u64, query: &str) -> String {
        let digest = Sha256::digest(query.as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{}:{generation}:{hex}", self.prefix)
    }

    /// A cached result for `query`, and the generation to store a fresh one under.
    /// A Redis failure is a miss: the cache must never take search down.
    pub async fn get(&self, query: &str) -> (Option<String>, Option<u64>) {
        let generation_key = self.generation_key();
        let generation = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("GET")
                    .arg(&generation_key)
                    .query_async::<Option<u64>>(&mut conn)
                    .await
            })
            .await;
        let generation = match generation {
            Ok(g) => g.unwrap_or(0),
            Err(_) => return (None, None),
        };
        let key = self.key(generation, query);
        let hit = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await;
        (hit.ok().flatten(), Some(generation))
    }

    pub async fn put(&self, generation: u64, query: &str, value: &str) {
        let (key, value, ttl) = (self.key(generation, query), value.to_owned(), self.ttl_secs);
        let stored = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
        if let Err(e) = stored {
            tracing::debug!(error = %e, "could not store a search result");
        }
    }

    /// Retires every cached result.
    pub async fn invalidate(&self) -> Result<(), String> {
        let key = self.generation_key();
        self.redis
            .run(|mut conn| async move {
                redis::cmd("INCR")
                    .arg(&key)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
    }
}

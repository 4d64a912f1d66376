//! Search results shared through Redis in distributed mode, so replicas do
//! not each repeat the same popular query. Every key carries a generation
//! number; the service's own inventory and reservation events bump it (see
//! [`crate::events`]), which retires every cached page at once. A TTL bounds
//! the staleness between a write and its event arriving.

use std::time::Duration;

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct SearchCache {
    conn: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
}

impl SearchCache {
    pub async fn connect(url: &str, prefix: &str, ttl_secs: u64) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let conn =
            tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager()).await??;
        Ok(Self {
            conn,
            prefix: format!("{prefix}:vehicles:search"),
            ttl_secs,
        })
    }

    fn generation_key(&self) -> String {
        format!("{}:generation", self.prefix)
    }

    async fn generation(&self) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        let g: Option<u64> = redis::cmd("GET")
            .arg(self.generation_key())
            .query_async(&mut conn)
            .await?;
        Ok(g.unwrap_or(0))
    }

    fn key(&self, generation: u64, query: &str) -> String {
        let digest = Sha256::digest(query.as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{}:{generation}:{hex}", self.prefix)
    }

    /// A cached result for `query`, and the generation to store a fresh one under.
    /// A Redis failure is a miss: the cache must never take search down.
    pub async fn get(&self, query: &str) -> (Option<String>, Option<u64>) {
        let generation = match self.generation().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "search cache unavailable");
                return (None, None);
            }
        };
        let mut conn = self.conn.clone();
        let hit: redis::RedisResult<Option<String>> = redis::cmd("GET")
            .arg(self.key(generation, query))
            .query_async(&mut conn)
            .await;
        (hit.ok().flatten(), Some(generation))
    }

    pub async fn put(&self, generation: u64, query: &str, value: &str) {
        let mut conn = self.conn.clone();
        let stored: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.key(generation, query))
            .arg(value)
            .arg("EX")
            .arg(self.ttl_secs)
            .query_async(&mut conn)
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "could not store a search result");
        }
    }

    /// Retires every cached result.
    pub async fn invalidate(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("INCR")
            .arg(self.generation_key())
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
    }
}

//! Counting limits (failed logins, requests per client). In one process a map
//! is enough; with replicas the counts must be shared, so they live in Redis.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clock::SharedClock;
use crate::optional_redis::OptionalRedis;

/// The state of one counter's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub count: u64,
    /// Seconds until the window, and its count, are forgotten.
    pub resets_in_secs: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimiterError(pub String);

/// Fixed-window counters keyed by string.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// The current window of `key`, if it has one.
    async fn peek(&self, key: &str) -> Result<Option<Window>, LimiterError>;
    /// Counts one more hit; a new window of length `window` starts if none is open.
    async fn hit(&self, key: &str, window: Duration) -> Result<Window, LimiterError>;
    /// Forgets `key`.
    async fn clear(&self, key: &str) -> Result<(), LimiterError>;
    /// Whether the backing store answers.
    async fn ready(&self) -> Result<(), LimiterError> {
        Ok(())
    }
}

/// Counters in this process, timed by the injected clock.
pub struct MemoryLimiter {
    clock: SharedClock,
    windows: Mutex<HashMap<String, (u64, DateTime<Utc>)>>,
}

impl MemoryLimiter {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            windows: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn peek(&self, key: &str) -> Result<Option<Window>, LimiterError> {
        let now = self.clock.now();
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        Ok(windows
            .get(key)
            .filter(|(_, ends)| *ends > now)
            .map(|(count, ends)| Window {
                count: *count,
                resets_in_secs: (*ends - now).num_seconds().max(1) as u64,
            }))
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<Window, LimiterError> {
        let now = self.clock.now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (_, ends)| *ends > now);
        }
        let length = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(1));
        let entry = windows.entry(key.to_owned()).or_insert((0, now + length));
        if entry.1 <= now {
            *entry = (0, now + length);
        }
        entry.0 += 1;
        Ok(Window {
            count: entry.0,
            resets_in_secs: (entry.1 - now).num_seconds().max(1) as u64,
        })
    }

    async fn clear(&self, key: &str) -> Result<(), LimiterError> {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        Ok(())
    }
}

/// Counters in Redis, shared by every replica; while Redis is unreachable
/// they are counted in this process instead, so limits keep holding (per
/// replica) and no request waits on the outage.
pub struct RedisLimiter {
    redis: OptionalRedis,
    prefix: String,
    local: MemoryLimiter,
}

impl RedisLimiter {
    /// Never waits for Redis: the connection is made in the background.
    pub fn start(
        url: &str,
        prefix: &str,
        timeout: Duration,
        clock: SharedClock,
    ) -> Result<Self, LimiterError> {
        Ok(Self {
            redis: OptionalRedis::start(url, timeout).map_err(LimiterError)?,
            prefix: prefix.to_owned(),
            local: MemoryLimiter::new(clock),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:rl:{key}", self.prefix)
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn peek(&self, key: &str) -> Result<Option<Window>, LimiterError> {
        let k = self.key(key);
        let shared = self
            .redis
            .run(|mut conn| async move {
                redis::pipe()
                    .get(&k)
                    .pttl(&k)
                    .query_async::<(Option<u64>, i64)>(&mut conn)
                    .await
            })
            .await;
        match shared {
            Ok((count, ttl)) => Ok(count.filter(|_| ttl > 0).map(|count| Window {
                count,
                resets_in_secs: (ttl as u64).div_ceil(1000),
            })),
            Err(_) => self.local.peek(key).await,
        }
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<Window, LimiterError> {
        // INCR and "expire if no expiry yet" in one atomic step.
        let k = self.key(key);
        let shared = self
            .redis
            .run(|mut conn| async move {
                redis::Script::new(
                    r"local n = redis.call('INCR', KEYS[1])
                      if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
                      return {n, redis.call('PTTL', KEYS[1])}",
                )
                .key(&k)
                .arg(window.as_millis() as u64)
                .invoke_async::<(u64, i64)>(&mut conn)
                .await
            })
            .await;
        match shared {
            Ok((count, ttl)) => Ok(Window {
                count,
                resets_in_secs: (ttl.max(1) as u64).div_ceil(1000),
            }),
            Err(_) => self.local.hit(key, window).await,
        }
    }

    async fn clear(&self, key: &str) -> Result<(), LimiterError> {
        self.local.clear(key).await?;
        let k = self.key(key);
        // A failed clear only leaves a counter to expire on its own.
        let _ =
            self.redis
                .run(|mut conn| async move {
                    redis::cmd("DEL").arg(&k).query_async::<()>(&mut conn).await
                })
                .await;
        Ok(())
    }

    async fn ready(&self) -> Result<(), LimiterError> {
        self.redis.ping().await.map_err(LimiterError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn windows_count_then_reset_with_the_clock() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let limiter = MemoryLimiter::new(clock.clone());
        assert_eq!(limiter.peek("k").await.unwrap(), None);
        for n in 1..=3 {
            assert_eq!(
                limiter
                    .hit("k", Duration::from_secs(60))
                    .await
                    .unwrap()
                    .count,
                n
            );
        }
        assert_eq!(limiter.peek("k").await.unwrap().unwrap().resets_in_secs, 60);
        clock.advance(chrono::Duration::seconds(61));
        assert_eq!(limiter.peek("k").await.unwrap(), None);
        assert_eq!(
            limiter
                .hit("k", Duration::from_secs(60))
                .await
                .unwrap()
                .count,
            1
        );
        limiter.clear("k").await.unwrap();
        assert_eq!(limiter.peek("k").await.unwrap(), None);
    }
}

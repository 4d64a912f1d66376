//! Redis as an optional dependency: shared rate limits and caches are better
//! with it, but nothing may stop working without it. The connection is made
//! in the background (a process starts even while Redis is down), every call
//! gives up after a short timeout, and callers fall back to local state. The
//! connection manager reconnects on its own once Redis is back.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

/// A Redis connection that may not be there.
#[derive(Clone)]
pub struct OptionalRedis {
    inner: Arc<Inner>,
}

struct Inner {
    conn: OnceCell<ConnectionManager>,
    timeout: Duration,
    /// The last failure, until a call succeeds again.
    problem: Mutex<Option<String>>,
}

impl OptionalRedis {
    /// Starts connecting to `url` in the background. Only a URL that cannot
    /// be a Redis URL is an error (that is configuration, not an outage).
    pub fn start(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("MILIKI_REDIS_URL: {e}"))?;
        let inner = Arc::new(Inner {
            conn: OnceCell::new(),
            timeout,
            problem: Mutex::new(Some("connecting".into())),
        });
        let background = inner.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(timeout.max(Duration::from_millis(500)))
                .set_response_timeout(timeout)
                .set_number_of_retries(2)
                .set_max_delay(2_000);
            let mut wait = Duration::from_millis(200);
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(conn) => {
                        let _ = background.conn.set(conn);
                        background.set_problem(None);
                        tracing::info!("connected to Redis");
                        return;
                    }
                    Err(e) => {
                        background.set_problem(Some(e.to_string()));
                        tracing::warn!(error = %e, "Redis unavailable; retrying in the background");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Ok(Self { inner })
    }

    /// Runs `call` on the connection within the timeout.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = self.inner.conn.get() else {
            return Err(self.problem().unwrap_or_else(|| "not connected".into()));
        };
        let outcome = match tokio::time::timeout(self.inner.timeout, call(conn.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "timed out after {} ms",
                self.inner.timeout.as_millis()
            )),
        };
        self.inner.set_problem(outcome.as_ref().err().cloned());
        outcome
    }

    /// What is wrong, if anything, as of the last call.
    pub fn problem(&self) -> Option<String> {
        self.inner
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks Redis now whether it answers.
    pub async fn ping(&self) -> Result<(), String> {
        self.run(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(|_| ())
    }
}

impl Inner {
    fn set_problem(&self, problem: Option<String>) {
        let mut slot = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() && problem.is_some() {
            tracing::warn!(
                error = problem.as_deref().unwrap_or_default(),
                "Redis call failed; using local state"
            );
        }
        *slot = problem;
    }
}

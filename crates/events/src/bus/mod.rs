//! Where published events go. The relay publishes; each consuming service
//! subscribes under its own name with topic patterns (`users.kyc.#`), gets
//! every matching event at least once, and retries failures with growing
//! delays before dead-lettering them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use miliki_platform::clock::to_micros;
use miliki_platform::db::Db;
use tokio_util::sync::CancellationToken;

use crate::envelope::Event;

pub mod amqp;
pub mod memory;

pub use amqp::AmqpBus;
pub use memory::MemoryBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker refused the event: {0}")]
    Refused(String),
}

/// Reacts to one event. An error means "try again later".
#[async_trait]
pub trait EventHandler: Send + Sync {
    async fn handle(&self, event: &Event) -> anyhow::Result<()>;
}

/// A consumer's standing order for events.
#[derive(Clone)]
pub struct Subscription {
    /// The consuming service; one queue per consumer.
    pub consumer: String,
    /// Topic patterns over event types.
    pub patterns: Vec<String>,
    pub handler: Arc<dyn EventHandler>,
    /// The consumer's database, where the in-process bus writes its dead letters.
    pub db: Db,
}

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, before the event is dead-lettered.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): base × 2^(attempt-1), capped.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// A message bus.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Returns once the bus has accepted the event for every current subscriber
    /// (in-process) or the broker has confirmed it (RabbitMQ).
    async fn publish(&self, event: &Event) -> Result<(), BusError>;
    /// Starts delivering matching events to `subscription` until `shutdown`.
    async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> Result<(), BusError>;
    /// Whether the bus can take events now.
    async fn ready(&self) -> Result<(), BusError>;
}

/// Keeps an event a consumer gave up on, with why.
pub async fn record_dead_letter(
    db: &Db,
    consumer: &str,
    event: &Event,
    error: &str,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (id, consumer, event_id, event_type, envelope, error, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(miliki_platform::id::new_id().to_string())
    .bind(consumer)
    .bind(event.id.to_string())
    .bind(&event.event_type)
    .bind(event.to_json())
    .bind(error)
    .bind(i64::from(attempts))
    .bind(to_micros(chrono::Utc::now()))
    .execute(db.writer())
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<u128> = (1..=5).map(|a| p.delay_after(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
    }
}

//! The in-process bus of embedded mode. `publish` hands the event to every
//! matching subscriber and waits until each has handled it (or dead-lettered
//! it), so the relay marks an outbox row published only when nothing more can
//! be lost: a crash before that point means the relay publishes it again.

use std::sync::RwLock;
use tracing::Instrument;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{record_dead_letter, Bus, BusError, RetryPolicy, Subscription};
use crate::envelope::{topic_matches, Event};

type Delivery = (Event, oneshot::Sender<()>);

struct Subscriber {
    patterns: Vec<String>,
    queue: mpsc::Sender<Delivery>,
}

pub struct MemoryBus {
    subscribers: RwLock<Vec<Subscriber>>,
    retry: RetryPolicy,
}

impl MemoryBus {
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            subscribers: RwLock::new(Vec::new()),
            retry,
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let queues: Vec<mpsc::Sender<Delivery>> = self
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| {
                s.patterns
                    .iter()
                    .any(|p| topic_matches(p, &event.event_type))
            })
            .map(|s| s.queue.clone())
            .collect();
        let mut acks = Vec::with_capacity(queues.len());
        for queue in queues {
            let (ack, done) = oneshot::channel();
            queue
                .send((event.clone(), ack))
                .await
                .map_err(|_| BusError::Unavailable("a consumer has stopped".into()))?;
            acks.push(done);
        }
        for done in acks {
            done.await
                .map_err(|_| BusError::Unavailable("a consumer stopped mid-delivery".into()))?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let (queue, mut deliveries) = mpsc::channel::<Delivery>(64);
        self.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Subscriber {
                patterns: subscription.patterns.clone(),
                queue,
            });
        let retry = self.retry;
        tokio::spawn(async move {
            loop {
                let (event, ack) = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = deliveries.recv() => match next {
                        Some(delivery) => delivery,
                        None => break,
                    },
                };
                if deliver(&subscription, &event, retry, &shutdown).await {
                    let _ = ack.send(());
                }
                // Not acknowledged (shutting down mid-retry): the relay keeps the row.
            }
        });
        Ok(())
    }

    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// Runs the handler with retries; true once the event is handled or dead-lettered.
async fn deliver(
    sub: &Subscription,
    event: &Event,
    retry: RetryPolicy,
    shutdown: &CancellationToken,
) -> bool {
    let mut attempt = 1;
    loop {
        let handled = sub
            .handler
            .handle(event)
            .instrument(event.handler_span(&sub.consumer))
            .await;
        match handled {
            Ok(()) => return true,
            Err(err) if attempt >= retry.max_attempts => {
                tracing::error!(consumer = %sub.consumer, event_id = %event.id, event_type = %event.event_type, error = %err, attempt, "dead-lettering event");
                return match record_dead_letter(
                    &sub.db,
                    &sub.consumer,
                    event,
                    &format!("{err:#}"),
                    attempt,
                )
                .await
                {
                    Ok(()) => true,
                    Err(db_err) => {
                        tracing::error!(error = %db_err, "could not record dead letter; the event will be redelivered");
                        false
                    }
                };
            }
            Err(err) => {
                tracing::warn!(consumer = %sub.consumer, event_id = %event.id, error = %err, attempt, "event handling failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(retry.delay_after(attempt)) => {}
                }
                attempt += 1;
            }
        }
    }
}

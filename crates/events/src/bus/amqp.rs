//! RabbitMQ. One durable topic exchange; per consuming service a durable queue
//! `<exchange>.<consumer>` bound to its patterns, a `.retry` queue whose
//! messages wait out a per-message TTL and then dead-letter back to the main
//! queue, and a `.dead` queue for events that exhausted their attempts.
//! Publishing waits for the broker's confirm; consumers ack manually after the
//! handler has committed. Connections are re-established after any failure.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, RetryPolicy, Subscription};
use crate::envelope::Event;

const ATTEMPT_HEADER: &str = "x-miliki-attempt";
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AmqpBus {
    url: String,
    exchange: String,
    retry: RetryPolicy,
    /// Every consumer queue and its patterns, declared whenever we connect,
    /// so events published before a consumer first starts still reach it.
    topology: Vec<(String, Vec<String>)>,
    publisher: Mutex<Option<(Connection, Channel)>>,
}

impl AmqpBus {
    pub fn new(
        url: &str,
        exchange: &str,
        retry: RetryPolicy,
        topology: Vec<(String, Vec<String>)>,
    ) -> Self {
        Self {
            url: url.to_owned(),
            exchange: exchange.to_owned(),
            retry,
            topology,
            publisher: Mutex::new(None),
        }
    }

    fn queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.exchange)
    }

    async fn connect(&self) -> Result<(Connection, Channel), BusError> {
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(&self.url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| BusError::Unavailable("timed out connecting to RabbitMQ".into()))?
        .map_err(unavailable)?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        channel
            .exchange_declare(
                &self.exchange,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        for (consumer, patterns) in &self.topology {
            self.declare_consumer(&channel, consumer, patterns).await?;
        }
        Ok((conn, channel))
    }

    async fn declare_consumer(
        &self,
        channel: &Channel,
        consumer: &str,
        patterns: &[String],
    ) -> Result<(), BusError> {
        let queue = self.queue(consumer);
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(&queue, durable, FieldTable::default())
            .await
            .map_err(unavailable)?;
        let mut retry_args = FieldTable::default();
        retry_args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        retry_args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.as_str().into()),
        );
        channel
            .queue_declare(&format!("{queue}.retry"), durable, retry_args)
            .await
            .map_err(unavailable)?;
        channel
            .queue_declare(&format!("{queue}.dead"), durable, FieldTable::default())
            .await
            .map_err(unavailable)?;
        for pattern in patterns {
            channel
                .queue_bind(
                    &queue,
                    &self.exchange,
                    pattern,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn publish_on(
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BusError> {
        // A broker that vanished mid-publish may never confirm; give up and retry.
        let confirm = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            channel
                .basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await?
                .await
        })
        .await
        .map_err(|_| BusError::Unavailable("no publisher confirm in time".into()))?
        .map_err(unavailable)?;
        match confirm {
            Confirmation::Nack(_) => Err(BusError::Refused("broker nacked the event".into())),
            _ => Ok(()),
        }
    }

    /// Connects, declares and consumes until the connection fails or shutdown.
    async fn consume_once(
        &self,
        sub: &Subscription,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let (conn, channel) = self.connect().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        self.declare_consumer(&channel, &sub.consumer, &sub.patterns)
            .await?;
        channel
            .basic_qos(16, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let queue = self.queue(&sub.consumer);
        let mut deliveries = channel
            .basic_consume(
                &queue,
                &format!("{queue}.{}", miliki_platform::id::new_id()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(consumer = %sub.consumer, queue = %queue, "consuming events");
        let mut watchdog = tokio::time::interval(Duration::from_millis(500));
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = conn.close(200, "shutting down").await;
                    return Ok(());
                }
                // A connection the broker dropped does not always end the stream.
                _ = watchdog.tick() => {
                    if !conn.status().connected() {
                        return Err(BusError::Unavailable("connection lost".into()));
                    }
                    continue;
                }
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => return Err(unavailable(e)),
                    None => return Err(BusError::Unavailable("consumer stream ended".into())),
                },
            };
            let attempt = attempt_of(&delivery.properties) + 1;
            let outcome = match Event::from_json(&delivery.data) {
                Ok(event) => sub
                    .handler
                    .handle(&event)
                    .instrument(event.handler_span(&sub.consumer))
                    .await
                    .map_err(|e| format!("{e:#}")),
                Err(e) => Err(format!("not a CloudEvent: {e}")),
            };
            if let Err(error) = outcome {
                let dead =
                    attempt >= self.retry.max_attempts || Event::from_json(&delivery.data).is_err();
                let mut headers = FieldTable::default();
                headers.insert(
                    ATTEMPT_HEADER.into(),
                    AMQPValue::LongLongInt(i64::from(attempt)),
                );
                headers.insert(
                    "x-miliki-error".into(),
                    AMQPValue::LongString(LongString::from(error.as_str())),
                );
                let mut props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers);
                if let Some(ct) = delivery.properties.content_type() {
                    props = props.with_content_type(ct.clone());
                }
                let target = if dead {
                    tracing::error!(consumer = %sub.consumer, attempt, %error, "dead-lettering event");
                    format!("{queue}.dead")
                } else {
                    tracing::warn!(consumer = %sub.consumer, attempt, %error, "event handling failed; retrying");
                    let delay = self.retry.delay_after(attempt).as_millis().to_string();
                    props = props.with_expiration(ShortString::from(delay));
                    format!("{queue}.retry")
                };
                // The copy must be safe with the broker before the original is acked.
                Self::publish_on(&channel, "", &target, &delivery.data, props).await?;
            }
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(unavailable)?;
        }
    }
}

fn attempt_of(props: &BasicProperties) -> u32 {
    props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::ShortInt(n) => u32::try_from(n).ok(),
            _ => None,
        })
        .unwrap_or(0)
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let mut guard = self.publisher.lock().await;
        if guard
            .as_ref()
            .map(|(c, _)| !c.status().connected())
            .unwrap_or(true)
        {
            let (conn, channel) = self.connect().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            *guard = Some((conn, channel));
        }
        let Some((_, channel)) = guard.as_ref() else {
            return Err(BusError::Unavailable("no channel".into()));
        };
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/cloudevents+json"))
            .with_message_id(ShortString::from(event.id.to_string()))
            .with_type(ShortString::from(event.event_type.as_str()));
        let result = Self::publish_on(
            channel,
            &self.exchange,
            &event.event_type,
            event.to_json().as_bytes(),
            props,
        )
        .await;
        if result.is_err() {
            // Start afresh next time: the channel may be closed.
            *guard = None;
        }
        result
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let bus = Arc::new(AmqpBus::new(
            &self.url,
            &self.exchange,
            self.retry,
            self.topology.clone(),
        ));
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while !shutdown.is_cancelled() {
                match bus.consume_once(&subscription, &shutdown).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(consumer = %subscription.consumer, error = %e, "event consumer lost its connection; reconnecting");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Ok(())
    }

    async fn ready(&self) -> Result<(), BusError> {
        let mut guard = self.publisher.lock().await;
        if guard
            .as_ref()
            .map(|(c, _)| c.status().connected())
            .unwrap_or(false)
        {
            return Ok(());
        }
        let (conn, channel) = self.connect().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        *guard = Some((conn, channel));
        Ok(())
    }
}

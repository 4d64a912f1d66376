//! The event machinery end to end: outbox → relay → bus → consumer with inbox,
//! on SQLite with the in-process bus, and on PostgreSQL with RabbitMQ when
//! MILIKI_TEST_DATABASE_URL and MILIKI_TEST_AMQP_URL are set.

mod common;

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use miliki_events::bus::Bus;
use miliki_events::relay::{self, Relay};

async fn exactly_once_when_the_relay_crashes_after_publishing(distributed: bool) {
    let Some(s) = setup(distributed).await else {
        return;
    };
    s.subscribe(Recorder::healthy(&s.db)).await;
    let ids = s.write_events(5).await;
    let crashing: Arc<dyn Bus> = Arc::new(CrashAfterPublish {
        inner: s.bus.clone(),
        crashes: AtomicU32::new(2),
    });
    let relay = Relay::new(s.db.clone(), crashing, s.clock.clone(), &s.writer);
    // Two crashed batches: the first event goes out three times in all.
    assert!(relay.publish_batch().await.is_err());
    assert!(relay.publish_batch().await.is_err());
    assert_eq!(relay.drain().await.unwrap(), 5);
    assert_eq!(relay::pending(&s.db).await.unwrap(), 0);
    assert_eq!(s.effects_per_event(&ids).await, vec![1; 5]);
    s.shutdown.cancel();
}

async fn exactly_once_when_the_consumer_crashes_before_acknowledging(distributed: bool) {
    let Some(s) = setup(distributed).await else {
        return;
    };
    s.subscribe(Recorder::crashing(&s.db, 2)).await;
    let ids = s.write_events(3).await;
    tokio::spawn(
        Relay::new(s.db.clone(), s.bus.clone(), s.clock.clone(), &s.writer).run(s.shutdown.clone()),
    );
    assert_eq!(s.effects_per_event(&ids).await, vec![1; 3]);
    s.shutdown.cancel();
}

async fn failing_events_are_dead_lettered_after_their_retries(distributed: bool) {
    let Some(s) = setup(distributed).await else {
        return;
    };
    s.subscribe(Recorder::failing(&s.db)).await;
    let ids = s.write_events(1).await;
    let relay = Relay::new(s.db.clone(), s.bus.clone(), s.clock.clone(), &s.writer);
    relay.drain().await.unwrap();
    if distributed {
        // RabbitMQ parks it in the consumer's .dead queue: nothing is lost, nothing is stuck.
        let conn = lapin::Connection::connect(
            &env("MILIKI_TEST_AMQP_URL").unwrap(),
            lapin::ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let mut parked = 0;
        for _ in 0..100 {
            let q = channel
                .queue_declare(
                    &format!("{}.recorder.dead", s.exchange),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    Default::default(),
                )
                .await
                .unwrap();
            parked = q.message_count();
            if parked > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(parked, 1);
    } else {
        let dead: Vec<(String, i64)> =
            sqlx::query_as("SELECT event_id, attempts FROM dead_letters")
                .fetch_all(s.db.reader())
                .await
                .unwrap();
        assert_eq!(dead, vec![(ids[0].to_string(), 3)]);
    }
    assert_eq!(relay::pending(&s.db).await.unwrap(), 0);
    s.shutdown.cancel();
}

async fn replicas_share_the_outbox_without_publishing_twice(distributed: bool) {
    let Some(s) = setup(distributed).await else {
        return;
    };
    s.subscribe(Recorder::healthy(&s.db)).await;
    let ids = s.write_events(60).await;
    let a = Relay::new(s.db.clone(), s.bus.clone(), s.clock.clone(), &s.writer);
    let b = Relay::new(s.db.clone(), s.bus.clone(), s.clock.clone(), &s.writer);
    let (x, y) = tokio::join!(a.drain(), b.drain());
    assert_eq!(
        x.unwrap() + y.unwrap(),
        60,
        "each row published by exactly one relay"
    );
    assert_eq!(s.effects_per_event(&ids).await, vec![1; 60]);
    s.shutdown.cancel();
}

#[tokio::test]
async fn relay_crash_embedded() {
    exactly_once_when_the_relay_crashes_after_publishing(false).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn relay_crash_postgres_rabbitmq() {
    exactly_once_when_the_relay_crashes_after_publishing(true).await;
}

#[tokio::test]
async fn consumer_crash_embedded() {
    exactly_once_when_the_consumer_crashes_before_acknowledging(false).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn consumer_crash_postgres_rabbitmq() {
    exactly_once_when_the_consumer_crashes_before_acknowledging(true).await;
}

#[tokio::test]
async fn dead_letters_embedded() {
    failing_events_are_dead_lettered_after_their_retries(false).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn dead_letters_postgres_rabbitmq() {
    failing_events_are_dead_lettered_after_their_retries(true).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn competing_relays_postgres_rabbitmq() {
    replicas_share_the_outbox_without_publishing_twice(true).await;
}

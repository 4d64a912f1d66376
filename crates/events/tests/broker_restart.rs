//! RabbitMQ restarted in the middle of a stream of events: nothing is lost and
//! nothing is handled twice. Runs on its own (a test binary of its own) since
//! it stops the broker every other test would use.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use miliki_events::relay::{self, Relay};

fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ: MILIKI_TEST_DATABASE_URL, MILIKI_TEST_AMQP_URL (bash .ci/run sets them)"]
async fn nothing_is_lost_when_rabbitmq_restarts_mid_stream() {
    if !rabbitmqctl(&["status"]) {
        eprintln!(
            "SKIPPED: needs a local RabbitMQ controllable with rabbitmqctl (set up by .ci/run)"
        );
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,lapin=warn")
        .with_test_writer()
        .try_init();
    let Some(s) = setup(true).await else { return };
    s.subscribe(Recorder::healthy(&s.db)).await;
    tokio::spawn(
        Relay::new(s.db.clone(), s.bus.clone(), s.clock.clone(), &s.writer).run(s.shutdown.clone()),
    );

    let mut ids = s.write_events(50).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The broker goes away while events keep being written...
    assert!(rabbitmqctl(&["stop_app"]), "rabbitmqctl stop_app failed");
    ids.extend(s.write_events(50).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    ids.extend(s.write_events(50).await);
    // ...and comes back.
    let restarted = rabbitmqctl(&["start_app"]) && rabbitmqctl(&["await_startup"]);
    assert!(restarted, "rabbitmqctl start_app failed");
    ids.extend(s.write_events(50).await);

    let counts = s.effects_within(&ids, 2400).await;
    assert_eq!(counts.len(), 200);
    let missing = counts.iter().filter(|&&n| n == 0).count();
    let doubled = counts.iter().filter(|&&n| n > 1).count();
    assert_eq!(
        (missing, doubled),
        (0, 0),
        "every event handled exactly once"
    );
    assert_eq!(relay::pending(&s.db).await.unwrap(), 0);
    s.shutdown.cancel();
}

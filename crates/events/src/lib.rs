//! How services tell each other what happened.
//!
//! A service writes each event to its own `outbox` table in the same
//! transaction as the state change ([`outbox::EventWriter`]); a [`relay::Relay`]
//! publishes the outbox to a [`bus::Bus`] (in-process, or RabbitMQ with
//! publisher confirms) and marks rows published only once the bus has them.
//! Consumers record each handled event id in their `inbox` in the same
//! transaction as its effect ([`inbox::claim`]), so a redelivery is harmless.
//! Events are CloudEvents 1.0 ([`envelope::Event`]) whose payloads are the
//! typed structs of the [`catalogue`].

pub mod bus;
pub mod catalogue;
pub mod credentials;
pub mod envelope;
pub mod inbox;
pub mod outbox;
pub mod relay;
pub mod service;
pub mod standing;

pub use bus::{Bus, EventHandler, RetryPolicy, Subscription};
pub use envelope::{Event, EventPayload};
pub use outbox::EventWriter;

/// The tables of the event machinery, installed into every service's database.
pub static MIGRATIONS: miliki_platform::db::MigrationSet = miliki_platform::db::MigrationSet {
    name: "events",
    migrations: &[
        miliki_platform::db::Migration {
            version: 1,
            name: "outbox_inbox_dead_letters",
            sql: include_str!("../migrations/0001_outbox_inbox.sql"),
        },
        miliki_platform::db::Migration {
            version: 2,
            name: "credentials",
            sql: miliki_platform::credentials::SCHEMA,
        },
    ],
};

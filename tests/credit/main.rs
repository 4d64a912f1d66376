//! The credit service through its public surface: HTTP via the gateway of
//! an embedded app (SQLite by default, PostgreSQL/RabbitMQ when the
//! MILIKI_TEST_* variables are set).

// Amounts are written as shillings_cents (165_000_00 is KES 165,000.00).
#![allow(clippy::inconsistent_digit_grouping)]

#[path = "../common/mod.rs"]
mod common;

#[path = "../vehicles/support.rs"]
#[allow(dead_code)]
mod vehicle_support;

#[path = "../payments/support.rs"]
#[allow(dead_code)]
mod payment_support;

mod applications;
mod decisions;
mod distributed;
mod journey;
mod scores;
mod statements;
mod support;
mod upgrades;

//! The payments service through its public surface: HTTP via the gateway of
//! an embedded app (SQLite by default, PostgreSQL/RabbitMQ when the
//! MILIKI_TEST_* variables are set).

// Amounts are written as shillings_cents (165_000_00 is KES 165,000.00).
#![allow(clippy::inconsistent_digit_grouping)]

#[path = "../common/mod.rs"]
mod common;

#[path = "../vehicles/support.rs"]
#[allow(dead_code)]
mod vehicle_support;

mod arrears;
mod contracts;
mod distributed;
mod journey;
mod ledger;
mod mobile;
mod products;
mod quotes;
mod reminders;
mod reports;
mod support;
mod verify;

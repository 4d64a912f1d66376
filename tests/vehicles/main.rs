//! The vehicles service through its public surface: HTTP via the gateway of
//! an embedded app (SQLite by default, PostgreSQL/RabbitMQ/Redis when the
//! MILIKI_TEST_* variables are set), the CLI, and separate processes.

// Prices are written as shillings_cents (165_000_00 is KES 165,000.00).
#![allow(clippy::inconsistent_digit_grouping)]

#[path = "../common/mod.rs"]
mod common;

mod distributed;
mod editing;
mod hardening;
mod import;
mod index;
mod inventory;
mod reservations;
mod search;
mod stream;
mod support;

//! The telematics service through its public surface: HTTP via the gateway
//! of an embedded app, trackers over real TCP sockets and WebSockets, and
//! other services' events on the bus (SQLite by default; PostgreSQL and
//! RabbitMQ when the MILIKI_TEST_* variables are set).

#[path = "../common/mod.rs"]
mod common;

mod devices;
mod immobilization;
mod ingest;
mod risk;
mod support;
mod websocket;

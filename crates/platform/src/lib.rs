//! The shared kernel every Miliki service stands on.
//!
//! A service sees a database ([`db::Db`]), a clock ([`clock::Clock`]), its
//! [`config::Settings`], the [`crypto::Keyring`] for fields at rest and the
//! [`auth::Tokens`] that mint and check JWTs. None of these know whether the
//! process runs embedded (SQLite, in-process bus) or distributed (PostgreSQL,
//! RabbitMQ, Redis): that choice is made once, at start-up, by the binary.

pub mod auth;
pub mod clock;
pub mod config;
pub mod contact;
pub mod credentials;
pub mod crypto;
pub mod csv;
pub mod db;
pub mod enums;
pub mod etag;
pub mod http;
pub mod id;
pub mod idempotency;
pub mod money;
pub mod optional_redis;
pub mod pagination;
pub mod problem;
pub mod ratelimit;
pub mod server;
pub mod streams;
pub mod telemetry;

pub use problem::ApiError;

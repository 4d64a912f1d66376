//! The platform's HTTP API, driven as a client would drive it, through the
//! gateway of an embedded app on a random port.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod gateway;
mod hardening;
mod keys;
mod kyc;
mod phone;
mod security;
mod users;

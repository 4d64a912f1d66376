//! HTTP handlers, one module per area.

pub mod auth;
pub mod kyc;
pub mod phone;
pub mod users;

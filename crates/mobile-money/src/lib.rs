//! The mobile-money rails the payments service collects through: clients for
//! Safaricom's Daraja API (M-Pesa) and MTN MoMo's Collection API, speaking
//! their wire formats exactly, and in-process sandboxes that speak the same
//! formats and call back like the providers do, so the platform runs and is
//! tested with no account anywhere.

pub mod daraja;
mod http;
pub mod momo;
pub mod sandbox;

/// Why a call to a rail did not give an answer the caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RailError {
    /// The provider answered and refused the request: nothing happened.
    #[error("the rail refused the request: {code}: {message}")]
    Refused { code: String, message: String },
    /// The provider could not be reached, or failed before taking the
    /// request (a connection refused, a 5xx without a provider error code).
    #[error("the rail is unavailable: {0}")]
    Unavailable(String),
    /// The request went out and no answer came in time: it may or may not
    /// have taken effect, so only a query can tell.
    #[error("the rail did not answer: {0}")]
    NoAnswer(String),
}

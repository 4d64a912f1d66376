//! In-process sandboxes of Daraja and MoMo: the same paths, headers and
//! bodies as the providers, outcomes chosen by the phone number, and
//! callbacks sent like the providers send them (once, never retried), so the
//! platform runs end to end with no provider account.

use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use miliki_platform::clock::SharedClock;
use rand::Rng;

mod momo;
mod mpesa;

/// The sandboxes' credentials; the clients default to them when unconfigured.
pub mod defaults {
    pub const MPESA_CONSUMER_KEY: &str = "miliki-sandbox-consumer-key";
    pub const MPESA_CONSUMER_SECRET: &str = "miliki-sandbox-consumer-secret";
    /// Safaricom's own sandbox paybill.
    pub const MPESA_SHORTCODE: &str = "174379";
    /// Safaricom's published sandbox passkey for 174379.
    pub const MPESA_PASSKEY: &str =
        "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";
    pub const MPESA_INITIATOR: &str = "testapi";
    pub const MPESA_SECURITY_CREDENTIAL: &str = "miliki-sandbox-security-credential";
    pub const MOMO_SUBSCRIPTION_KEY: &str = "5f0c7a1e3b9d4e2f8a6c1b7d9e3f5a21";
    pub const MOMO_API_USER: &str = "0d8f6c2e-5b7a-4c39-9e1f-3a2b4c6d8e10";
    pub const MOMO_API_KEY: &str = "b6e1d3f5a7c94e2b8d0f1a3c5e7b9d24";
    pub const MOMO_TARGET_ENVIRONMENT: &str = "sandbox";
}

/// How the sandboxes behave.
#[derive(Clone)]
pub struct SandboxOptions {
    /// Decides token expiry, timestamps and the two-minute rule limit.
    pub clock: SharedClock,
    /// Real time between a prompt and the simulated customer's answer (default 100 ms).
    pub answer_after: std::time::Duration,
}

impl SandboxOptions {
    /// The defaults: answers after 100 ms.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            answer_after: std::time::Duration::from_millis(100),
        }
    }
}

/// Both sandboxes, routes under /sandbox/mpesa/... and /sandbox/momo/... (full paths).
pub fn router(options: SandboxOptions) -> axum::Router {
    // One client for every callback: connection reuse, and a bound on how
    // long a dead receiver can hold a delivery task.
    let callbacks = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    axum::Router::new()
        .nest(
            "/sandbox/mpesa",
            mpesa::router(options.clone(), callbacks.clone()),
        )
        .nest("/sandbox/momo", momo::router(options, callbacks))
}

/// "The next n API calls fail": counted down atomically, shared by a sandbox's routes.
#[derive(Default)]
pub(crate) struct Outage(AtomicU32);

impl Outage {
    pub(crate) fn set(&self, failures: u32) {
        self.0.store(failures, Ordering::SeqCst);
    }

    /// True when this call is one of the failing ones.
    pub(crate) fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// 503 with no provider error code: what a load balancer in front of a
    /// provider answers when the provider is down.
    pub(crate) fn response() -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    }
}

/// `Basic user:password` from the headers, when well formed.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The bearer token from the headers.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    Some(value.strip_prefix("Bearer ")?.trim().to_string())
}

/// A header as text.
pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    Some(headers.get(name)?.to_str().ok()?.to_string())
}

/// `len` random characters from `alphabet`.
pub(crate) fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

pub(crate) const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub(crate) const DIGITS: &[u8] = b"0123456789";
pub(crate) const HEX: &[u8] = b"0123456789abcdef";
pub(crate) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Whether a statement filter matches.
#[derive(serde::Deserialize)]
pub(crate) struct StatementQuery {
    pub(crate) phone: Option<String>,
}

/// `{"failures": n}`.
#[derive(serde::Deserialize)]
pub(crate) struct OutageRequest {
    pub(crate) failures: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_counts_down_to_zero() {
        let o = Outage::default();
        assert!(!o.take());
        o.set(2);
        assert!(o.take());
        assert!(o.take());
        assert!(!o.take());
    }
}

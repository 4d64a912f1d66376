//! The mobile-money rails as this service uses them: which provider a method
//! goes to, how it is configured, and a circuit breaker per rail so a provider
//! that keeps failing is left alone for a while instead of hammered.
//!
//! Unconfigured, both rails point at the in-process sandboxes (`/sandbox/...`
//! on this process, or `MILIKI_SANDBOX_URL`) with the sandboxes' fake
//! credentials; production refuses that.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use miliki_events::service::ServiceDeps;
use miliki_mobile_money::daraja::{Daraja, DarajaConfig};
use miliki_mobile_money::momo::{Momo, MomoConfig};
use miliki_mobile_money::sandbox::defaults;
use miliki_mobile_money::RailError;
use miliki_platform::money::Currency;

use crate::state::extra_str;

miliki_platform::string_enum!(
    /// A mobile-money rail.
    Rail {
        Mpesa => "mpesa",
        MtnMomo => "mtn_momo",
    }
);

impl Rail {
    /// What a request to this rail asks for: it takes whole units of the
    /// currency, so a fraction is rounded up (the customer never pays less
    /// than is due).
    pub fn round_up(self, amount_minor: i64, currency: Currency) -> i64 {
        let unit = 10_i64.pow(currency.exponent());
        amount_minor.div_euclid(unit) * unit + if amount_minor % unit > 0 { unit } else { 0 }
    }
}

/// The clients of both rails, their breakers, and the callback paths.
pub struct Rails {
    pub mpesa: Daraja,
    pub momo: Momo,
    breakers: [Breaker; 2],
    enabled: [bool; 2],
    /// The secret path segment of every callback URL.
    pub callback_secret: String,
    /// Whether C2B validation refuses account numbers no contract has
    /// (`MILIKI_MPESA_C2B_VALIDATE_ACCOUNTS`, default true).
    pub validate_accounts: bool,
    /// Whether both rails point at sandboxes (never in production).
    pub sandboxed: bool,
}

impl Rails {
    pub fn from_deps(deps: &ServiceDeps) -> anyhow::Result<Self> {
        let s = &deps.settings;
        let configured =
            extra_str(s, "mpesa_base_url").is_some() || extra_str(s, "momo_base_url").is_some();
        let sandbox_base = extra_str(s, "sandbox_url").unwrap_or_else(|| deps.base_url.clone());
        let sandbox_base = sandbox_base.trim_end_matches('/').to_owned();
        // In production a rail without its base URL is off: the sandboxes
        // are for development only.
        let enabled = [
            !s.is_production() || extra_str(s, "mpesa_base_url").is_some(),
            !s.is_production() || extra_str(s, "momo_base_url").is_some(),
        ];
        let secret = match extra_str(s, "callback_secret") {
            Some(secret) if secret.len() >= 16 => secret,
            Some(_) => anyhow::bail!("MILIKI_CALLBACK_SECRET must be at least 16 characters"),
            None if s.is_production() && enabled.iter().any(|on| *on) => {
                anyhow::bail!("production needs MILIKI_CALLBACK_SECRET (the callback URLs' secret path segment)")
            }
            // Development: derived from the blind-index key, so it survives
            // restarts and nobody without the secrets file can guess it.
            None => deps
                .keyring
                .blind_index("payments.callback_path", "v1")
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(32)
                .collect(),
        };
        let callback_base = extra_str(s, "callback_base_url")
            .unwrap_or_else(|| deps.service_url("payments"))
            .trim_end_matches('/')
            .to_owned();
        let mpesa_callbacks = format!("{callback_base}/api/v1/callbacks/mpesa/{secret}");
        let timeout = Duration::from_millis(
            extra_str(s, "rails_timeout_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000),
        );
        let or = |key: &str, default: &str| extra_str(s, key).unwrap_or_else(|| default.to_owned());
        let mpesa = Daraja::new(
            DarajaConfig {
                base_url: or("mpesa_base_url", &format!("{sandbox_base}/sandbox/mpesa")),
                consumer_key: or("mpesa_consumer_key", defaults::MPESA_CONSUMER_KEY),
                consumer_secret: or("mpesa_consumer_secret", defaults::MPESA_CONSUMER_SECRET),
                shortcode: or("mpesa_shortcode", defaults::MPESA_SHORTCODE),
                passkey: or("mpesa_passkey", defaults::MPESA_PASSKEY),
                initiator_name: or("mpesa_initiator_name", defaults::MPESA_INITIATOR),
                security_credential: or(
                    "mpesa_security_credential",
                    defaults::MPESA_SECURITY_CREDENTIAL,
                ),
                stk_callback_url: format!("{mpesa_callbacks}/stk"),
                c2b_validation_url: format!("{mpesa_callbacks}/c2b/validation"),
                c2b_confirmation_url: format!("{mpesa_callbacks}/c2b/confirmation"),
                status_result_url: format!("{mpesa_callbacks}/status/result"),
                status_timeout_url: format!("{mpesa_callbacks}/status/timeout"),
                timeout,
            },
            deps.clock.clone(),
        );
        let momo = Momo::new(
            MomoConfig {
                base_url: or("momo_base_url", &format!("{sandbox_base}/sandbox/momo")),
                subscription_key: or("momo_subscription_key", defaults::MOMO_SUBSCRIPTION_KEY),
                api_user: or("momo_api_user", defaults::MOMO_API_USER),
                api_key: or("momo_api_key", defaults::MOMO_API_KEY),
                target_environment: or(
                    "momo_target_environment",
                    defaults::MOMO_TARGET_ENVIRONMENT,
                ),
                callback_url: format!("{callback_base}/api/v1/callbacks/momo/{secret}"),
                timeout,
            },
            deps.clock.clone(),
        );
        Ok(Self {
            mpesa,
            momo,
            breakers: [Breaker::default(), Breaker::default()],
            enabled,
            callback_secret: secret,
            validate_accounts: !matches!(
                extra_str(s, "mpesa_c2b_validate_accounts").as_deref(),
                Some("false" | "0" | "no")
            ),
            sandboxed: !configured,
        })
    }

    /// Whether the rail is configured (always, outside production).
    pub fn enabled(&self, rail: Rail) -> bool {
        self.enabled[rail as usize]
    }

    fn breaker(&self, rail: Rail) -> &Breaker {
        &self.breakers[rail as usize]
    }

    /// Whether a call to `rail` may go out now.
    pub fn allows(&self, rail: Rail) -> bool {
        self.breaker(rail).allows()
    }

    /// Records how a call to `rail` went: only an unreachable or failing
    /// provider counts against it; a refusal is an answer.
    pub fn record<T>(&self, rail: Rail, result: &Result<T, RailError>) {
        let failed = matches!(
            result,
            Err(RailError::Unavailable(_) | RailError::NoAnswer(_))
        );
        self.breaker(rail).record(failed);
    }

    /// `None` when the rail is healthy, else why it is not.
    pub fn degraded(&self, rail: Rail) -> Option<String> {
        self.breaker(rail).degraded()
    }
}

/// Consecutive failures after which a rail's circuit opens.
const TRIP_AFTER: u32 = 5;
/// How long an open circuit waits before letting one call through.
const OPEN_FOR: Duration = Duration::from_secs(30);

/// Closed → open after [`TRIP_AFTER`] consecutive failures → after
/// [`OPEN_FOR`], one trial call (half open): success closes, failure reopens.
#[derive(Default)]
struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    trial_out: bool,
}

impl Breaker {
    fn allows(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if s.trial_out => false,
            Some(_) => {
                s.trial_out = true;
                true
            }
        }
    }

    fn record(&self, failed: bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.trial_out = false;
        if failed {
            s.failures += 1;
            if s.failures >= TRIP_AFTER {
                s.open_until = Some(Instant::now() + OPEN_FOR);
            }
        } else {
            s.failures = 0;
            s.open_until = None;
        }
    }

    fn degraded(&self) -> Option<String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.open_until.map(|_| {
            format!(
                "circuit open after {} consecutive failures; calls wait",
                s.failures
            )
        })
    }
}

/// A rail in `/health/ready`: degraded (never critical) while its circuit is
/// open, since payments still take cash and prompts wait meanwhile.
pub struct RailReady(pub std::sync::Arc<Rails>, pub Rail);

#[async_trait::async_trait]
impl miliki_platform::http::ReadinessCheck for RailReady {
    fn name(&self) -> String {
        self.1.as_str().to_owned()
    }
    fn critical(&self) -> bool {
        false
    }
    async fn check(&self) -> Result<(), String> {
        match self.0.degraded(self.1) {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_up_to_whole_units() {
        assert_eq!(Rail::Mpesa.round_up(150_000, Currency::Kes), 150_000);
        assert_eq!(Rail::Mpesa.round_up(150_001, Currency::Kes), 150_100);
        assert_eq!(Rail::Mpesa.round_up(1, Currency::Kes), 100);
        assert_eq!(Rail::MtnMomo.round_up(5_001, Currency::Ugx), 5_001);
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_lets_one_trial_through() {
        let b = Breaker::default();
        for _ in 0..TRIP_AFTER - 1 {
            b.record(true);
        }
        assert!(b.allows());
        b.record(false);
        for _ in 0..TRIP_AFTER {
            b.record(true);
        }
        assert!(!b.allows());
        assert!(b.degraded().is_some());
        b.state.lock().unwrap().open_until = Some(Instant::now());
        assert!(b.allows(), "one trial once the wait is over");
        assert!(!b.allows(), "only one");
        b.record(false);
        assert!(b.allows());
        assert!(b.degraded().is_none());
    }
}

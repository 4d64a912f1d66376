//! Time comes from an injected [`Clock`] so tests and demos can move it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};

/// A source of the current instant, in UTC.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// The clock as one that can be moved, when it is one (`serve
    /// --simulated-clock`, tests); the wall clock is not.
    fn manual(&self) -> Option<&ManualClock> {
        None
    }
}

/// The clock every service holds.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; used by tests and the demo.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn manual(&self) -> Option<&ManualClock> {
        Some(self)
    }
}

/// Instants are stored as microseconds since the Unix epoch: one portable,
/// sortable integer column on both SQLite and PostgreSQL.
pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`to_micros`]; out-of-range values clamp to the epoch.
pub fn from_micros(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 2, 28, 23, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::hours(2));
        assert_eq!(
            clock.now(),
            Utc.with_ymd_and_hms(2026, 3, 1, 1, 0, 0).unwrap()
        );
    }

    #[test]
    fn micros_round_trip() {
        let t = Utc.with_ymd_and_hms(2028, 2, 29, 12, 30, 5).unwrap();
        assert_eq!(from_micros(to_micros(t)), t);
    }
}

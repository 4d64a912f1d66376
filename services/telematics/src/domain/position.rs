//! The one position type every protocol lands in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One fix from a tracker, in the units the API uses (UTC, degrees, km/h,
/// metres, millivolts), with the alarms it reported and its raw IO kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Position {
    pub at: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    pub speed_kmh: f64,
    pub heading: Option<f64>,
    pub altitude: Option<f64>,
    pub satellites: Option<i64>,
    pub ignition: Option<bool>,
    pub movement: Option<bool>,
    pub odometer_m: Option<i64>,
    pub ext_voltage_mv: Option<i64>,
    pub battery_mv: Option<i64>,
    /// Battery charge in percent, where the tracker reports it.
    pub battery_pct: Option<f64>,
    pub alarms: Alarms,
    /// Engine facts from OBD, where present.
    pub coolant_temp_c: Option<f64>,
    pub dtc_count: Option<i64>,
    pub engine_rpm: Option<i64>,
    /// Every IO element as the tracker sent it, by its protocol's id.
    #[schema(value_type = Object)]
    pub io: serde_json::Map<String, serde_json::Value>,
}

/// Alarm flags a tracker raised with this fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Alarms {
    pub crash: bool,
    pub jamming: bool,
    pub power_cut: bool,
    pub tamper: bool,
    pub sos: bool,
}

impl Position {
    /// Whether the coordinates are on the globe and not the (0, 0) that
    /// trackers report before their first fix.
    pub fn has_fix(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
            && !(self.lat == 0.0 && self.lon == 0.0)
    }

    /// Stationary as immobilization understands it: not moving, engine off.
    pub fn is_parked(&self, max_speed_kmh: f64) -> bool {
        self.speed_kmh <= max_speed_kmh && self.ignition != Some(true)
    }
}

/// Knots to km/h (OsmAnd and GT06 extensions report knots).
pub fn knots_to_kmh(knots: f64) -> f64 {
    knots * 1.852
}

//! Risk detection as a pure state machine per vehicle: positions go in, in
//! time order, findings come out. Conditions that last (speeding, a power
//! cut, a curfew breach) raise one finding when they start and must clear
//! past a margin before they can raise another (hysteresis); instant ones
//! (harsh braking, a crash) are held back for a cooldown after each finding.
//! The state serialises so it survives restarts.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Timelike, Utc};
use miliki_platform::string_enum;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::geo::Shape;
use super::position::Position;

string_enum!(
    /// What a risk event is about.
    RiskKind {
        Overspeed => "overspeed",
        HarshBraking => "harsh_braking",
        HarshAcceleration => "harsh_acceleration",
        GeofenceExit => "geofence_exit",
        GeofenceEntry => "geofence_entry",
        Curfew => "curfew",
        DeviceOffline => "device_offline",
        PowerCut => "power_cut",
        Tamper => "tamper",
        Jamming => "jamming",
        Crash => "crash",
        LowBattery => "low_battery",
        EngineFault => "engine_fault",
        Sos => "sos",
    }
);

string_enum!(
    Severity { Info => "info", Warning => "warning", Critical => "critical" }
);

/// Thresholds, from configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Thresholds {
    /// How long speeding must last before it counts.
    pub overspeed_sustain: Duration,
    /// Speed must fall this far below the limit before speeding can count again.
    pub overspeed_clear_margin_kmh: f64,
    /// Speed lost per second that counts as harsh braking, gained as harsh acceleration.
    pub harsh_braking_kmh_per_s: f64,
    pub harsh_accel_kmh_per_s: f64,
    /// Fixes further apart than this say nothing about braking.
    pub harsh_max_gap: Duration,
    /// Below this external voltage (when connected at all) the battery is low.
    pub low_battery_mv: i64,
    pub low_battery_pct: f64,
    /// Coolant hotter than this is an engine fault.
    pub coolant_max_c: f64,
    /// Local minutes after midnight when the curfew starts and ends (may wrap midnight).
    pub curfew: Option<(u32, u32)>,
    /// The operator's offset from UTC in minutes (Kenya: +180).
    pub utc_offset_minutes: i32,
    /// Speed above which the vehicle is moving for the curfew rule.
    pub moving_kmh: f64,
    /// Instant findings of one kind are at least this far apart.
    pub cooldown: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            overspeed_sustain: Duration::seconds(30),
            overspeed_clear_margin_kmh: 10.0,
            harsh_braking_kmh_per_s: 14.0,
            harsh_accel_kmh_per_s: 12.0,
            harsh_max_gap: Duration::seconds(4),
            low_battery_mv: 11_500,
            low_battery_pct: 15.0,
            coolant_max_c: 110.0,
            curfew: None,
            utc_offset_minutes: 180,
            moving_kmh: 5.0,
            cooldown: Duration::seconds(120),
        }
    }
}

/// A geofence as detection sees it.
#[derive(Debug, Clone)]
pub struct Fence {
    pub id: Uuid,
    pub name: String,
    pub shape: Shape,
}

/// Something worth telling staff about.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: RiskKind,
    pub severity: Severity,
    pub at: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    pub details: serde_json::Value,
}

/// What detection remembers about one vehicle between positions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VehicleRisk {
    pub last_at: Option<DateTime<Utc>>,
    pub last_speed: Option<f64>,
    pub overspeed_since: Option<DateTime<Utc>>,
    pub overspeed_peak: f64,
    /// Lasting conditions currently raised.
    pub active: BTreeSet<String>,
    /// When each instant kind was last raised.
    pub last_raised: BTreeMap<String, DateTime<Utc>>,
    /// Per fence: whether the vehicle is inside, and a contrary fix awaiting confirmation.
    pub fences: BTreeMap<Uuid, FenceState>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FenceState {
    pub inside: bool,
    pub pending: bool,
}

impl VehicleRisk {
    /// Feeds one position (newer than any before) and returns what it raised.
    pub fn observe(
        &mut self,
        p: &Position,
        speed_limit_kmh: f64,
        fences: &[Fence],
        t: &Thresholds,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        let finding = |kind, severity, details: serde_json::Value| Finding {
            kind,
            severity,
            at: p.at,
            lat: p.lat,
            lon: p.lon,
            details,
        };

        // Speeding, sustained.
        if p.speed_kmh > speed_limit_kmh {
            let since = *self.overspeed_since.get_or_insert(p.at);
            self.overspeed_peak = self.overspeed_peak.max(p.speed_kmh);
            if p.at - since >= t.overspeed_sustain && self.raise("overspeed") {
                out.push(finding(
                    RiskKind::Overspeed,
                    Severity::Warning,
                    serde_json::json!({
                        "speed_kmh": p.speed_kmh,
                        "peak_kmh": self.overspeed_peak,
                        "limit_kmh": speed_limit_kmh,
                        "for_secs": (p.at - since).num_seconds(),
                    }),
                ));
            }
        } else if p.speed_kmh <= speed_limit_kmh - t.overspeed_clear_margin_kmh {
            self.overspeed_since = None;
            self.overspeed_peak = 0.0;
            self.active.remove("overspeed");
        }

        // Harsh braking and acceleration from consecutive fixes.
        if let (Some(last_at), Some(last_speed)) = (self.last_at, self.last_speed) {
            let gap = p.at - last_at;
            if gap > Duration::zero() && gap <= t.harsh_max_gap {
                let rate = (p.speed_kmh - last_speed) / (gap.num_milliseconds() as f64 / 1000.0);
                let details = serde_json::json!({
                    "from_kmh": last_speed, "to_kmh": p.speed_kmh,
                    "kmh_per_s": (rate * 10.0).round() / 10.0,
                });
                if -rate >= t.harsh_braking_kmh_per_s && self.cool(RiskKind::HarshBraking, p.at, t)
                {
                    out.push(finding(RiskKind::HarshBraking, Severity::Info, details));
                } else if rate >= t.harsh_accel_kmh_per_s
                    && self.cool(RiskKind::HarshAcceleration, p.at, t)
                {
                    out.push(finding(
                        RiskKind::HarshAcceleration,
                        Severity::Info,
                        details,
                    ));
                }
            }
        }
        self.last_at = Some(p.at);
        self.last_speed = Some(p.speed_kmh);

        // Alarms the tracker raised.
        if p.alarms.crash && self.cool(RiskKind::Crash, p.at, t) {
            out.push(finding(
                RiskKind::Crash,
                Severity::Critical,
                serde_json::json!({ "speed_kmh": p.speed_kmh }),
            ));
        }
        if p.alarms.sos && self.cool(RiskKind::Sos, p.at, t) {
            out.push(finding(
                RiskKind::Sos,
                Severity::Critical,
                serde_json::json!({}),
            ));
        }
        let power_cut = p.alarms.power_cut || p.ext_voltage_mv.is_some_and(|mv| mv < 1000);
        self.lasting(&mut out, "power_cut", power_cut, || {
            finding(
                RiskKind::PowerCut,
                Severity::Critical,
                serde_json::json!({ "ext_voltage_mv": p.ext_voltage_mv }),
            )
        });
        self.lasting(&mut out, "tamper", p.alarms.tamper, || {
            finding(RiskKind::Tamper, Severity::Critical, serde_json::json!({}))
        });
        self.lasting(&mut out, "jamming", p.alarms.jamming, || {
            finding(RiskKind::Jamming, Severity::Critical, serde_json::json!({}))
        });
        let low = p
            .ext_voltage_mv
            .is_some_and(|mv| (1000..t.low_battery_mv).contains(&mv))
            || p.battery_pct.is_some_and(|pct| pct < t.low_battery_pct);
        let recovered = p
            .ext_voltage_mv
            .is_none_or(|mv| mv >= t.low_battery_mv + 300)
            && p.battery_pct
                .is_none_or(|pct| pct >= t.low_battery_pct + 5.0);
        if low || recovered {
            self.lasting(&mut out, "low_battery", low, || {
                finding(
                    RiskKind::LowBattery,
                    Severity::Warning,
                    serde_json::json!({ "ext_voltage_mv": p.ext_voltage_mv, "battery_pct": p.battery_pct }),
                )
            });
        }
        let hot = p.coolant_temp_c.is_some_and(|c| c > t.coolant_max_c);
        let dtc = p.dtc_count.is_some_and(|n| n > 0);
        self.lasting(&mut out, "engine_fault", hot || dtc, || {
            finding(
                RiskKind::EngineFault,
                Severity::Warning,
                serde_json::json!({ "coolant_temp_c": p.coolant_temp_c, "dtc_count": p.dtc_count }),
            )
        });

        // Moving during the curfew.
        if let Some((start, end)) = t.curfew {
            let local = p.at + Duration::minutes(i64::from(t.utc_offset_minutes));
            let minute = local.hour() * 60 + local.minute();
            let in_window = if start <= end {
                (start..end).contains(&minute)
            } else {
                minute >= start || minute < end
            };
            let moving = p.speed_kmh > t.moving_kmh;
            if !in_window || !moving {
                self.active.remove("curfew");
            } else if self.raise("curfew") {
                out.push(finding(
                    RiskKind::Curfew,
                    Severity::Warning,
                    serde_json::json!({ "speed_kmh": p.speed_kmh, "local_time": format!("{:02}:{:02}", minute / 60, minute % 60) }),
                ));
            }
        }

        // Geofences: a change counts once two fixes in a row agree.
        if p.has_fix() {
            for fence in fences {
                let inside = fence.shape.contains(p.lat, p.lon);
                match self.fences.get_mut(&fence.id) {
                    None => {
                        self.fences.insert(
                            fence.id,
                            FenceState {
                                inside,
                                pending: false,
                            },
                        );
                    }
                    Some(s) if s.inside == inside => s.pending = false,
                    Some(s) if !s.pending => s.pending = true,
                    Some(s) => {
                        s.inside = inside;
                        s.pending = false;
                        let (kind, severity) = if inside {
                            (RiskKind::GeofenceEntry, Severity::Info)
                        } else {
                            (RiskKind::GeofenceExit, Severity::Warning)
                        };
                        out.push(finding(
                            kind,
                            severity,
                            serde_json::json!({ "geofence_id": fence.id, "geofence": fence.name }),
                        ));
                    }
                }
            }
        }
        out
    }

    /// Marks a lasting condition raised; true if it was not already.
    fn raise(&mut self, key: &str) -> bool {
        self.active.insert(key.to_owned())
    }

    fn lasting(
        &mut self,
        out: &mut Vec<Finding>,
        key: &str,
        on: bool,
        make: impl FnOnce() -> Finding,
    ) {
        if on {
            if self.raise(key) {
                out.push(make());
            }
        } else {
            self.active.remove(key);
        }
    }

    /// True (and remembered) when `kind` was not raised within the cooldown.
    fn cool(&mut self, kind: RiskKind, at: DateTime<Utc>, t: &Thresholds) -> bool {
        let key = kind.as_str().to_owned();
        match self.last_raised.get(&key) {
            Some(last) if at - *last < t.cooldown => false,
            _ => {
                self.last_raised.insert(key, at);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap() + Duration::seconds(secs)
    }

    fn pos(secs: i64, speed: f64) -> Position {
        Position {
            at: at(secs),
            lat: -1.2864,
            lon: 36.8172,
            speed_kmh: speed,
            ..Default::default()
        }
    }

    fn kinds(f: &[Finding]) -> Vec<RiskKind> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn overspeed_counts_once_when_sustained_and_again_only_after_slowing_down() {
        let t = Thresholds::default();
        let mut r = VehicleRisk::default();
        let mut all = Vec::new();
        for s in (0..=60).step_by(10) {
            all.extend(r.observe(&pos(s, 95.0), 80.0, &[], &t));
        }
        assert_eq!(kinds(&all), vec![RiskKind::Overspeed]);
        // Hovering just under the limit does not re-arm it.
        assert!(r.observe(&pos(70, 78.0), 80.0, &[], &t).is_empty());
        assert!(r.observe(&pos(80, 95.0), 80.0, &[], &t).is_empty());
        // Slowing well below does.
        r.observe(&pos(90, 50.0), 80.0, &[], &t);
        let mut again = Vec::new();
        for s in (100..=140).step_by(10) {
            again.extend(r.observe(&pos(s, 95.0), 80.0, &[], &t));
        }
        assert_eq!(kinds(&again), vec![RiskKind::Overspeed]);
    }

    #[test]
    fn a_short_burst_is_not_speeding() {
        let t = Thresholds::default();
        let mut r = VehicleRisk::default();
        assert!(r.observe(&pos(0, 95.0), 80.0, &[], &t).is_empty());
        assert!(r.observe(&pos(10, 95.0), 80.0, &[], &t).is_empty());
        assert!(r.observe(&pos(20, 40.0), 80.0, &[], &t).is_empty());
    }

    #[test]
    fn harsh_braking_has_a_cooldown() {
        let t = Thresholds::default();
        let mut r = VehicleRisk::default();
        r.observe(&pos(0, 60.0), 80.0, &[], &t);
        let f = r.observe(&pos(2, 20.0), 80.0, &[], &t);
        assert_eq!(kinds(&f), vec![RiskKind::HarshBraking]);
        r.observe(&pos(3, 60.0), 80.0, &[], &t);
        assert!(!kinds(&r.observe(&pos(5, 20.0), 80.0, &[], &t)).contains(&RiskKind::HarshBraking));
    }

    #[test]
    fn geofence_exit_needs_two_fixes() {
        let t = Thresholds::default();
        let fence = Fence {
            id: Uuid::now_v7(),
            name: "CBD".into(),
            shape: Shape::Circle {
                lat: -1.2864,
                lon: 36.8172,
                radius_m: 2000.0,
            },
        };
        let mut r = VehicleRisk::default();
        assert!(r
            .observe(&pos(0, 10.0), 80.0, std::slice::from_ref(&fence), &t)
            .is_empty());
        let mut out = pos(10, 10.0);
        out.lat = -1.40;
        assert!(r
            .observe(&out, 80.0, std::slice::from_ref(&fence), &t)
            .is_empty());
        out.at = at(20);
        let f = r.observe(&out, 80.0, std::slice::from_ref(&fence), &t);
        assert_eq!(kinds(&f), vec![RiskKind::GeofenceExit]);
    }

    #[test]
    fn curfew_wraps_midnight_in_local_time() {
        let t = Thresholds {
            curfew: Some((22 * 60, 5 * 60)),
            ..Thresholds::default()
        };
        let mut r = VehicleRisk::default();
        // 08:00 UTC is 11:00 in Nairobi.
        assert!(r.observe(&pos(0, 40.0), 80.0, &[], &t).is_empty());
        // 20:00 UTC is 23:00 in Nairobi.
        let f = r.observe(&pos(12 * 3600, 40.0), 80.0, &[], &t);
        assert_eq!(kinds(&f), vec![RiskKind::Curfew]);
    }
}

//! Trips and distance from a vehicle's positions, oldest first.
//!
//! A trip starts at the first fix with the ignition on (or, for trackers
//! that do not report ignition, moving faster than walking pace) and ends
//! when the ignition goes off, or when the vehicle has not moved for the
//! stop time. Jitter while parked (a few metres per fix) does not count as distance.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::geo::haversine_m;
use super::position::Position;

/// One trip.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Trip {
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub start: [f64; 2],
    pub end: [f64; 2],
    pub distance_m: f64,
    pub duration_secs: i64,
    pub max_speed_kmh: f64,
    pub positions: usize,
}

const MOVING_KMH: f64 = 5.0;
/// Fixes closer than this while slow are GPS jitter, not travel.
const JITTER_M: f64 = 15.0;

fn active(p: &Position) -> bool {
    match p.ignition {
        Some(on) => on,
        None => p.speed_kmh > MOVING_KMH,
    }
}

fn step(a: &Position, b: &Position) -> f64 {
    let d = haversine_m(a.lat, a.lon, b.lat, b.lon);
    if d < JITTER_M && b.speed_kmh <= MOVING_KMH {
        0.0
    } else {
        d
    }
}

/// Splits positions into trips; `stop` ends a trip without an ignition report.
pub fn trips(positions: &[Position], stop: Duration) -> Vec<Trip> {
    let mut out = Vec::new();
    let mut current: Option<(Trip, usize, Option<DateTime<Utc>>)> = None;
    let mut prev: Option<&Position> = None;
    for p in positions.iter().filter(|p| p.has_fix()) {
        let on = active(p);
        match current.as_mut() {
            None if on => {
                current = Some((
                    Trip {
                        start_at: p.at,
                        end_at: p.at,
                        start: [p.lat, p.lon],
                        end: [p.lat, p.lon],
                        distance_m: 0.0,
                        duration_secs: 0,
                        max_speed_kmh: p.speed_kmh,
                        positions: 1,
                    },
                    0,
                    None,
                ));
            }
            None => {}
            Some((trip, _, still_since)) => {
                if let Some(a) = prev {
                    trip.distance_m += step(a, p);
                }
                trip.end_at = p.at;
                trip.end = [p.lat, p.lon];
                trip.max_speed_kmh = trip.max_speed_kmh.max(p.speed_kmh);
                trip.positions += 1;
                let ended = if p.ignition == Some(false) {
                    true
                } else if p.speed_kmh <= MOVING_KMH {
                    let since = *still_since.get_or_insert(p.at);
                    p.ignition.is_none() && p.at - since >= stop
                } else {
                    *still_since = None;
                    false
                };
                if ended {
                    if let Some((mut t, _, _)) = current.take() {
                        t.duration_secs = (t.end_at - t.start_at).num_seconds();
                        out.push(t);
                    }
                }
            }
        }
        prev = Some(p);
    }
    if let Some((mut t, _, _)) = current {
        t.duration_secs = (t.end_at - t.start_at).num_seconds();
        out.push(t);
    }
    out
}

/// Distance per local calendar day.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayDistance {
    pub date: NaiveDate,
    pub distance_m: f64,
}

pub fn daily_distance(positions: &[Position], offset: FixedOffset) -> Vec<DayDistance> {
    let mut out: Vec<DayDistance> = Vec::new();
    let mut prev: Option<&Position> = None;
    for p in positions.iter().filter(|p| p.has_fix()) {
        let day = p.at.with_timezone(&offset).date_naive();
        if out.last().is_none_or(|d| d.date != day) {
            out.push(DayDistance {
                date: day,
                distance_m: 0.0,
            });
        }
        if let (Some(a), Some(last)) = (prev, out.last_mut()) {
            // A leg across midnight counts for the day it ends on.
            last.distance_m += step(a, p);
        }
        prev = Some(p);
    }
    for d in &mut out {
        d.distance_m = d.distance_m.round();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn p(secs: i64, lat: f64, speed: f64, ignition: Option<bool>) -> Position {
        Position {
            at: Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap() + Duration::seconds(secs),
            lat,
            lon: 36.8,
            speed_kmh: speed,
            ignition,
            ..Default::default()
        }
    }

    #[test]
    fn ignition_bounds_trips() {
        // 0.01° of latitude is about 1.11 km.
        let ps = vec![
            p(0, -1.30, 0.0, Some(false)),
            p(60, -1.30, 10.0, Some(true)),
            p(120, -1.29, 40.0, Some(true)),
            p(180, -1.28, 50.0, Some(true)),
            p(240, -1.28, 0.0, Some(false)),
            p(300, -1.28, 0.0, Some(false)),
        ];
        let t = trips(&ps, Duration::minutes(5));
        assert_eq!(t.len(), 1);
        assert!(
            (2200.0..2250.0).contains(&t[0].distance_m),
            "{}",
            t[0].distance_m
        );
        assert_eq!((t[0].duration_secs, t[0].max_speed_kmh), (180, 50.0));
    }

    #[test]
    fn without_ignition_a_long_stop_ends_a_trip() {
        let ps = vec![
            p(0, -1.30, 30.0, None),
            p(60, -1.29, 30.0, None),
            p(120, -1.29, 0.0, None),
            p(500, -1.29, 0.0, None),
            p(560, -1.28, 30.0, None),
        ];
        assert_eq!(trips(&ps, Duration::minutes(5)).len(), 2);
    }
}

//! The OsmAnd protocol as Traccar Client and OsmAnd speak it over HTTP: the
//! query-string form (`?id=..&lat=..&lon=..&timestamp=..&speed=<knots>`), and
//! the JSON form of Traccar Client 8+ (`{device_id, location: {timestamp,
//! coords: {latitude, longitude, speed (m/s), heading, altitude}, odometer,
//! battery: {level 0..1}}}`).

use chrono::{DateTime, TimeZone, Utc};

use crate::domain::position::{knots_to_kmh, Position};

/// A report: who sent it, and the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The `id` parameter: the device token, or the IMEI when `token` is given.
    pub id: String,
    pub token: Option<String>,
    pub position: Position,
}

/// Why a report was refused, naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ReportError {
    pub field: &'static str,
    pub message: &'static str,
}

fn bad(field: &'static str, message: &'static str) -> ReportError {
    ReportError { field, message }
}

fn parse_time(raw: &str, field: &'static str) -> Result<DateTime<Utc>, ReportError> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return Err(bad(field, "must be a time"));
        }
        // Seconds, or milliseconds from clients that send them.
        let ms = if n > 1e11 { n } else { n * 1000.0 };
        return Utc
            .timestamp_millis_opt(ms as i64)
            .single()
            .ok_or(bad(field, "is out of range"));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
                .map(|t| Utc.from_utc_datetime(&t))
        })
        .map_err(|_| bad(field, "must be Unix seconds or an RFC 3339 time"))
}

fn num(raw: &str, field: &'static str) -> Result<f64, ReportError> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or(bad(field, "must be a number"))
}

/// The query-string form. `now` stands in for a missing timestamp.
pub fn from_query(params: &[(String, String)], now: DateTime<Utc>) -> Result<Report, ReportError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let id = get("id")
        .or_else(|| get("deviceid"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(bad("id", "is required"))?;
    let (lat, lon) = match (get("lat"), get("lon"), get("location")) {
        (Some(lat), Some(lon), _) => (num(lat, "lat")?, num(lon, "lon")?),
        (_, _, Some(loc)) => {
            let (a, b) = loc
                .split_once(',')
                .ok_or(bad("location", "must be lat,lon"))?;
            (num(a, "location")?, num(b, "location")?)
        }
        (None, _, _) => return Err(bad("lat", "is required")),
        _ => return Err(bad("lon", "is required")),
    };
    if !(-90.0..=90.0).contains(&lat) {
        return Err(bad("lat", "must be between -90 and 90"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(bad("lon", "must be between -180 and 180"));
    }
    let at = match get("timestamp") {
        Some(t) => parse_time(t, "timestamp")?,
        None => now,
    };
    let speed = match get("speed") {
        Some(s) => knots_to_kmh(num(s, "speed")?.max(0.0)),
        None => 0.0,
    };
    let mut p = Position {
        at,
        lat,
        lon,
        speed_kmh: speed,
        ..Default::default()
    };
    if let Some(h) = get("bearing").or_else(|| get("heading")) {
        p.heading = Some(num(h, "bearing")?);
    }
    if let Some(a) = get("altitude") {
        p.altitude = Some(num(a, "altitude")?);
    }
    if let Some(b) = get("batt") {
        p.battery_pct = Some(num(b, "batt")?);
    }
    if let Some(s) = get("sat").or_else(|| get("satellites")) {
        p.satellites = Some(num(s, "sat")? as i64);
    }
    if let Some(i) = get("ignition") {
        p.ignition = Some(matches!(i, "true" | "1"));
    }
    if let Some(d) = get("odometer") {
        p.odometer_m = Some(num(d, "odometer")? as i64);
    }
    if get("alarm").is_some_and(|a| a.eq_ignore_ascii_case("sos")) {
        p.alarms.sos = true;
    }
    for (k, v) in params {
        if k.len() <= 32 && v.len() <= 256 && p.io.len() < 64 {
            p.io.insert(k.clone(), serde_json::Value::from(v.clone()));
        }
    }
    p.io.remove("id");
    p.io.remove("token");
    Ok(Report {
        id: id.to_owned(),
        token: get("token").map(str::to_owned),
        position: p,
    })
}

/// The JSON form.
pub fn from_json(v: &serde_json::Value, now: DateTime<Utc>) -> Result<Report, ReportError> {
    let id = v
        .get("device_id")
        .and_then(|d| d.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(bad("device_id", "is required"))?;
    let loc = v.get("location").ok_or(bad("location", "is required"))?;
    let coords = loc
        .get("coords")
        .ok_or(bad("location.coords", "is required"))?;
    let f = |obj: &serde_json::Value, k: &str| obj.get(k).and_then(|x| x.as_f64());
    let lat = f(coords, "latitude").ok_or(bad("location.coords.latitude", "is required"))?;
    let lon = f(coords, "longitude").ok_or(bad("location.coords.longitude", "is required"))?;
    if !(-90.0..=90.0).contains(&lat) {
        return Err(bad(
            "location.coords.latitude",
            "must be between -90 and 90",
        ));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(bad(
            "location.coords.longitude",
            "must be between -180 and 180",
        ));
    }
    let at = match loc.get("timestamp").and_then(|t| t.as_str()) {
        Some(t) => parse_time(t, "location.timestamp")?,
        None => now,
    };
    // Metres per second; negative means unknown.
    let speed = f(coords, "speed").filter(|s| *s >= 0.0).unwrap_or(0.0) * 3.6;
    let mut p = Position {
        at,
        lat,
        lon,
        speed_kmh: speed,
        heading: f(coords, "heading").filter(|h| *h >= 0.0),
        altitude: f(coords, "altitude"),
        odometer_m: f(loc, "odometer").map(|o| o as i64),
        movement: loc.get("is_moving").and_then(|m| m.as_bool()),
        ..Default::default()
    };
    if let Some(level) = loc.get("battery").and_then(|b| f(b, "level")) {
        if level >= 0.0 {
            p.battery_pct = Some(level * 100.0);
        }
    }
    Ok(Report {
        id: id.to_owned(),
        token: None,
        position: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Vec<(String, String)> {
        s.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn query_form_speed_is_knots() {
        let r = from_query(
            &q("id=abc&lat=-1.2864&lon=36.8172&timestamp=1772438400&speed=10&bearing=90&batt=80"),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(r.id, "abc");
        assert!((r.position.speed_kmh - 18.52).abs() < 1e-9);
        assert_eq!(r.position.at.timestamp(), 1_772_438_400);
        assert_eq!(r.position.battery_pct, Some(80.0));
    }

    #[test]
    fn query_form_names_the_bad_parameter() {
        let e = from_query(&q("id=abc&lat=-95&lon=36"), Utc::now()).unwrap_err();
        assert_eq!(e.field, "lat");
        let e = from_query(&q("lat=1&lon=2"), Utc::now()).unwrap_err();
        assert_eq!(e.field, "id");
    }

    #[test]
    fn json_form_speed_is_metres_per_second() {
        let v = serde_json::json!({"device_id": "abc", "location": {"timestamp": "2026-03-02T08:00:00Z",
            "coords": {"latitude": -1.2864, "longitude": 36.8172, "speed": 10.0, "heading": 45.0},
            "battery": {"level": 0.5}}});
        let r = from_json(&v, Utc::now()).unwrap();
        assert!((r.position.speed_kmh - 36.0).abs() < 1e-9);
        assert_eq!(r.position.battery_pct, Some(50.0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_parameters_never_panic(pairs in proptest::collection::vec((".{0,12}", ".{0,24}"), 0..12)) {
            let _ = from_query(&pairs, Utc::now());
        }
    }
}

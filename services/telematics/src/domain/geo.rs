//! Distances and geofence shapes on the WGS84 sphere approximation, which is
//! accurate to well under a percent at the scale of a city.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres.
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// A geofence's shape: a circle or a simple polygon of `[lat, lon]` points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Shape {
    Circle { lat: f64, lon: f64, radius_m: f64 },
    Polygon { points: Vec<[f64; 2]> },
}

impl Shape {
    /// Checks the shape is usable; names the problem otherwise.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |lat: f64, lon: f64| {
            lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0
        };
        match self {
            Shape::Circle { lat, lon, radius_m } => {
                if !ok(*lat, *lon) {
                    return Err("centre must be a valid latitude and longitude".into());
                }
                if !(radius_m.is_finite() && *radius_m >= 10.0 && *radius_m <= 500_000.0) {
                    return Err("radius_m must be between 10 and 500000".into());
                }
                Ok(())
            }
            Shape::Polygon { points } => {
                if points.len() < 3 || points.len() > 1000 {
                    return Err("a polygon needs between 3 and 1000 points".into());
                }
                if points.iter().any(|p| !ok(p[0], p[1])) {
                    return Err("every point must be a valid [lat, lon]".into());
                }
                Ok(())
            }
        }
    }

    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        match self {
            Shape::Circle {
                lat: clat,
                lon: clon,
                radius_m,
            } => haversine_m(*clat, *clon, lat, lon) <= *radius_m,
            Shape::Polygon { points } => {
                // Ray casting in the lat/lon plane: fine for areas that do not
                // straddle the antimeridian, which Kenyan operating areas do not.
                let mut inside = false;
                let n = points.len();
                let mut j = n.wrapping_sub(1);
                for i in 0..n {
                    let (yi, xi) = (points[i][0], points[i][1]);
                    let (yj, xj) = (points[j][0], points[j][1]);
                    if (yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nairobi_to_thika_is_about_40_km() {
        let d = haversine_m(-1.2864, 36.8172, -1.0388, 37.0834);
        assert!((38_000.0..42_000.0).contains(&d), "{d}");
    }

    #[test]
    fn shapes_contain() {
        let c = Shape::Circle {
            lat: -1.2864,
            lon: 36.8172,
            radius_m: 1000.0,
        };
        assert!(c.contains(-1.2870, 36.8180));
        assert!(!c.contains(-1.3, 36.9));
        let square = Shape::Polygon {
            points: vec![[-1.0, 36.0], [-1.0, 37.0], [-2.0, 37.0], [-2.0, 36.0]],
        };
        assert!(square.contains(-1.5, 36.5));
        assert!(!square.contains(-0.5, 36.5));
    }
}

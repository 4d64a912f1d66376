//! The rules of the inventory and its lifecycle, with no I/O: what a valid
//! vehicle is, which facts each type needs, and which status moves are legal.

use chrono::Datelike;
use miliki_platform::money::Currency;
use miliki_platform::problem::Validator;
use miliki_platform::string_enum;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

string_enum!(
    /// The four kinds of vehicle Miliki finances.
    VehicleType { Motorcycle => "motorcycle", Car => "car", Van => "van", Truck => "truck" }
);

string_enum!(
    /// Where a vehicle is in its life.
    Status {
        Available => "available",
        Reserved => "reserved",
        UnderContract => "under_contract",
        Owned => "owned",
        InMaintenance => "in_maintenance",
        Repossessed => "repossessed",
        Retired => "retired",
    }
);

string_enum!(
    Condition { New => "new", Used => "used", Refurbished => "refurbished" }
);

string_enum!(
    Fuel {
        Petrol => "petrol",
        Diesel => "diesel",
        Electric => "electric",
        Hybrid => "hybrid",
        Lpg => "lpg",
    }
);

string_enum!(
    Transmission { Manual => "manual", Automatic => "automatic" }
);

/// Who or what asks for a status move; some moves belong to one of them only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    /// An admin, by hand.
    Admin,
    /// An agent, by hand (field staff report breakdowns and repairs).
    Agent,
    /// Reservations and contracts: the system itself.
    System,
}

impl Status {
    /// Statuses in which the vehicle's contract-relevant facts are frozen.
    pub fn is_contracted(self) -> bool {
        matches!(self, Status::UnderContract | Status::Owned)
    }

    /// The single transition function: `Ok(to)` when `mover` may take a vehicle
    /// from `self` to `to`, else why not.
    pub fn transition(self, to: Status, mover: Mover) -> Result<Status, String> {
        use Status::*;
        let legal = matches!(
            (self, to),
            (Available, Reserved)
                | (Reserved, Available)
                | (Reserved, UnderContract)
                | (UnderContract, Owned)
                | (UnderContract, Repossessed)
                | (UnderContract, InMaintenance)
                | (Available, InMaintenance)
                | (InMaintenance, Available)
                | (Repossessed, InMaintenance)
                | (Repossessed, Available)
                | (Available, Retired)
                | (InMaintenance, Retired)
                | (Repossessed, Retired)
        );
        if !legal {
            return Err(format!("a vehicle cannot go from {self} to {to}"));
        }
        // Reservations and contracts move vehicles into and out of a customer's
        // hands; by hand, staff only service, repossess and retire them.
        let allowed = match mover {
            Mover::System => true,
            Mover::Admin => !matches!(
                (self, to),
                (Available, Reserved)
                    | (Reserved, _)
                    | (UnderContract, Owned)
                    | (UnderContract, InMaintenance)
            ),
            Mover::Agent => matches!(
                (self, to),
                (Available, InMaintenance) | (InMaintenance, Available)
            ),
        };
        if allowed {
            Ok(to)
        } else {
            Err(match mover {
                Mover::Agent => format!("agents cannot move a vehicle from {self} to {to}"),
                _ => format!(
                    "{self} to {to} happens through reservations and contracts, not by hand"
                ),
            })
        }
    }
}

/// A vehicle identification number (ISO 3779, 17 characters without I, O or
/// Q) or, for vehicles that have none (many motorcycles), a chassis/frame
/// number of 6 to 20 letters and digits. Stored upper-case without spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vin(String);

impl Vin {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        if !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err("must contain only letters and digits".into());
        }
        if !(6..=20).contains(&s.len()) {
            return Err("must be a 17-character VIN or a 6–20 character chassis number".into());
        }
        if s.len() == 17 && s.contains(['I', 'O', 'Q']) {
            return Err("a 17-character VIN cannot contain I, O or Q".into());
        }
        if !s.chars().any(|c| c.is_ascii_digit()) {
            return Err("must contain digits".into());
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registration plate as East African registries issue them (`KDA 123A`,
/// `KMFA 456B`, `UBA 123X`, `T 123 ABC`, `RAD 123 A`): letters and digits in
/// groups. Shown with single spaces; compared without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration(String);

impl Registration {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let shown = raw
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        let key = Self::key_of(&shown);
        if !shown.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
            return Err("must contain only letters, digits and spaces".into());
        }
        if !(4..=10).contains(&key.len()) {
            return Err("must have 4 to 10 letters and digits".into());
        }
        if !key.chars().any(|c| c.is_ascii_digit()) || !key.chars().any(|c| c.is_ascii_alphabetic())
        {
            return Err("must contain both letters and digits".into());
        }
        Ok(Self(shown))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The comparison key: upper-case, no spaces.
    pub fn key(&self) -> String {
        Self::key_of(&self.0)
    }

    fn key_of(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }
}

/// A point on Earth in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GeoPoint {
    pub latitude: f64,
    pub longitude: f64,
}

impl GeoPoint {
    pub fn parse(latitude: f64, longitude: f64) -> Result<Self, (&'static str, String)> {
        if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
            return Err(("latitude", "must be between -90 and 90".into()));
        }
        if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
            return Err(("longitude", "must be between -180 and 180".into()));
        }
        Ok(Self {
            latitude,
            longitude,
        })
    }

    /// Great-circle distance in kilometres (haversine).
    pub fn distance_km(self, other: GeoPoint) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0088;
        let (la1, la2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dla = la2 - la1;
        let dlo = (other.longitude - self.longitude).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
    }

    /// A latitude/longitude box that contains every point within `radius_km`:
    /// the cheap, indexed prefilter before the exact distance.
    pub fn bounding_box(self, radius_km: f64) -> (f64, f64, f64, f64) {
        let dlat = radius_km / 111.0;
        let cos = self.latitude.to_radians().cos().abs().max(0.01);
        let dlon = (radius_km / (111.320 * cos)).min(180.0);
        (
            self.latitude - dlat,
            self.latitude + dlat,
            self.longitude - dlon,
            self.longitude + dlon,
        )
    }
}

/// The facts only some types have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Specs {
    pub engine_cc: Option<i64>,
    pub seats: Option<i64>,
    pub transmission: Option<Transmission>,
    pub cargo_volume_litres: Option<i64>,
    pub payload_kg: Option<i64>,
    pub axles: Option<i64>,
}

/// A vehicle's facts, raw, as a request body or a CSV row carries them. Every
/// field is optional here so that one pass can name every problem.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VehicleFields {
    /// `motorcycle`, `car`, `van` or `truck`.
    #[serde(rename = "type", alias = "vehicle_type")]
    pub vehicle_type: Option<String>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub year: Option<i64>,
    pub colour: Option<String>,
    /// A 17-character VIN, or a chassis number for vehicles without one.
    pub vin: Option<String>,
    pub registration: Option<String>,
    pub mileage_km: Option<i64>,
    /// `new`, `used` or `refurbished`.
    pub condition: Option<String>,
    /// `petrol`, `diesel`, `electric`, `hybrid` or `lpg`.
    pub fuel: Option<String>,
    pub branch: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// The cash price in minor units of `currency`.
    pub price_minor: Option<i64>,
    /// ISO 4217, e.g. `KES`.
    pub currency: Option<String>,
    /// What the operator paid; never shown to customers.
    pub cost_price_minor: Option<i64>,
    /// Internal notes; never shown to customers.
    pub notes: Option<String>,
    pub description: Option<String>,
    /// Motorcycles: engine displacement (not needed for electric ones).
    pub engine_cc: Option<i64>,
    /// Cars (and optionally vans): seats including the driver's.
    pub seats: Option<i64>,
    /// Cars: `manual` or `automatic`.
    pub transmission: Option<String>,
    /// Vans: load space in litres.
    pub cargo_volume_litres: Option<i64>,
    /// Trucks: payload in kilograms.
    pub payload_kg: Option<i64>,
    /// Trucks: number of axles.
    pub axles: Option<i64>,
}

/// A vehicle that passed every rule: the only way into the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVehicle {
    pub vehicle_type: VehicleType,
    pub make: String,
    pub model: String,
    pub year: i32,
    pub colour: String,
    pub vin: Vin,
    pub registration: Registration,
    pub mileage_km: i64,
    pub condition: Condition,
    pub fuel: Fuel,
    pub branch: String,
    pub location: GeoPoint,
    pub price_minor: i64,
    pub currency: Currency,
    pub cost_price_minor: Option<i64>,
    pub notes: Option<String>,
    pub description: String,
    pub specs: Specs,
}

pub const MIN_YEAR: i64 = 1980;
/// A trillion in major units: above any vehicle's price, below overflow.
pub const MAX_PRICE_MINOR: i64 = 100_000_000_000_000;

fn text(v: &mut Validator, field: &str, value: &Option<String>, max: usize) -> Option<String> {
    let s = v.required(field, value)?;
    if s.chars().count() > max {
        v.error(field, format!("must be at most {max} characters"));
        return None;
    }
    if s.chars().any(char::is_control) {
        v.error(field, "must not contain control characters");
        return None;
    }
    Some(s.to_owned())
}

fn optional_text(
    v: &mut Validator,
    field: &str,
    value: &Option<String>,
    max: usize,
) -> Option<String> {
    let s = value.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
    if s.chars().count() > max {
        v.error(field, format!("must be at most {max} characters"));
        return None;
    }
    // Free text may run over lines; nothing else invisible.
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        v.error(field, "must not contain control characters");
        return None;
    }
    Some(s.to_owned())
}

fn in_range(
    v: &mut Validator,
    field: &str,
    value: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
) -> Option<i64> {
    let n = value?;
    if range.contains(&n) {
        Some(n)
    } else {
        v.error(
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        );
        None
    }
}

/// Checks a model year: not before 1980, not after next year's models.
pub fn check_year(year: i64, current_year: i32) -> Result<i32, String> {
    let latest = i64::from(current_year) + 1;
    if year > latest {
        return Err(format!("cannot be in the future (latest is {latest})"));
    }
    if year < MIN_YEAR {
        return Err(format!("must be {MIN_YEAR} or later"));
    }
    Ok(year as i32)
}

pub fn check_price(field: &str, price: i64) -> Result<i64, (String, String)> {
    if price <= 0 {
        return Err((field.to_owned(), "must be a positive amount".into()));
    }
    if price > MAX_PRICE_MINOR {
        return Err((field.to_owned(), "is implausibly large".into()));
    }
    Ok(price)
}

impl VehicleFields {
    /// Turns raw fields into a vehicle, recording every problem in `v`.
    /// `today` bounds the model year.
    pub fn parse(&self, v: &mut Validator, today: chrono::NaiveDate) -> Option<NewVehicle> {
        let vehicle_type = v
            .required("type", &self.vehicle_type)
            .and_then(|t| v.check("type", t.to_ascii_lowercase().parse::<VehicleType>()));
        let make = text(v, "make", &self.make, 40);
        let model = text(v, "model", &self.model, 60);
        let year = match self.year {
            Some(y) => v.check("year", check_year(y, today.year())),
            None => {
                v.error("year", "is required");
                None
            }
        };
        let colour = text(v, "colour", &self.colour, 30);
        let vin = v
            .required("vin", &self.vin)
            .and_then(|s| v.check("vin", Vin::parse(s)));
        let registration = v
            .required("registration", &self.registration)
            .and_then(|s| v.check("registration", Registration::parse(s)));
        let mileage_km = match self.mileage_km {
            Some(m) => in_range(v, "mileage_km", Some(m), 0..=5_000_000),
            None => {
                v.error("mileage_km", "is required");
                None
            }
        };
        let condition = v
            .required("condition", &self.condition)
            .and_then(|s| v.check("condition", s.to_ascii_lowercase().parse::<Condition>()));
        let fuel = v
            .required("fuel", &self.fuel)
            .and_then(|s| v.check("fuel", s.to_ascii_lowercase().parse::<Fuel>()));
        let branch = text(v, "branch", &self.branch, 60);
        let location = match (self.latitude, self.longitude) {
            (Some(lat), Some(lon)) => match GeoPoint::parse(lat, lon) {
                Ok(p) => Some(p),
                Err((field, msg)) => {
                    v.error(field, msg);
                    None
                }
            },
            (lat, lon) => {
                if lat.is_none() {
                    v.error("latitude", "is required");
                }
                if lon.is_none() {
                    v.error("longitude", "is required");
                }
                None
            }
        };
        let currency = v
            .required("currency", &self.currency)
            .and_then(|c| v.check("currency", c.parse::<Currency>()));
        let price_minor = match self.price_minor {
            Some(p) => match check_price("price_minor", p) {
                Ok(p) => Some(p),
                Err((f, m)) => {
                    v.error(&f, m);
                    None
                }
            },
            None => {
                v.error("price_minor", "is required");
                None
            }
        };
        let cost_price_minor = match self.cost_price_minor {
            Some(c) if c < 0 => {
                v.error("cost_price_minor", "cannot be negative");
                None
            }
            other => other,
        };
        let notes = optional_text(v, "notes", &self.notes, 2000);
        let description = optional_text(v, "description", &self.description, 4000);
        let specs = vehicle_type.and_then(|t| self.parse_specs(v, t, fuel));

        Some(NewVehicle {
            vehicle_type: vehicle_type?,
            make: make?,
            model: model?,
            year: year?,
            colour: colour?,
            vin: vin?,
            registration: registration?,
            mileage_km: mileage_km?,
            condition: condition?,
            fuel: fuel?,
            branch: branch?,
            location: location?,
            price_minor: price_minor?,
            currency: currency?,
            cost_price_minor,
            notes,
            description: description.unwrap_or_default(),
            specs: specs?,
        })
        .filter(|_| v.is_empty())
    }

    /// The type-specific facts: required where the type needs them, refused where it has none.
    fn parse_specs(&self, v: &mut Validator, t: VehicleType, fuel: Option<Fuel>) -> Option<Specs> {
        let mut specs = Specs::default();
        let refuse = |v: &mut Validator, field: &str, present: bool| {
            if present {
                v.error(field, format!("does not apply to a {t}"));
            }
        };
        match t {
            VehicleType::Motorcycle => {
                refuse(v, "seats", self.seats.is_some());
                refuse(v, "transmission", self.transmission.is_some());
                refuse(v, "cargo_volume_litres", self.cargo_volume_litres.is_some());
                refuse(v, "payload_kg", self.payload_kg.is_some());
                refuse(v, "axles", self.axles.is_some());
                if self.engine_cc.is_none() && fuel != Some(Fuel::Electric) {
                    v.error("engine_cc", "is required for a motorcycle");
                }
                specs.engine_cc = in_range(v, "engine_cc", self.engine_cc, 49..=2500);
            }
            VehicleType::Car => {
                refuse(v, "engine_cc", self.engine_cc.is_some());
                refuse(v, "cargo_volume_litres", self.cargo_volume_litres.is_some());
                refuse(v, "payload_kg", self.payload_kg.is_some());
                refuse(v, "axles", self.axles.is_some());
                if self.seats.is_none() {
                    v.error("seats", "is required for a car");
                }
                specs.seats = in_range(v, "seats", self.seats, 2..=9);
                specs.transmission = match v.required("transmission", &self.transmission) {
                    Some(s) => v.check(
                        "transmission",
                        s.to_ascii_lowercase().parse::<Transmission>(),
                    ),
                    None => None,
                };
            }
            VehicleType::Van => {
                refuse(v, "engine_cc", self.engine_cc.is_some());
                refuse(v, "payload_kg", self.payload_kg.is_some());
                refuse(v, "axles", self.axles.is_some());
                refuse(v, "transmission", self.transmission.is_some());
                if self.cargo_volume_litres.is_none() {
                    v.error("cargo_volume_litres", "is required for a van");
                }
                specs.cargo_volume_litres = in_range(
                    v,
                    "cargo_volume_litres",
                    self.cargo_volume_litres,
                    300..=40_000,
                );
                specs.seats = in_range(v, "seats", self.seats, 2..=18);
            }
            VehicleType::Truck => {
                refuse(v, "engine_cc", self.engine_cc.is_some());
                refuse(v, "seats", self.seats.is_some());
                refuse(v, "transmission", self.transmission.is_some());
                refuse(v, "cargo_volume_litres", self.cargo_volume_litres.is_some());
                if self.payload_kg.is_none() {
                    v.error("payload_kg", "is required for a truck");
                }
                if self.axles.is_none() {
                    v.error("axles", "is required for a truck");
                }
                specs.payload_kg = in_range(v, "payload_kg", self.payload_kg, 500..=60_000);
                specs.axles = in_range(v, "axles", self.axles, 2..=8);
            }
        }
        Some(specs)
    }
}

/// Lower-cased words of the searchable text, for the term index: letters and
/// digits only, at most 32 characters each, no duplicates.
pub fn terms(make: &str, model: &str, description: &str) -> Vec<String> {
    let mut out: Vec<String> = format!("{make} {model} {description}")
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().take(32).collect::<String>())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The query words of a free-text search, as [`terms`] would index them.
pub fn query_terms(q: &str) -> Vec<String> {
    let mut out: Vec<String> = q
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().take(32).collect::<String>())
        .collect();
    out.dedup();
    out.truncate(6);
    out
}

#[cfg(test)]
// Prices read as shillings_cents.
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn valid() -> VehicleFields {
        VehicleFields {
            vehicle_type: Some("motorcycle".into()),
            make: Some("Bajaj".into()),
            model: Some("Boxer BM150".into()),
            year: Some(2024),
            colour: Some("red".into()),
            vin: Some("MD2A11CZ5RCA12345".into()),
            registration: Some("kmfa 123a".into()),
            mileage_km: Some(0),
            condition: Some("new".into()),
            fuel: Some("petrol".into()),
            branch: Some("Nairobi CBD".into()),
            latitude: Some(-1.2864),
            longitude: Some(36.8172),
            price_minor: Some(165_000_00),
            currency: Some("KES".into()),
            engine_cc: Some(150),
            ..VehicleFields::default()
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
    }

    #[test]
    fn a_valid_motorcycle_parses_and_normalises() {
        let mut v = Validator::new();
        let parsed = valid().parse(&mut v, today()).unwrap();
        assert_eq!(parsed.registration.as_str(), "KMFA 123A");
        assert_eq!(parsed.registration.key(), "KMFA123A");
        assert_eq!(parsed.specs.engine_cc, Some(150));
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut f = valid();
        f.vin = Some("MD2A11CZ5RCA1234O".into());
        f.year = Some(2028);
        f.latitude = Some(91.0);
        f.price_minor = Some(-1);
        f.seats = Some(2);
        let mut v = Validator::new();
        assert!(f.parse(&mut v, today()).is_none());
        let err = v.finish().unwrap_err().to_problem();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        for want in ["vin", "year", "latitude", "price_minor", "seats"] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn types_need_their_own_facts() {
        let mut f = valid();
        f.vehicle_type = Some("truck".into());
        f.engine_cc = None;
        let mut v = Validator::new();
        assert!(f.parse(&mut v, today()).is_none());
        let p = v.finish().unwrap_err().to_problem();
        assert!(p.errors.iter().any(|e| e.field == "payload_kg"));
        assert!(p.errors.iter().any(|e| e.field == "axles"));
    }

    #[test]
    fn lifecycle_moves() {
        use Status::*;
        assert!(Available.transition(Reserved, Mover::System).is_ok());
        assert!(Available.transition(Reserved, Mover::Admin).is_err());
        assert!(Available.transition(Owned, Mover::System).is_err());
        assert!(Available.transition(Retired, Mover::Admin).is_ok());
        assert!(Available.transition(Retired, Mover::Agent).is_err());
        assert!(Available.transition(InMaintenance, Mover::Agent).is_ok());
        assert!(UnderContract.transition(Repossessed, Mover::Admin).is_ok());
        assert!(Retired.transition(Available, Mover::Admin).is_err());
    }

    #[test]
    fn distances_and_boxes() {
        let nairobi = GeoPoint::parse(-1.2864, 36.8172).unwrap();
        let mombasa = GeoPoint::parse(-4.0435, 39.6682).unwrap();
        let d = nairobi.distance_km(mombasa);
        assert!((430.0..445.0).contains(&d), "{d}");
        let (a, b, c, e) = nairobi.bounding_box(10.0);
        assert!(a < -1.2864 && b > -1.2864 && c < 36.8172 && e > 36.8172);
        assert!(GeoPoint::parse(-91.0, 0.0).is_err());
        assert!(GeoPoint::parse(0.0, f64::NAN).is_err());
    }

    #[test]
    fn vins_and_plates() {
        assert!(Vin::parse("JTDBR32E720123456").is_ok());
        assert!(Vin::parse("ME4JC7").is_ok());
        assert!(Vin::parse("AB12").is_err());
        assert!(Vin::parse("bad vin!").is_err());
        assert!(Registration::parse("KDA 123A").is_ok());
        assert!(Registration::parse("T 123 ABC").is_ok());
        assert!(Registration::parse("ABCDEF").is_err());
    }
}

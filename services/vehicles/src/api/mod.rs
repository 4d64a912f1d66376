//! HTTP handlers, one module per area, and the views they share.

pub mod import;
pub mod photos;
pub mod reservations;
pub mod stream;
pub mod vehicles;

use chrono::{DateTime, Utc};
use miliki_platform::money::Currency;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Condition, Fuel, GeoPoint, Status, Transmission, VehicleType};
use crate::state::Caller;
use crate::store::{PhotoMeta, ReservationRecord, VehicleRecord};

/// A photo as listed on its vehicle.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PhotoView {
    pub id: Uuid,
    pub content_type: String,
    pub size_bytes: i64,
    pub width: i64,
    pub height: i64,
    pub url: String,
    /// A JPEG at most 320 pixels on its longer side.
    pub thumbnail_url: String,
}

impl PhotoView {
    pub fn new(vehicle: Uuid, p: &PhotoMeta) -> Self {
        Self {
            id: p.id,
            content_type: p.content_type.clone(),
            size_bytes: p.size_bytes,
            width: p.width,
            height: p.height,
            url: format!("/api/v1/vehicles/{vehicle}/photos/{}", p.id),
            thumbnail_url: format!("/api/v1/vehicles/{vehicle}/photos/{}/thumbnail", p.id),
        }
    }
}

/// A vehicle as the API shows it. Internal fields (cost price, notes, who
/// holds it) appear only for staff; the holder sees that it is theirs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VehicleView {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub vehicle_type: VehicleType,
    pub make: String,
    pub model: String,
    pub year: i32,
    pub colour: String,
    pub vin: String,
    pub registration: String,
    pub mileage_km: i64,
    pub condition: Condition,
    pub fuel: Fuel,
    pub branch: String,
    pub location: GeoPoint,
    /// The cash price in minor units of `currency` (the names a vehicle is created with).
    pub price_minor: i64,
    /// ISO 4217, e.g. `KES`; every amount of the vehicle is in it.
    pub currency: Currency,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_cc: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seats: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transmission: Option<Transmission>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cargo_volume_litres: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_kg: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub axles: Option<i64>,
    pub status: Status,
    /// True when the caller is the customer the vehicle is held for.
    pub held_by_you: bool,
    /// Staff only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<Uuid>,
    /// What the operator paid, in minor units of `currency`. Staff only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_price_minor: Option<i64>,
    /// Staff only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Present on near-me searches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photos: Option<Vec<PhotoView>>,
    /// The version the `ETag` names.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl VehicleView {
    pub fn new(v: &VehicleRecord, caller: &Caller) -> Self {
        // Cost price, notes and who holds a vehicle are the operator's business.
        let staff = caller.is_staff();
        Self {
            id: v.id,
            vehicle_type: v.vehicle_type,
            make: v.make.clone(),
            model: v.model.clone(),
            year: v.year,
            colour: v.colour.clone(),
            vin: v.vin.clone(),
            registration: v.registration.clone(),
            mileage_km: v.mileage_km,
            condition: v.condition,
            fuel: v.fuel,
            branch: v.branch.clone(),
            location: v.location,
            price_minor: v.price_minor,
            currency: v.currency,
            description: v.description.clone(),
            engine_cc: v.specs.engine_cc,
            seats: v.specs.seats,
            transmission: v.specs.transmission,
            cargo_volume_litres: v.specs.cargo_volume_litres,
            payload_kg: v.specs.payload_kg,
            axles: v.specs.axles,
            status: v.status,
            held_by_you: v.held_by == Some(caller.id),
            held_by: if staff { v.held_by } else { None },
            cost_price_minor: if staff { v.cost_price_minor } else { None },
            notes: if staff { v.notes.clone() } else { None },
            distance_km: None,
            photos: None,
            version: v.version,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A reservation as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReservationView {
    pub id: Uuid,
    pub vehicle_id: Uuid,
    pub customer_id: Uuid,
    /// `active`, `expired`, `cancelled`, `released` or `converted`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<Uuid>,
    pub end_reason: Option<String>,
    pub contract_id: Option<Uuid>,
}

impl From<&ReservationRecord> for ReservationView {
    fn from(r: &ReservationRecord) -> Self {
        Self {
            id: r.id,
            vehicle_id: r.vehicle_id,
            customer_id: r.customer_id,
            status: r.status.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            ended_at: r.ended_at,
            ended_by: r.ended_by,
            end_reason: r.end_reason.clone(),
            contract_id: r.contract_id,
        }
    }
}

//! HTTP handlers, one module per area, and what they share: who may see a
//! vehicle, and time-range parameters.

pub mod commands;
pub mod devices;
pub mod geofences;
pub mod positions;
pub mod risk;
pub mod ws;

use chrono::{DateTime, Utc};
use miliki_platform::auth::Role;
use miliki_platform::problem::Validator;
use miliki_platform::ApiError;
use uuid::Uuid;

use crate::state::{AppState, Caller};
use crate::store::{self, Scope};

/// What a caller may see: admins everything, agents their customers'
/// vehicles, customers their own.
pub fn scope(caller: &Caller) -> Scope {
    match caller.role {
        Role::Admin => Scope::All,
        Role::Agent => Scope::Agent(caller.id),
        Role::Customer => Scope::Customer(caller.id),
    }
}

/// Refuses, as "not found", a vehicle the caller may not see.
pub async fn visible_vehicle(
    state: &AppState,
    caller: &Caller,
    vehicle: Uuid,
) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    let (customer, agent) = store::holder(&state.deps.db, vehicle).await?;
    let ok = match caller.role {
        Role::Customer => customer == Some(caller.id),
        Role::Agent => agent == Some(caller.id),
        Role::Admin => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::NotFound("vehicle"))
    }
}

/// Parses an optional RFC 3339 time parameter.
pub fn time_param(v: &mut Validator, field: &str, raw: &Option<String>) -> Option<DateTime<Utc>> {
    let raw = raw.as_deref()?;
    v.check(
        field,
        DateTime::parse_from_rfc3339(raw.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| "must be an RFC 3339 time such as 2026-03-02T08:00:00Z"),
    )
}

/// Parses an optional id parameter.
pub fn id_param(v: &mut Validator, field: &str, raw: &Option<String>) -> Option<Uuid> {
    let raw = raw.as_deref()?;
    v.check(
        field,
        Uuid::parse_str(raw.trim()).map_err(|_| "must be a UUID"),
    )
}

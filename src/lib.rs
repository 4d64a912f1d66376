//! The `miliki` binary's library half: composing services into a running
//! platform, embedded or distributed. Kept as a library so integration tests
//! start exactly what `miliki serve` starts.

pub mod runtime;

use miliki_events::service::ServiceDef;

/// Every service this build contains, in start order.
pub const SERVICES: &[ServiceDef] = &[
    miliki_users::SERVICE,
    miliki_vehicles::SERVICE,
    miliki_payments::SERVICE,
    miliki_telematics::SERVICE,
    miliki_credit::SERVICE,
    miliki_support::SERVICE,
];

/// Finds a service by name.
pub fn service(name: &str) -> Option<&'static ServiceDef> {
    SERVICES.iter().find(|s| s.name == name)
}

//! HTTP handlers, one module per area.

pub mod auth;
pub mod kyc;
pub mod users;

use miliki_platform::problem::Validator;

/// A required string field: absent or blank is recorded as an error.
pub(crate) fn required<'a>(
    v: &mut Validator,
    field: &str,
    value: &'a Option<String>,
) -> Option<&'a str> {
    match value.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Some(s),
        _ => {
            v.error(field, "is required");
            None
        }
    }
}

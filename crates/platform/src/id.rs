//! Ids are UUIDv7: unique without coordination and ordered by creation time,
//! so an id column doubles as a stable sort key for cursors.

use uuid::Uuid;

/// A fresh, time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Parses an id read back from the database, where ids are stored as text.
pub fn parse_stored(s: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

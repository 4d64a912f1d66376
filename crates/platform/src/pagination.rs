//! Cursor pagination: a page carries an opaque cursor naming where the next
//! page starts, so pages stay stable while rows are added.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Clamps a requested page size; zero or absent means the default.
pub fn limit(requested: Option<u32>) -> Result<u32, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// Encodes a position as an opaque cursor.
pub fn encode_cursor<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// Decodes a cursor made by [`encode_cursor`]; anything else is a 422 on `cursor`.
pub fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::field("cursor", "is not a cursor this API issued"))
}

/// Reads a list request's `limit` and `cursor`, recording what is wrong with
/// them in `v` so they are reported with the request's other fields.
pub fn parse_page_params<P: DeserializeOwned>(
    v: &mut crate::problem::Validator,
    limit_param: Option<u32>,
    cursor_param: Option<&str>,
) -> (u32, Option<P>) {
    let limit = v
        .check(
            "limit",
            limit(limit_param).map_err(|_| format!("must be between 1 and {MAX_LIMIT}")),
        )
        .unwrap_or(DEFAULT_LIMIT);
    let position = cursor_param.and_then(|c| {
        v.check(
            "cursor",
            decode_cursor::<P>(c).map_err(|_| "is not a cursor this API issued"),
        )
    });
    (limit, position)
}

/// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
pub fn page_from<T, P: Serialize>(
    mut rows: Vec<T>,
    limit: u32,
    position_of: impl Fn(&T) -> P,
) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|last| encode_cursor(&position_of(last)))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&("2026-01-01", 42));
        assert_eq!(
            decode_cursor::<(String, i32)>(&c).unwrap(),
            ("2026-01-01".to_owned(), 42)
        );
        assert!(decode_cursor::<(String, i32)>("!!!").is_err());
        assert!(decode_cursor::<(String, i32)>(&encode_cursor(&"x")).is_err());
    }

    #[test]
    fn a_page_knows_whether_more_follow() {
        let page = page_from(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            decode_cursor::<i32>(page.next_cursor.as_deref().unwrap()).unwrap(),
            2
        );
        assert!(page_from(vec![1, 2], 2, |n| *n).next_cursor.is_none());
    }
}

//! Optimistic concurrency over HTTP: a resource's version travels as a strong
//! `ETag`, and a write must name the version it read in `If-Match` (RFC 9110
//! §13.1.1). A stale tag is a 412; a write with no `If-Match` at all is a 428,
//! so a client cannot silently overwrite a change it never saw.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::problem::{problem_response, problem_type, ApiError, Problem};

/// The `ETag` of version `version` of a resource.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"v{version}\"")).unwrap_or(HeaderValue::from_static("\"v0\""))
}

/// The `If-Match` header of a request, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `If-Match: *`: any current version will do.
    Any,
    /// The entity tags the client accepts, quotes included.
    Tags(Vec<String>),
}

impl IfMatch {
    /// Whether version `current` satisfies the header. Weak tags never match
    /// (If-Match uses the strong comparison).
    pub fn matches(&self, current: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => {
                let want = format!("\"v{current}\"");
                tags.contains(&want)
            }
        }
    }

    /// `Ok` when the header names `current`, else a 412 problem.
    pub fn check(&self, current: i64) -> Result<(), ApiError> {
        if self.matches(current) {
            Ok(())
        } else {
            Err(ApiError::PreconditionFailed(
                "the resource changed since you read it; fetch it again and retry".into(),
            ))
        }
    }
}

/// Extracts `Option<IfMatch>`; a header that is not text is a 400.
#[derive(Debug, Clone)]
pub struct OptionalIfMatch(pub Option<IfMatch>);

impl<S: Send + Sync> FromRequestParts<S> for OptionalIfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(Self(None));
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::BadRequest("If-Match is not readable text".into()))?
            .trim();
        if text == "*" {
            return Ok(Self(Some(IfMatch::Any)));
        }
        let tags = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self(Some(IfMatch::Tags(tags))))
    }
}

/// The 428 answer for a conditional write that came without `If-Match`.
pub fn precondition_required() -> Response {
    problem_response(&Problem {
        kind: problem_type("precondition-required"),
        title: "Precondition required".into(),
        status: 428,
        detail: Some("send If-Match with the ETag you read".into()),
        errors: Vec::new(),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_comparison_only() {
        assert!(IfMatch::Tags(vec!["\"v3\"".into()]).matches(3));
        assert!(!IfMatch::Tags(vec!["W/\"v3\"".into()]).matches(3));
        assert!(!IfMatch::Tags(vec!["\"v2\"".into()]).matches(3));
        assert!(IfMatch::Any.matches(9));
        assert_eq!(etag(4), HeaderValue::from_static("\"v4\""));
    }
}

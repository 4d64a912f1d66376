//! What every handler can reach, and the caller as this service sees them.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use miliki_events::service::ServiceDeps;
use miliki_platform::auth::{AuthUser, Role, Tokens};
use miliki_platform::ApiError;
use sqlx::Row;
use uuid::Uuid;

#[derive(Clone)]
pub struct AppState {
    pub deps: ServiceDeps,
}

impl AppState {
    pub fn new(deps: ServiceDeps) -> Self {
        Self { deps }
    }
}

impl FromRef<AppState> for Arc<Tokens> {
    fn from_ref(state: &AppState) -> Self {
        state.deps.tokens.clone()
    }
}

/// An authenticated caller whose account is still active and whose token was
/// issued after the last suspension (the token's `ver` matches the account's).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub id: Uuid,
    pub role: Role,
}

impl Caller {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        miliki_platform::auth::require_role(self.role, roles)
    }
}

/// A route open to anyone that acts for the caller when a token is sent:
/// no `Authorization` header is `None`; a bad token is still refused.
impl OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Ok(None);
        }
        <Caller as FromRequestParts<AppState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = AuthUser::from_request_parts(parts, state).await?;
        let row = sqlx::query("SELECT status, auth_version FROM users WHERE id = $1")
            .bind(auth.id.to_string())
            .fetch_optional(state.deps.db.reader())
            .await?;
        let Some(row) = row else {
            return Err(ApiError::Unauthenticated(
                "the account no longer exists".into(),
            ));
        };
        let status: String = row.try_get("status")?;
        let version: i64 = row.try_get("auth_version")?;
        if status != "active" {
            return Err(ApiError::Unauthenticated("the account is suspended".into()));
        }
        if version != auth.ver {
            return Err(ApiError::Unauthenticated(
                "the token has been revoked".into(),
            ));
        }
        Ok(Caller {
            id: auth.id,
            role: auth.role,
        })
    }
}

//! `/api/v1/users`: who I am, creating staff and customers, finding people,
//! suspending accounts.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use miliki_events::catalogue::users::{UserReinstated, UserSuspended};
use miliki_platform::auth::Role;
use miliki_platform::contact::PhoneNumber;
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{create_account, parse_new_user, AccountFields};
use crate::domain::UserStatus;
use crate::state::{AppState, Caller};
use crate::store::{self, UserFilter, UserRecord};

/// An account as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub status: UserStatus,
    /// E.164.
    pub phone: String,
    /// Whether the phone was proven to be the owner's (by the SMS code, or by
    /// the operator who created the account).
    pub phone_verified: bool,
    pub email: Option<String>,
    /// `not_submitted`, `pending`, `approved`, `rejected` or `resubmission_requested`.
    pub kyc_status: String,
    /// The agent who onboarded this customer.
    pub onboarded_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id,
            name: u.name.clone(),
            role: u.role,
            status: u.status,
            phone: u.phone.clone(),
            phone_verified: u.phone_verified,
            email: u.email.clone(),
            kyc_status: u.kyc_status.clone(),
            onboarded_by: u.onboarded_by,
            created_at: u.created_at,
        }
    }
}

/// Whether `caller` may see `user`: admins see everyone, agents themselves and
/// the customers they onboarded, customers themselves.
pub(crate) fn may_see(caller: &Caller, user: &UserRecord) -> bool {
    match caller.role {
        Role::Admin => true,
        Role::Agent => user.id == caller.id || user.onboarded_by == Some(caller.id),
        Role::Customer => user.id == caller.id,
    }
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = UserView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<UserView>, ApiError> {
    let user = store::find_user(&state.deps.db, &state.deps.keyring, caller.id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(Json(UserView::from(&user)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    /// `customer` (the default), or for admins also `agent` and `admin`.
    pub role: Option<String>,
}

/// Create an account: admins create agents and admins (and customers); agents
/// register customers, who are then linked to them.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, body = UserView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require(&[Role::Admin, Role::Agent])?;
    let mut v = Validator::new();
    let role = match body
        .role
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        None => Some(Role::Customer),
        Some(r) => v.check("role", r.parse::<Role>()),
    };
    if caller.role == Role::Agent && role.is_some_and(|r| r != Role::Customer) {
        return Err(ApiError::Forbidden("agents register customers only".into()));
    }
    let role = role.unwrap_or(Role::Customer);
    // Customers created by an agent belong to that agent's book.
    let onboarded_by = (caller.role == Role::Agent).then_some(caller.id);
    let user = parse_new_user(
        &state,
        AccountFields {
            name: &body.name,
            phone: &body.phone,
            email: &body.email,
            password: &body.password,
        },
        role,
        onboarded_by,
        v,
    )
    .await?;
    let id = create_account(&state, &user).await?;
    let record = store::find_user(&state.deps.db, &state.deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok((StatusCode::CREATED, Json(UserView::from(&record))))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// A name fragment, or a phone number (matched exactly).
    pub q: Option<String>,
    pub role: Option<String>,
    pub cursor: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<u32>,
}

/// Find accounts, newest first. Agents see only the customers they onboarded.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = Page<UserView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<UserView>>, ApiError> {
    caller.require(&[Role::Admin, Role::Agent])?;
    let mut v = Validator::new();
    let (limit, before) =
        pagination::parse_page_params::<Uuid>(&mut v, params.limit, params.cursor.as_deref());
    let role = params
        .role
        .as_deref()
        .and_then(|r| v.check("role", r.parse::<Role>()));
    v.finish()?;
    let mut filter = UserFilter {
        onboarded_by: (caller.role == Role::Agent).then_some(caller.id),
        role,
        before,
        limit,
        ..UserFilter::default()
    };
    if let Some(q) = params.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let looks_like_phone = q.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c));
        match PhoneNumber::parse(q, &state.deps.settings.default_region) {
            Ok(phone) if looks_like_phone => {
                filter.phone_indexes = Some(store::phone_indexes(&state.deps.keyring, &phone))
            }
            _ => filter.name_contains = Some(q.to_lowercase()),
        }
    }
    let rows = store::list_users(&state.deps.db, &state.deps.keyring, &filter).await?;
    let page = pagination::page_from(rows, filter.limit, |u| u.id);
    Ok(Json(Page {
        items: page.items.iter().map(UserView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One account.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = UserView),
        (status = 404, description = "No such account, or not one the caller may see", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<UserView>, ApiError> {
    let user = store::find_user(&state.deps.db, &state.deps.keyring, id)
        .await?
        .filter(|u| may_see(&caller, u))
        .ok_or(ApiError::NotFound("user"))?;
    Ok(Json(UserView::from(&user)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusChangeRequest {
    pub reason: Option<String>,
}

/// Suspend an account (admins): its tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/users/{id}/suspend", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already suspended, or the caller's own account", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<StatusChangeRequest>,
) -> Result<Json<UserView>, ApiError> {
    change_status(state, caller, id, body, UserStatus::Suspended).await
}

/// Reinstate a suspended account (admins).
#[utoipa::path(post, path = "/api/v1/users/{id}/reinstate", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = StatusChangeRequest,
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reinstate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<StatusChangeRequest>,
) -> Result<Json<UserView>, ApiError> {
    change_status(state, caller, id, body, UserStatus::Active).await
}

async fn change_status(
    state: AppState,
    caller: Caller,
    id: Uuid,
    body: StatusChangeRequest,
    to: UserStatus,
) -> Result<Json<UserView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let reason = v.required("reason", &body.reason);
    if reason.is_some_and(|r| r.chars().count() > 500) {
        v.error("reason", "must be at most 500 characters");
    }
    v.finish()?;
    let reason = reason.unwrap_or_default();
    let deps = &state.deps;
    let user = store::find_user(&deps.db, &deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    if user.id == caller.id {
        return Err(ApiError::Conflict(
            "you cannot change your own account's status".into(),
        ));
    }
    if user.status == to {
        return Err(ApiError::Conflict(format!("the account is already {to}")));
    }
    let mut tx = deps.db.begin().await?;
    store::set_status(&mut tx, id, to, caller.id, reason, deps.clock.now()).await?;
    crate::credentials::announce(&mut tx, &deps.events, id).await?;
    if to == UserStatus::Suspended {
        deps.events
            .write(
                &mut tx,
                &UserSuspended {
                    user_id: id,
                    suspended_by: caller.id,
                    reason: reason.to_owned(),
                },
            )
            .await?;
    } else {
        deps.events
            .write(
                &mut tx,
                &UserReinstated {
                    user_id: id,
                    reinstated_by: caller.id,
                    reason: reason.to_owned(),
                },
            )
            .await?;
    }
    deps.events.commit(tx).await?;
    let user = store::find_user(&deps.db, &deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(Json(UserView::from(&user)))
}

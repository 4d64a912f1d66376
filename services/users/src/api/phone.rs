//! Phone verification: the code sent by SMS at registration (or after a
//! change of phone) is entered by the customer, or by the agent beside them,
//! and a new one can be asked for after a cooldown.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use miliki_platform::auth::{verify_password, Role};
use miliki_platform::contact::PhoneNumber;
use miliki_platform::http::{Json, Path};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::users::{may_see, UserView};
use crate::state::{AppState, Caller};
use crate::store::{self, UserRecord};
use crate::verification;

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyPhoneRequest {
    /// The six digits sent by SMS.
    pub code: Option<String>,
    /// The phone the code was sent to; needed only without a bearer token
    /// (an account whose grace period ran out cannot log in to send it).
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResendRequest {
    /// Needed only without a bearer token.
    pub phone: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CodeSent {
    /// When the new code stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Seconds before another code may be asked for.
    pub resend_after_secs: i64,
}

/// The account a public call names by phone. An unknown phone is reported
/// like a wrong code, so the route does not tell which numbers have accounts.
async fn by_phone(state: &AppState, phone: Option<&str>) -> Result<Option<UserRecord>, ApiError> {
    let Some(phone) = phone else {
        return Err(ApiError::field(
            "phone",
            "is required without a bearer token",
        ));
    };
    let deps = &state.deps;
    let phone = PhoneNumber::parse(phone, &deps.settings.default_region)
        .map_err(|e| ApiError::field("phone", e.to_string()))?;
    let indexes = store::phone_indexes(&deps.keyring, &phone);
    store::find_by_index(&deps.db, &deps.keyring, "phone_index", &indexes).await
}

async fn own(state: &AppState, caller: &Caller) -> Result<UserRecord, ApiError> {
    store::find_user(&state.deps.db, &state.deps.keyring, caller.id)
        .await?
        .ok_or(ApiError::NotFound("user"))
}

/// The account an agent or admin acts for: agents only their own customers.
async fn for_staff(state: &AppState, caller: &Caller, id: Uuid) -> Result<UserRecord, ApiError> {
    caller.require(&[Role::Agent, Role::Admin])?;
    store::find_user(&state.deps.db, &state.deps.keyring, id)
        .await?
        .filter(|u| may_see(caller, u))
        .ok_or(ApiError::NotFound("user"))
}

fn required_code(body: &VerifyPhoneRequest) -> Result<&str, ApiError> {
    let mut v = Validator::new();
    let code = v.required("code", &body.code);
    v.finish()?;
    code.ok_or_else(|| ApiError::field("code", "is required"))
}

/// Verify the phone with the code sent to it: with a bearer token the
/// caller's own account, without one the account of `phone`.
#[utoipa::path(post, path = "/api/v1/auth/verify-phone", tag = "auth",
    request_body = VerifyPhoneRequest,
    responses(
        (status = 200, description = "Verified", body = UserView),
        (status = 409, description = "Already verified", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong, expired or spent code", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Json(body): Json<VerifyPhoneRequest>,
) -> Result<Json<UserView>, ApiError> {
    let code = required_code(&body)?;
    let user = match &caller {
        Some(c) => own(&state, c).await?,
        None => by_phone(&state, body.phone.as_deref())
            .await?
            .ok_or_else(|| ApiError::field("code", "wrong code"))?,
    };
    verification::verify(&state.deps, &user, code, caller.map_or(user.id, |c| c.id)).await?;
    reread(&state, user.id).await
}

/// Ask for a new code: with a bearer token for the caller's account, without
/// one for the account of `phone` (answered the same whether or not it exists).
#[utoipa::path(post, path = "/api/v1/auth/verify-phone/resend", tag = "auth",
    request_body = ResendRequest,
    responses(
        (status = 202, description = "A new code is on its way", body = CodeSent),
        (status = 409, description = "Already verified", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too soon; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resend(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Json(body): Json<ResendRequest>,
) -> Result<(StatusCode, Json<CodeSent>), ApiError> {
    let user = match &caller {
        Some(c) => Some(own(&state, c).await?),
        None => by_phone(&state, body.phone.as_deref()).await?,
    };
    let expires_at = match user {
        // Without a token, a verified account is answered like an unknown one.
        Some(u) if caller.is_none() && u.phone_verified => None,
        Some(u) => Some(verification::resend(&state.deps, &u).await?),
        None => None,
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(sent(expires_at, caller.is_some())),
    ))
}

fn sent(expires_at: Option<DateTime<Utc>>, show_expiry: bool) -> CodeSent {
    CodeSent {
        expires_at: expires_at.filter(|_| show_expiry),
        resend_after_secs: verification::RESEND_COOLDOWN_SECS,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StaffVerifyRequest {
    /// The six digits the customer received.
    pub code: Option<String>,
}

/// Verify a customer's phone on the spot (their agent, or an admin), with
/// the code the customer reads off their phone.
#[utoipa::path(post, path = "/api/v1/users/{id}/verify-phone", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = StaffVerifyRequest,
    responses(
        (status = 200, body = UserView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account, or not one the caller may act for", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn staff_verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<StaffVerifyRequest>,
) -> Result<Json<UserView>, ApiError> {
    let user = for_staff(&state, &caller, id).await?;
    let body = VerifyPhoneRequest {
        code: body.code,
        phone: None,
    };
    let code = required_code(&body)?;
    verification::verify(&state.deps, &user, code, caller.id).await?;
    reread(&state, user.id).await
}

/// Send a customer a new code (their agent, or an admin).
#[utoipa::path(post, path = "/api/v1/users/{id}/verify-phone/resend", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 202, body = CodeSent),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn staff_resend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<CodeSent>), ApiError> {
    let user = for_staff(&state, &caller, id).await?;
    let expires_at = verification::resend(&state.deps, &user).await?;
    Ok((StatusCode::ACCEPTED, Json(sent(Some(expires_at), true))))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePhoneRequest {
    pub phone: Option<String>,
    /// The account's password, as proof it is the owner asking.
    pub password: Option<String>,
}

/// Change the caller's phone. The new one is unverified until its code is
/// entered; logins by the old one stop at once.
#[utoipa::path(put, path = "/api/v1/users/me/phone", tag = "users", security(("bearer" = [])),
    request_body = ChangePhoneRequest,
    responses(
        (status = 200, body = UserView),
        (status = 403, description = "Wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The phone belongs to another account", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ChangePhoneRequest>,
) -> Result<Json<UserView>, ApiError> {
    let deps = &state.deps;
    let mut v = Validator::new();
    let phone = v.required("phone", &body.phone).and_then(|p| {
        v.check(
            "phone",
            PhoneNumber::parse(p, &deps.settings.default_region),
        )
    });
    let password = v.required("password", &body.password);
    v.finish()?;
    let (Some(phone), Some(password)) = (phone, password) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let user = own(&state, &caller).await?;
    if !verify_password(password.to_owned(), Some(user.password_hash.clone())).await? {
        return Err(ApiError::Forbidden("wrong password".into()));
    }
    if phone.as_str() == user.phone {
        return Err(ApiError::field("phone", "is the account's phone already"));
    }
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    store::change_phone(&mut tx, &deps.keyring, user.id, &phone, now).await?;
    verification::issue(&mut tx, deps, user.id, phone.as_str(), now).await?;
    deps.events.commit(tx).await?;
    reread(&state, user.id).await
}

async fn reread(state: &AppState, id: Uuid) -> Result<Json<UserView>, ApiError> {
    let user = store::find_user(&state.deps.db, &state.deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(Json(UserView::from(&user)))
}

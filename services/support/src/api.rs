//! Notifications over HTTP: the in-app list, marking read, the unread count,
//! a live stream, the delivery log, preferences, and the local email sink.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use miliki_platform::auth::{AuthUser, Role};
use miliki_platform::http::{ClientIp, Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::streams::guarded;
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::notify::{self, Channel, DeliveryStep, NotificationView, Preferences, SunkEmail};
use crate::state::{AppState, Caller};
use crate::templates;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    pub unread: bool,
    pub cursor: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<u32>,
}

/// The caller's in-app notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = Page<NotificationView>),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> Result<Json<Page<NotificationView>>, ApiError> {
    let mut v = Validator::new();
    let (limit, before) =
        pagination::parse_page_params::<Uuid>(&mut v, p.limit, p.cursor.as_deref());
    v.finish()?;
    let now = state.deps.clock.now();
    let rows = notify::list_for(&state.deps.db, caller.id, now, p.unread, before, limit).await?;
    Ok(Json(pagination::page_from(rows, limit, |n| n.id)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub unread: i64,
}

#[utoipa::path(get, path = "/api/v1/notifications/unread-count", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = UnreadCount)))]
pub async fn unread(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UnreadCount>, ApiError> {
    let now = state.deps.clock.now();
    Ok(Json(UnreadCount {
        unread: notify::unread_count(&state.deps.db, caller.id, now).await?,
    }))
}

/// Mark one of the caller's notifications read (idempotent).
#[utoipa::path(post, path = "/api/v1/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = NotificationView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<NotificationView>, ApiError> {
    let n = notify::find(&state.deps.db, id)
        .await?
        .filter(|n| n.customer_id == caller.id && n.channel == "in_app")
        .ok_or(ApiError::NotFound("notification"))?;
    sqlx::query("UPDATE notifications SET read_at = COALESCE(read_at, $1) WHERE id = $2")
        .bind(miliki_platform::clock::to_micros(state.deps.clock.now()))
        .bind(n.id.to_string())
        .execute(state.deps.db.writer())
        .await?;
    let n = notify::find(&state.deps.db, id)
        .await?
        .ok_or(ApiError::NotFound("notification"))?;
    Ok(Json(n))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDetail {
    #[serde(flatten)]
    pub notification: NotificationView,
    pub deliveries: Vec<DeliveryStep>,
}

/// One notification on any channel with its delivery log: the customer's own, or anyone's for admins.
#[utoipa::path(get, path = "/api/v1/notifications/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = NotificationDetail),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<NotificationDetail>, ApiError> {
    let n = notify::find(&state.deps.db, id)
        .await?
        .filter(|n| caller.role == Role::Admin || n.customer_id == caller.id)
        .ok_or(ApiError::NotFound("notification"))?;
    let deliveries = notify::deliveries(&state.deps.db, id).await?;
    Ok(Json(NotificationDetail {
        notification: n,
        deliveries,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutboxParams {
    /// Admins: whose; customers: their own only.
    pub customer_id: Option<Uuid>,
}

/// Every channel's notifications of a customer (newest 200), with their status.
#[utoipa::path(get, path = "/api/v1/notifications/outbox", tag = "notifications", security(("bearer" = [])),
    params(OutboxParams),
    responses(
        (status = 200, body = Vec<NotificationView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn outbox(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<OutboxParams>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    let customer = match (caller.role, p.customer_id) {
        (Role::Admin, Some(c)) => c,
        (_, None) => caller.id,
        (_, Some(c)) if c == caller.id => c,
        _ => {
            return Err(ApiError::Forbidden(
                "only admins see others' notifications".into(),
            ))
        }
    };
    Ok(Json(
        notify::of_customer_all_channels(&state.deps.db, customer, 200).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesInput {
    pub language: Option<String>,
    pub channels: Option<BTreeMap<String, Vec<String>>>,
    /// `HH:MM`, with `quiet_end`; both null to clear.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    pub timezone: Option<String>,
    pub sms_number: Option<String>,
    pub email: Option<String>,
    pub push_token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Preferences)))]
pub async fn get_preferences(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(
        notify::preferences(state.deps.db.reader(), caller.id).await?,
    ))
}

/// Replace the caller's preferences; fields left out keep their value.
#[utoipa::path(put, path = "/api/v1/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    request_body = PreferencesInput,
    responses(
        (status = 200, body = Preferences),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_preferences(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<PreferencesInput>,
) -> Result<Json<Preferences>, ApiError> {
    caller.require(&[Role::Customer])?;
    let mut p = notify::preferences(state.deps.db.reader(), caller.id).await?;
    let mut v = Validator::new();
    if let Some(lang) = input.language {
        if templates::LANGUAGES.contains(&lang.as_str()) {
            p.language = lang;
        } else {
            v.error(
                "language",
                format!("must be one of {}", templates::LANGUAGES.join(", ")),
            );
        }
    }
    if let Some(channels) = input.channels {
        let mut parsed = BTreeMap::new();
        for (category, list) in channels {
            if !templates::CATEGORIES.contains(&category.as_str()) {
                v.error(
                    &format!("channels.{category}"),
                    format!(
                        "is not a category; use {}",
                        templates::CATEGORIES.join(", ")
                    ),
                );
                continue;
            }
            let mut chosen = Vec::new();
            for c in list {
                match c.parse::<Channel>() {
                    Ok(ch) if !chosen.contains(&ch) => chosen.push(ch),
                    Ok(_) => {}
                    Err(e) => v.error(&format!("channels.{category}"), e),
                }
            }
            parsed.insert(category, chosen);
        }
        p.channels = parsed;
    }
    match (input.quiet_start, input.quiet_end) {
        (None, None) => {}
        (Some(s), Some(e)) => {
            if notify::parse_hhmm(&s).is_none() {
                v.error("quiet_start", "must be HH:MM");
            }
            if notify::parse_hhmm(&e).is_none() {
                v.error("quiet_end", "must be HH:MM");
            }
            p.quiet_start = Some(s);
            p.quiet_end = Some(e);
        }
        _ => v.error("quiet_end", "quiet_start and quiet_end go together"),
    }
    if let Some(tz) = input.timezone {
        if tz.parse::<chrono_tz::Tz>().is_err() {
            v.error("timezone", "is not an IANA time zone");
        } else {
            p.timezone = tz;
        }
    }
    if let Some(n) = input.sms_number {
        match miliki_platform::contact::PhoneNumber::parse(&n, "KE") {
            Ok(e164) => p.sms_number = Some(e164.as_str().to_owned()),
            Err(e) => v.error("sms_number", e),
        }
    }
    if let Some(e) = input.email {
        match miliki_platform::contact::EmailAddress::parse(&e) {
            Ok(a) => p.email = Some(a.as_str().to_owned()),
            Err(e) => v.error("email", e),
        }
    }
    if let Some(t) = input.push_token {
        if t.is_empty() || t.len() > 4096 {
            v.error("push_token", "must be 1–4096 characters");
        } else {
            p.push_token = Some(t);
        }
    }
    v.finish()?;
    notify::save_preferences(&state.deps.db, caller.id, &p, state.deps.clock.now()).await?;
    Ok(Json(p))
}

/// Email delivered to the local sink (when no SMTP server is configured). Admins only.
#[utoipa::path(get, path = "/api/v1/notifications/email-sink", tag = "notifications", security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<SunkEmail>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn email_sink(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SunkEmail>>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(notify::email_sink(&state.deps.db, 500).await?))
}

/// Live in-app notifications as `text/event-stream` (events named `notification`);
/// `Last-Event-ID` resumes after a notification id.
#[utoipa::path(get, path = "/api/v1/notifications/stream", tag = "notifications", security(("bearer" = [])),
    responses(
        (status = 200, description = "An endless stream of `notification` events", body = NotificationView, content_type = "text/event-stream"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream_notifications(
    State(state): State<AppState>,
    auth: AuthUser,
    caller: Caller,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let slot = state.deps.streams.acquire(caller.id, ip)?;
    let now = state.deps.clock.now();
    let start = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
    {
        Some(id) => Some(id),
        // Live from now: the newest existing one is the cursor.
        None => notify::list_for(&state.deps.db, caller.id, now, false, None, 1)
            .await?
            .first()
            .map(|n| n.id),
    };
    let live = state.hub.subscribe();
    let customer = caller.id;
    let events = stream::unfold(
        (
            state.clone(),
            start,
            live,
            std::collections::VecDeque::<NotificationView>::new(),
        ),
        move |(state, mut cursor, mut live, mut pending)| async move {
            loop {
                if let Some(n) = pending.pop_front() {
                    let event = SseEvent::default()
                        .id(n.id.to_string())
                        .event("notification")
                        .json_data(&n)
                        .unwrap_or_else(|_| SseEvent::default().comment("unserialisable"));
                    return Some((Ok::<_, Infallible>(event), (state, cursor, live, pending)));
                }
                let now = state.deps.clock.now();
                if let Ok(rows) = notify::after(&state.deps.db, customer, now, cursor).await {
                    if let Some(last) = rows.last() {
                        cursor = Some(last.id);
                    }
                    pending.extend(rows);
                    if !pending.is_empty() {
                        continue;
                    }
                }
                // Wait for a nudge for this customer, or re-check now and then
                // (held messages become visible as the clock passes).
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    loop {
                        match live.recv().await {
                            Ok(c) if c == customer => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                futures::future::pending::<()>().await
                            }
                        }
                    }
                })
                .await;
            }
        },
    )
    .boxed();
    let (tokens, clock) = (state.deps.tokens.clone(), state.deps.clock.clone());
    let events = guarded(events, slot, auth, tokens, clock);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

//! `GET /vehicles/availability/stream`: Server-Sent Events of status changes.
//! Each event's id is the change's position in the commit-ordered change log
//! (see [`crate::feed`]); a client that reconnects with
//! `Last-Event-ID` (browsers' EventSource does so by itself) is first replayed
//! what it missed, from the database, then follows live changes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use miliki_platform::auth::AuthUser;
use miliki_platform::http::ClientIp;
use miliki_platform::problem::Problem;
use miliki_platform::streams::guarded;
use miliki_platform::ApiError;
use tokio::sync::broadcast::error::RecvError;

use crate::feed::{AvailabilityChange, FeedItem};
use crate::state::{AppState, Caller};
use crate::store;

const REPLAY_BATCH: i64 = 500;

/// Live status changes as `text/event-stream`; events are named `status_changed`.
#[utoipa::path(get, path = "/api/v1/vehicles/availability/stream", tag = "vehicles", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses(
        (status = 200, description = "An endless stream of `status_changed` events", body = AvailabilityChange, content_type = "text/event-stream"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many open streams for this user or address", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    auth: AuthUser,
    caller: Caller,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let slot = state.deps.streams.acquire(caller.id, ip)?;
    // An id we did not issue cannot be resumed from; start live instead of failing the reconnect.
    let last: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|p| *p >= 0);
    let live = state.feed.subscribe();
    let cursor = match last {
        Some(p) => p,
        None => store::last_change_position(&state.deps.db).await?,
    };
    let (tokens, clock) = (state.deps.tokens.clone(), state.deps.clock.clone());
    let events = follow(state, cursor, live, caller.is_staff());
    let events = guarded(events, slot, auth, tokens, clock);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct Follow {
    state: AppState,
    cursor: i64,
    live: tokio::sync::broadcast::Receiver<FeedItem>,
    closed: tokio_util::sync::CancellationToken,
    /// Rows read from the database, not yet sent.
    pending: std::collections::VecDeque<FeedItem>,
    /// Whether the database may still hold rows after `cursor` that the live channel did not carry.
    catching_up: bool,
}

fn to_event(item: &FeedItem) -> Event {
    Event::default()
        .id(item.id.to_string())
        .event("status_changed")
        .json_data(&item.change)
        .unwrap_or_else(|_| Event::default().comment("unserialisable change"))
}

/// What a customer may see of a change: only changes into or out of
/// `available` (the vehicles they can see), with any status they cannot see
/// named `unavailable`. Staff see every change as it is.
fn visible_to_customer(item: &FeedItem) -> Option<FeedItem> {
    const SHOWN: [&str; 3] = ["available", "reserved", "under_contract"];
    let change = &item.change;
    if change.from != "available" && change.to != "available" {
        return None;
    }
    let shown = |s: &str| {
        if SHOWN.contains(&s) {
            s.to_owned()
        } else {
            "unavailable".to_owned()
        }
    };
    let mut item = item.clone();
    item.change.from = shown(&item.change.from);
    item.change.to = shown(&item.change.to);
    Some(item)
}

fn follow(
    state: AppState,
    cursor: i64,
    live: tokio::sync::broadcast::Receiver<FeedItem>,
    staff: bool,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let start = Follow {
        closed: state.feed.closed(),
        state,
        cursor,
        live,
        pending: Default::default(),
        catching_up: true,
    };
    stream::unfold(start, move |mut f| async move {
        loop {
            if f.closed.is_cancelled() {
                return None;
            }
            if let Some(item) = f.pending.pop_front() {
                f.cursor = item.id;
                let shown = if staff {
                    Some(item)
                } else {
                    visible_to_customer(&item)
                };
                match shown {
                    Some(item) => return Some((Ok(to_event(&item)), f)),
                    None => continue,
                }
            }
            if f.catching_up {
                match store::changes_since(&f.state.deps.db, f.cursor, REPLAY_BATCH, true).await {
                    Ok(rows) => {
                        f.catching_up = rows.len() as i64 == REPLAY_BATCH;
                        f.pending.extend(rows.iter().filter_map(|c| {
                            c.history.as_ref().map(|h| FeedItem::new(c.position, h))
                        }));
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "availability replay failed; the client will reconnect");
                        return None;
                    }
                }
            }
            let next = tokio::select! {
                _ = f.closed.cancelled() => return None,
                next = f.live.recv() => next,
            };
            match next {
                // Already replayed from the database.
                Ok(item) if item.id <= f.cursor => continue,
                Ok(item) => f.pending.push_back(item),
                // Fell behind the live channel: read the gap from the database.
                Err(RecvError::Lagged(_)) => f.catching_up = true,
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

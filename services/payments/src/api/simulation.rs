//! `serve --simulated-clock`: admins move the platform's clock forward to
//! show "eight weeks later". The route exists only with the flag, which
//! production refuses at start-up.

use axum::extract::State;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use miliki_platform::auth::Role;
use miliki_platform::clock::Clock;
use miliki_platform::http::Json;
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ops;
use crate::state::{AppState, Caller};

/// The settings key `serve --simulated-clock` sets.
pub const SETTING: &str = "simulated_clock";

/// The furthest one call may move the clock.
pub const MAX_ADVANCE_DAYS: i64 = 3650;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceRequest {
    pub advance_days: Option<i64>,
    pub advance_secs: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClockView {
    pub now: DateTime<Utc>,
    /// Today in the operator's time zone.
    pub today: NaiveDate,
    /// Contracts the daily job aged to catch up.
    pub contracts_aged: usize,
}

/// Move the simulated clock forward (admins; only with `serve --simulated-clock`).
#[utoipa::path(post, path = "/api/v1/simulation/clock", tag = "simulation", security(("bearer" = [])),
    request_body = AdvanceRequest,
    responses((status = 200, body = ClockView), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn advance(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<AdvanceRequest>,
) -> Result<Json<ClockView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let days = req.advance_days.unwrap_or(0);
    let secs = req.advance_secs.unwrap_or(0);
    if !(0..=MAX_ADVANCE_DAYS).contains(&days) {
        v.error(
            "advance_days",
            format!("must be between 0 and {MAX_ADVANCE_DAYS}"),
        );
    }
    if !(0..=MAX_ADVANCE_DAYS * 86_400).contains(&secs) {
        v.error("advance_secs", "must be zero or more, at most ten years");
    }
    if req.advance_days.is_none() && req.advance_secs.is_none() {
        v.error("advance_days", "give advance_days or advance_secs");
    }
    v.finish()?;
    let clock = state
        .deps
        .clock
        .manual()
        .ok_or_else(|| ApiError::Unavailable("the platform runs on the wall clock".into()))?;
    let target = clock.now() + Duration::days(days) + Duration::seconds(secs);
    // An hour at a time, so every job polling the clock sees the hours pass;
    // the daily job itself ages contracts a day at a time from where it was.
    let mut aged = 0;
    while clock.now() < target {
        let step = (target - clock.now()).min(Duration::hours(1));
        clock.advance(step);
        let today = state.today();
        aged += ops::age_all(&state, today).await?;
        tokio::task::yield_now().await;
    }
    Ok(Json(ClockView {
        now: clock.now(),
        today: state.today(),
        contracts_aged: aged,
    }))
}

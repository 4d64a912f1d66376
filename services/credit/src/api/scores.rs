//! Living scores: a customer's current score and its history.

use axum::extract::State;
use chrono::{DateTime, Utc};
use miliki_platform::http::{Json, Path};
use miliki_platform::problem::Problem;
use miliki_platform::ApiError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::living;
use crate::model::{FeaturePoints, Reason};
use crate::state::{may_see_customer, AppState, Caller};
use crate::store;

/// One change of the score.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScoreChange {
    pub score: i64,
    pub band: String,
    pub model_version: String,
    /// What moved it: `application`, `on_time_payment`, `late_payment`,
    /// `payment_reversed`, `arrears_changed`, `risk_event`,
    /// `contract_activated`, `contract_completed`, `contract_defaulted`, …
    pub cause: String,
    pub event_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerScore {
    pub customer_id: Uuid,
    pub score: i64,
    pub band: String,
    pub model_version: String,
    pub odds: f64,
    pub points: Vec<FeaturePoints>,
    pub reasons: Vec<Reason>,
    /// What would raise it.
    pub improvements: Vec<String>,
    /// Oldest first (the latest 200 changes).
    pub history: Vec<ScoreChange>,
}

/// A customer's living score (the customer, their agent, admins).
#[utoipa::path(get, path = "/api/v1/credit/customers/{id}/score", tag = "credit", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CustomerScore), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<CustomerScore>, ApiError> {
    if !may_see_customer(&state, &caller, id).await? {
        return Err(ApiError::NotFound("customer"));
    }
    let mut tx = state.deps.db.begin().await?;
    let now = living::current(&state, &mut tx, id)
        .await
        .map_err(ApiError::internal)?;
    let history = store::score_history(&mut tx, id).await?;
    tx.rollback().await?;
    Ok(Json(CustomerScore {
        customer_id: id,
        score: now.score,
        band: now.band,
        model_version: now.model_version,
        odds: now.odds,
        points: now.points,
        reasons: now.reasons,
        improvements: now.improvements,
        history: history
            .into_iter()
            .map(|e| ScoreChange {
                score: e.score.score,
                band: e.score.band,
                model_version: e.score.model_version,
                cause: e.cause,
                event_id: e.event_id,
                at: e.at,
            })
            .collect(),
    }))
}

//! Living scores: a customer's score, recomputed from the projections each
//! time a payments or telematics event about them arrives, kept as a history
//! with the cause of each change.

use miliki_events::catalogue::credit::ScoreChanged;
use miliki_events::standing;
use miliki_platform::db::Tx;
use uuid::Uuid;

use crate::features::{self, Inputs};
use crate::model::Score;
use crate::state::AppState;
use crate::store::{self, ScoreEntry};

/// The customer's score as the projections stand now (within `tx`).
pub async fn current(state: &AppState, tx: &mut Tx, customer: Uuid) -> anyhow::Result<Score> {
    let now = state.deps.clock.now();
    let history = store::history(tx, customer, now).await?;
    let kyc = store::kyc_approved_at(tx, customer).await?;
    let latest = store::latest_application(tx, customer).await?;
    let onboarded = standing::onboarded_by(&state.deps.db, customer)
        .await?
        .is_some();
    let currency = latest
        .as_ref()
        .map(|a| a.currency.clone())
        .unwrap_or_else(|| state.model.currency.clone());
    let mut f = features::compute(&Inputs {
        now,
        kyc_approved_at: kyc,
        agent_onboarded: onboarded,
        statement: latest.as_ref().and_then(|a| a.statement.as_ref()),
        history: &history,
        has_guarantor: latest
            .as_ref()
            .is_some_and(|a| a.guarantor_sealed.is_some()),
        currency: &currency,
        model_currency: &state.model.currency,
    });
    // Affordability belongs to the latest plan applied for.
    if let Some(a) = &latest {
        let v = a.features.get("affordability_bps");
        let d = a.features.details.get("affordability_bps").cloned();
        f.set("affordability_bps", v, d);
    } else {
        f.set(
            "affordability_bps",
            None,
            Some("no plan applied for yet".into()),
        );
    }
    Ok(state
        .model
        .score(&f.values, |name| f.details.get(name).cloned()))
}

/// Recomputes `customer`'s score within `tx` and records it (with its cause)
/// when it changed or is the first; publishes `credit.score.changed.v1`.
pub async fn recompute(
    state: &AppState,
    tx: &mut Tx,
    customer: Uuid,
    cause: &str,
    event_id: Option<Uuid>,
) -> anyhow::Result<()> {
    let score = current(state, tx, customer).await?;
    let previous: Option<(i64, String)> = {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT score, model_version FROM score_history WHERE customer_id = $1 \
             ORDER BY at DESC, id DESC LIMIT 1",
        )
        .bind(customer.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        match row {
            Some(r) => Some((r.try_get("score")?, r.try_get("model_version")?)),
            None => None,
        }
    };
    if previous
        .as_ref()
        .is_some_and(|(s, v)| *s == score.score && *v == score.model_version)
    {
        return Ok(());
    }
    let entry = ScoreEntry {
        score: score.clone(),
        cause: cause.to_owned(),
        event_id,
        at: state.deps.clock.now(),
    };
    store::insert_score(tx, customer, &entry).await?;
    state
        .deps
        .events
        .write(
            tx,
            &ScoreChanged {
                customer_id: customer,
                score: score.score,
                previous_score: previous.map(|(s, _)| s),
                band: score.band.clone(),
                model_version: score.model_version.clone(),
                cause: cause.to_owned(),
            },
        )
        .await?;
    Ok(())
}

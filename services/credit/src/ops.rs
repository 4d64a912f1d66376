//! The application lifecycle: assess (features, score, quote, decision),
//! review, accept, lapse. Every status change is written with its transition
//! (who and why) and its event in one transaction.

use chrono::{DateTime, Utc};
use miliki_events::catalogue::credit::{ApplicationDecided, ApplicationLapsed};
use miliki_events::standing;
use miliki_platform::db::Tx;
use miliki_platform::ApiError;
use uuid::Uuid;

use crate::domain::{ApplicationStatus, Condition, Features, Offer, Transition};
use crate::features::{self, Inputs};
use crate::model::Score;
use crate::policy::{self, Facts};
use crate::quotes::{self, ProductTerms, Quote, QuoteError};
use crate::state::AppState;
use crate::statement::StatementSummary;
use crate::store::{self, ApplicationRecord};

/// What an assessment concluded.
pub struct Assessment {
    pub features: Features,
    pub score: Score,
    pub status: ApplicationStatus,
    pub reason: String,
    pub offer: Option<Offer>,
}

/// The plan being assessed.
pub struct Plan<'a> {
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub currency: &'a str,
    pub price_minor: i64,
    pub deposit_minor: i64,
    pub term_periods: i64,
    pub declared_monthly: i64,
    pub statement: Option<&'a StatementSummary>,
    pub has_guarantor: bool,
}

/// Features, score and decision for `plan`, asking payments for the
/// product and quotes with `token`. A refusal by payments (a deposit under
/// the product's minimum, a term outside it) is the applicant's error and is
/// returned; payments being unreachable sends the application to manual review.
pub async fn assess(
    state: &AppState,
    token: &str,
    plan: &Plan<'_>,
) -> Result<Assessment, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let policy = &state.model.policy;
    let mut conn = deps.db.reader().acquire().await?;
    let history = store::history(&mut conn, plan.customer_id, now).await?;
    let kyc = store::kyc_approved_at(&mut conn, plan.customer_id).await?;
    drop(conn);
    let onboarded = standing::onboarded_by(&deps.db, plan.customer_id)
        .await?
        .is_some();
    let mut f = features::compute(&Inputs {
        now,
        kyc_approved_at: kyc,
        agent_onboarded: onboarded,
        statement: plan.statement,
        history: &history,
        has_guarantor: plan.has_guarantor,
        currency: plan.currency,
        model_currency: &state.model.currency,
    });
    features::set_income(
        &mut f,
        plan.statement,
        plan.declared_monthly,
        policy.declared_income_haircut_bps,
    );
    // The product and the quote, from payments' own rules.
    let quoted: Option<(ProductTerms, Quote)> = match quotes::product(state, token, plan.product_id)
        .await
    {
        Ok(product) => {
            if product.currency != plan.currency {
                return Err(ApiError::field(
                    "product_id",
                    format!(
                        "the product is priced in {}, the vehicle in {}",
                        product.currency, plan.currency
                    ),
                ));
            }
            if product.status != "active" {
                return Err(ApiError::field(
                    "product_id",
                    "the product is retired and takes no new applications",
                ));
            }
            match quotes::quote(
                state,
                token,
                plan.product_id,
                plan.price_minor,
                plan.currency,
                plan.deposit_minor,
                plan.term_periods,
            )
            .await
            {
                Ok(q) => Some((product, q)),
                Err(QuoteError::Refused(e)) => return Err(e),
                Err(QuoteError::Unavailable(why)) => {
                    tracing::warn!(%why, "payments could not quote; the application goes to review");
                    None
                }
            }
        }
        Err(QuoteError::Refused(e)) => return Err(e),
        Err(QuoteError::Unavailable(why)) => {
            tracing::warn!(%why, "payments could not be reached; the application goes to review");
            None
        }
    };
    features::set_affordability(
        &mut f,
        plan.currency,
        quoted.as_ref().map(|(p, q)| p.monthly(q.installment_minor)),
    );
    let score = state
        .model
        .score(&f.values, |name| f.details.get(name).cloned());
    let facts = Facts {
        history: &history,
        has_statement: plan.statement.is_some(),
        has_guarantor: plan.has_guarantor,
        declared_monthly: plan.declared_monthly,
        features: &f,
        currency: plan.currency,
        price_minor: plan.price_minor,
        deposit_minor: plan.deposit_minor,
        term_periods: plan.term_periods,
    };
    let decision = match policy::rule(policy, &score, &facts, quoted.is_some()) {
        Some(d) => d,
        None => {
            let (product, q) = quoted.as_ref().ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("the conditional band needs a quote"))
            })?;
            policy::conditions(state, token, product, &score, &facts, q).await
        }
    };
    let offer = (decision.status != ApplicationStatus::Declined).then(|| Offer {
        product_id: plan.product_id,
        currency: plan.currency.to_owned(),
        price_minor: plan.price_minor,
        deposit_minor: plan.deposit_minor,
        term_periods: plan.term_periods,
        quote: quoted.as_ref().map(|(_, q)| q.clone()),
        conditions: decision.conditions.clone(),
    });
    Ok(Assessment {
        features: f,
        score,
        status: decision.status,
        reason: decision.reason,
        offer,
    })
}

/// Records a status change of `a` (already updated in memory) with who and why.
pub async fn transition(
    tx: &mut Tx,
    a: &ApplicationRecord,
    from: Option<ApplicationStatus>,
    actor: Option<Uuid>,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    store::insert_transition(
        tx,
        &Transition {
            application_id: a.id,
            from,
            to: a.status,
            actor_id: actor,
            reason: reason.to_owned(),
            at,
        },
    )
    .await
}

/// The decided event of `a`.
pub fn decided_event(a: &ApplicationRecord, by: Option<Uuid>) -> ApplicationDecided {
    ApplicationDecided {
        application_id: a.id,
        customer_id: a.customer_id,
        status: a.status.as_str().to_owned(),
        score: a.score.as_ref().map(|s| s.score),
        model_version: a.score.as_ref().map(|s| s.model_version.clone()),
        reasons: a
            .score
            .as_ref()
            .map(|s| s.reasons.iter().map(|r| r.text.clone()).collect())
            .unwrap_or_default(),
        decided_by: by,
    }
}

/// Lapses every open, not yet accepted application on `reservation`; returns how many.
pub async fn lapse(
    state: &AppState,
    tx: &mut Tx,
    reservation: Uuid,
    reason: &str,
) -> anyhow::Result<usize> {
    let lock = store::for_update(&state.deps.db);
    let now = state.deps.clock.now();
    let mut n = 0;
    for mut a in store::open_on_reservation(tx, reservation, lock).await? {
        if a.status == ApplicationStatus::Accepted {
            continue;
        }
        let from = a.status;
        a.status = ApplicationStatus::Lapsed;
        a.updated_at = now;
        store::update_application(tx, &a).await?;
        transition(tx, &a, Some(from), None, reason, now).await?;
        state
            .deps
            .events
            .write(
                tx,
                &ApplicationLapsed {
                    application_id: a.id,
                    customer_id: a.customer_id,
                    reservation_id: reservation,
                    reason: reason.to_owned(),
                },
            )
            .await?;
        n += 1;
    }
    Ok(n)
}

/// Validates a reviewer's conditions against the application.
pub fn check_conditions(a: &ApplicationRecord, conditions: &[Condition]) -> Result<(), ApiError> {
    use crate::domain::ConditionKind;
    let mut v = miliki_platform::problem::Validator::new();
    if conditions.is_empty() {
        v.error(
            "conditions",
            "a conditional approval names at least one condition",
        );
    }
    for (i, c) in conditions.iter().enumerate() {
        match c.kind {
            ConditionKind::HigherDeposit => match c.deposit_minor {
                Some(d) if d > a.deposit_minor && d < a.price_minor => {}
                _ => v.error(
                    &format!("conditions[{i}].deposit_minor"),
                    format!(
                        "must be more than the applied deposit ({}) and less than the price ({})",
                        a.deposit_minor, a.price_minor
                    ),
                ),
            },
            ConditionKind::LongerTerm => match c.term_periods {
                Some(t) if t > a.term_periods => {}
                _ => v.error(
                    &format!("conditions[{i}].term_periods"),
                    format!("must be longer than the applied term ({})", a.term_periods),
                ),
            },
            ConditionKind::Guarantor => {
                if a.guarantor_sealed.is_some() {
                    v.error(
                        &format!("conditions[{i}].kind"),
                        "the application already names a guarantor",
                    );
                }
            }
        }
        if c.description.trim().is_empty() || c.description.chars().count() > 500 {
            v.error(
                &format!("conditions[{i}].description"),
                "is required, at most 500 characters",
            );
        }
    }
    v.finish()
}

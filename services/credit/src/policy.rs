//! The decision policy: hard rules, then the score against the model's
//! thresholds, then affordability, ending in a decision with its conditions.

use crate::domain::{ApplicationStatus, Condition, ConditionKind, Features};
use crate::features::{affordability_bps, money};
use crate::model::{Policy, Score};
use crate::quotes::{self, ProductTerms, Quote, QuoteError};
use crate::state::AppState;
use crate::store::History;

/// What the policy decided, and why.
#[derive(Debug, Clone)]
pub struct Decision {
    pub status: ApplicationStatus,
    pub reason: String,
    pub conditions: Vec<Condition>,
}

/// The facts the policy reads besides the score.
pub struct Facts<'a> {
    pub history: &'a History,
    pub has_statement: bool,
    pub has_guarantor: bool,
    pub declared_monthly: i64,
    pub features: &'a Features,
    pub currency: &'a str,
    pub price_minor: i64,
    pub deposit_minor: i64,
    pub term_periods: i64,
}

/// The part of the decision that needs no further quote: `None` means
/// "conditional, work out the conditions".
pub fn rule(policy: &Policy, score: &Score, facts: &Facts, quoted: bool) -> Option<Decision> {
    let done = |status, reason: String| {
        Some(Decision {
            status,
            reason,
            conditions: Vec::new(),
        })
    };
    let h = facts.history;
    if h.defaulted > 0 {
        return done(
            ApplicationStatus::Declined,
            "hard rule: a contract on Miliki was defaulted or written off".into(),
        );
    }
    if h.current_days_past_due >= policy.decline_arrears_days {
        return done(
            ApplicationStatus::Declined,
            format!(
                "hard rule: {} days past due on a live contract",
                h.current_days_past_due
            ),
        );
    }
    if !quoted {
        return done(
            ApplicationStatus::ManualReview,
            "the payments service could not quote the plan; a reviewer will complete it".into(),
        );
    }
    if !facts.has_statement && h.contracts == 0 {
        return done(
            ApplicationStatus::ManualReview,
            "thin file: no M-Pesa statement and no history on Miliki".into(),
        );
    }
    if facts.has_statement {
        let verified = facts.features.income_monthly_minor;
        if i128::from(facts.declared_monthly) * 10_000
            > i128::from(verified) * i128::from(policy.conflicting_income_ratio_bps)
        {
            return done(
                ApplicationStatus::ManualReview,
                format!(
                    "conflicting data: declared income {} a month, the statement shows {}",
                    money(facts.currency, facts.declared_monthly),
                    money(facts.currency, verified)
                ),
            );
        }
    }
    if score.score < policy.floor_score {
        return done(
            ApplicationStatus::Declined,
            format!(
                "score {} is below the floor of {}",
                score.score, policy.floor_score
            ),
        );
    }
    let affordable = facts
        .features
        .get("affordability_bps")
        .is_some_and(|a| a <= policy.max_affordability_bps);
    if score.score >= policy.approve_score && affordable {
        return done(
            ApplicationStatus::Approved,
            format!(
                "score {} at or above {} and the installment is affordable",
                score.score, policy.approve_score
            ),
        );
    }
    None
}

async fn try_quote(
    state: &AppState,
    token: &str,
    product: &ProductTerms,
    facts: &Facts<'_>,
    deposit: i64,
    term: i64,
) -> Option<Quote> {
    match quotes::quote(
        state,
        token,
        product.id,
        facts.price_minor,
        facts.currency,
        deposit,
        term,
    )
    .await
    {
        Ok(q) => Some(q),
        Err(QuoteError::Refused(_)) | Err(QuoteError::Unavailable(_)) => None,
    }
}

fn affordable(policy: &Policy, product: &ProductTerms, q: &Quote, income: i64) -> bool {
    affordability_bps(product.monthly(q.installment_minor), income) <= policy.max_affordability_bps
}

/// Deposits are asked for in whole hundreds (KES 100 = 10,000 minor units).
const DEPOSIT_STEP: i64 = 10_000;

fn round_up(v: i64) -> i64 {
    (v + DEPOSIT_STEP - 1) / DEPOSIT_STEP * DEPOSIT_STEP
}

/// The smallest deposit (in steps) that makes the installment affordable, with its quote.
async fn higher_deposit(
    state: &AppState,
    token: &str,
    product: &ProductTerms,
    facts: &Facts<'_>,
    base: &Quote,
) -> Option<(i64, Quote)> {
    let policy = &state.model.policy;
    let income = facts.features.income_monthly_minor;
    if income <= 0 || base.installment_minor <= 0 {
        return None;
    }
    // The installment scales with the principal: aim at the affordable one.
    let target_monthly = i128::from(income) * i128::from(policy.max_affordability_bps) / 10_000;
    let monthly_now = i128::from(product.monthly(base.installment_minor));
    let principal = i128::from(base.principal_minor) * target_monthly / monthly_now.max(1);
    let mut deposit = round_up(facts.price_minor - principal as i64).max(facts.deposit_minor);
    for _ in 0..6 {
        if deposit >= facts.price_minor {
            return None;
        }
        let q = try_quote(state, token, product, facts, deposit, facts.term_periods).await?;
        if affordable(policy, product, &q, income) {
            return Some((deposit, q));
        }
        deposit = round_up(deposit + facts.price_minor / 50);
    }
    None
}

/// The shortest longer term within the product that makes it affordable.
async fn longer_term(
    state: &AppState,
    token: &str,
    product: &ProductTerms,
    facts: &Facts<'_>,
) -> Option<(i64, Quote)> {
    let policy = &state.model.policy;
    let income = facts.features.income_monthly_minor;
    let max = product.term_periods_max;
    if facts.term_periods >= max {
        return None;
    }
    let at_max = try_quote(state, token, product, facts, facts.deposit_minor, max).await?;
    if !affordable(policy, product, &at_max, income) {
        return None;
    }
    let (mut lo, mut hi, mut best) = (facts.term_periods + 1, max, (max, at_max));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match try_quote(state, token, product, facts, facts.deposit_minor, mid).await {
            Some(q) if affordable(policy, product, &q, income) => {
                best = (mid, q);
                hi = mid;
            }
            Some(_) => lo = mid + 1,
            None => return Some(best),
        }
    }
    Some(best)
}

/// The conditional band: the conditions that would make the offer acceptable.
pub async fn conditions(
    state: &AppState,
    token: &str,
    product: &ProductTerms,
    score: &Score,
    facts: &Facts<'_>,
    base: &Quote,
) -> Decision {
    let policy = &state.model.policy;
    let cur = facts.currency;
    let income = facts.features.income_monthly_minor;
    let mut out = Vec::new();
    if !affordable(policy, product, base, income) {
        if let Some((deposit, q)) = higher_deposit(state, token, product, facts, base).await {
            out.push(Condition {
                kind: ConditionKind::HigherDeposit,
                deposit_minor: Some(deposit),
                term_periods: None,
                installment_minor: Some(q.installment_minor),
                description: format!(
                    "a deposit of {} brings the installment to {} ({} a month), within {}% of income",
                    money(cur, deposit),
                    money(cur, q.installment_minor),
                    money(cur, product.monthly(q.installment_minor)),
                    policy.max_affordability_bps / 100
                ),
            });
        }
        if let Some((term, q)) = longer_term(state, token, product, facts).await {
            out.push(Condition {
                kind: ConditionKind::LongerTerm,
                deposit_minor: None,
                term_periods: Some(term),
                installment_minor: Some(q.installment_minor),
                description: format!(
                    "a term of {term} {} periods brings the installment to {}",
                    product.frequency,
                    money(cur, q.installment_minor)
                ),
            });
        }
        if out.is_empty() {
            return Decision {
                status: ApplicationStatus::Declined,
                reason: format!(
                    "the installment of {} would take {}% of income and no deposit or term within the product makes it affordable",
                    money(cur, base.installment_minor),
                    affordability_bps(product.monthly(base.installment_minor), income) / 100
                ),
                conditions: out,
            };
        }
        return Decision {
            status: ApplicationStatus::ConditionallyApproved,
            reason: format!(
                "score {}; the installment is not affordable as applied for",
                score.score
            ),
            conditions: out,
        };
    }
    // Affordable, but the score is between the floor and the approval mark.
    if !facts.has_guarantor {
        out.push(Condition {
            kind: ConditionKind::Guarantor,
            deposit_minor: None,
            term_periods: None,
            installment_minor: None,
            description: "name a guarantor (name, phone, national ID) who stands behind the plan"
                .into(),
        });
    }
    let deposit = round_up(
        (i128::from(facts.price_minor) * i128::from(policy.conditional_deposit_bps) / 10_000)
            as i64,
    );
    if deposit > facts.deposit_minor && deposit < facts.price_minor {
        if let Some(q) = try_quote(state, token, product, facts, deposit, facts.term_periods).await
        {
            out.push(Condition {
                kind: ConditionKind::HigherDeposit,
                deposit_minor: Some(deposit),
                term_periods: None,
                installment_minor: Some(q.installment_minor),
                description: format!(
                    "a deposit of {} ({}% of the price)",
                    money(cur, deposit),
                    policy.conditional_deposit_bps / 100
                ),
            });
        }
    }
    if out.is_empty() {
        return Decision {
            status: ApplicationStatus::ManualReview,
            reason: format!(
                "score {} is between {} and {} and no condition applies; a reviewer decides",
                score.score, policy.floor_score, policy.approve_score
            ),
            conditions: out,
        };
    }
    Decision {
        status: ApplicationStatus::ConditionallyApproved,
        reason: format!(
            "score {} is between the floor of {} and the approval mark of {}",
            score.score, policy.floor_score, policy.approve_score
        ),
        conditions: out,
    }
}

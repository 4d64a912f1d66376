//! Feature computation: from the application, the statement and what the
//! platform has seen of the customer, into the integers the scorecard bins.

use chrono::{DateTime, Utc};

use crate::domain::Features;
use crate::statement::StatementSummary;
use crate::store::History;

/// `KES 18,200` (cents shown only when there are any).
pub fn money(currency: &str, minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    let whole = (m / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    if m.is_multiple_of(100) {
        format!("{currency} {sign}{grouped}")
    } else {
        format!("{currency} {sign}{grouped}.{:02}", m % 100)
    }
}

fn pct(bps: i64) -> String {
    if bps % 100 == 0 {
        format!("{}%", bps / 100)
    } else {
        format!("{:.1}%", bps as f64 / 100.0)
    }
}

fn ratio_bps(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        0
    } else {
        (i128::from(part) * 10_000 / i128::from(whole)) as i64
    }
}

/// What is known of the applicant beyond the application.
pub struct Inputs<'a> {
    pub now: DateTime<Utc>,
    pub kyc_approved_at: Option<DateTime<Utc>>,
    pub agent_onboarded: bool,
    pub statement: Option<&'a StatementSummary>,
    pub history: &'a History,
    pub has_guarantor: bool,
    pub currency: &'a str,
    /// The model's currency: money features in another currency are missing.
    pub model_currency: &'a str,
}

/// Every feature except affordability (which needs the quote: [`set_affordability`]).
pub fn compute(i: &Inputs) -> Features {
    let mut f = Features::default();
    let kyc_days = i.kyc_approved_at.map(|at| (i.now - at).num_days().max(0));
    f.set(
        "kyc_age_days",
        kyc_days,
        Some(match kyc_days {
            Some(d) => format!("identity verified {d} days ago"),
            None => "identity not verified".into(),
        }),
    );
    f.set(
        "agent_onboarded",
        Some(i64::from(i.agent_onboarded)),
        Some(if i.agent_onboarded {
            "onboarded by a field agent".into()
        } else {
            "registered without a field agent".into()
        }),
    );
    let money_ok = i.currency == i.model_currency;
    match i.statement {
        Some(s) => {
            f.set(
                "monthly_inflow_minor",
                money_ok.then_some(s.monthly_inflow_minor),
                Some(format!(
                    "{} a month came in over the last {} weeks",
                    money(i.currency, s.monthly_inflow_minor),
                    s.weeks
                )),
            );
            f.set(
                "inflow_regularity_bps",
                Some(ratio_bps(s.weeks_with_income, s.weeks)),
                Some(format!(
                    "money came in during {} of the last {} weeks",
                    s.weeks_with_income, s.weeks
                )),
            );
            f.set(
                "avg_balance_minor",
                money_ok.then_some(s.avg_balance_minor),
                Some(format!(
                    "an average balance of {}",
                    money(i.currency, s.avg_balance_minor)
                )),
            );
            f.set(
                "distinct_payers",
                Some(s.distinct_payers),
                Some(format!("{} distinct payers", s.distinct_payers)),
            );
            let betting = ratio_bps(s.betting_outflow_minor, s.outflow_minor);
            f.set(
                "betting_share_bps",
                Some(betting),
                Some(format!(
                    "{} of outflows ({}) went to betting",
                    pct(betting),
                    money(i.currency, s.betting_outflow_minor)
                )),
            );
            f.set(
                "failed_transactions",
                Some(s.failed_transactions),
                Some(format!(
                    "{} failed or reversed transactions",
                    s.failed_transactions
                )),
            );
        }
        None => {
            for name in [
                "monthly_inflow_minor",
                "inflow_regularity_bps",
                "avg_balance_minor",
                "distinct_payers",
                "betting_share_bps",
                "failed_transactions",
            ] {
                f.set(name, None, Some("no M-Pesa statement was given".into()));
            }
        }
    }
    let h = i.history;
    if h.payments > 0 {
        f.set(
            "on_time_ratio_bps",
            Some(ratio_bps(h.on_time_payments, h.payments)),
            Some(format!(
                "{} of {} payments on time",
                h.on_time_payments, h.payments
            )),
        );
    } else {
        f.set(
            "on_time_ratio_bps",
            None,
            Some("no payments on Miliki yet".into()),
        );
    }
    if h.contracts > 0 {
        f.set(
            "worst_days_past_due",
            Some(h.worst_days_past_due),
            Some(format!("at worst {} days past due", h.worst_days_past_due)),
        );
        f.set(
            "current_arrears_days",
            Some(h.current_days_past_due),
            Some(format!("{} days past due now", h.current_days_past_due)),
        );
    } else {
        f.set(
            "worst_days_past_due",
            None,
            Some("no contract on Miliki yet".into()),
        );
        f.set(
            "current_arrears_days",
            None,
            Some("no contract on Miliki yet".into()),
        );
    }
    f.set(
        "contracts_completed",
        (h.contracts > 0).then_some(h.completed),
        Some(match h.completed {
            0 => "no contract completed yet".into(),
            1 => "1 contract completed".into(),
            n => format!("{n} contracts completed"),
        }),
    );
    if h.days_driven > 0 || h.risk_events > 0 {
        let days = h.days_driven.max(30);
        let rate = (i128::from(h.risk_events) * 30 * 100 / i128::from(days)) as i64;
        f.set(
            "risk_events_per_30_days_x100",
            Some(rate),
            Some(format!(
                "{} driving risk events in {} days under contract",
                h.risk_events, h.days_driven
            )),
        );
    } else {
        f.set(
            "risk_events_per_30_days_x100",
            None,
            Some("has not driven a tracked vehicle".into()),
        );
    }
    f.set(
        "guarantor",
        Some(i64::from(i.has_guarantor)),
        Some(if i.has_guarantor {
            "a guarantor is named".into()
        } else {
            "none named".into()
        }),
    );
    f
}

/// The monthly income affordability is measured against: the statement's
/// inflow when there is one, else the declared income after the haircut.
pub fn set_income(
    f: &mut Features,
    statement: Option<&StatementSummary>,
    declared_monthly: i64,
    haircut_bps: i64,
) {
    match statement {
        Some(s) => {
            f.income_monthly_minor = s.monthly_inflow_minor;
            f.income_source = "statement".into();
        }
        None => {
            f.income_monthly_minor =
                (i128::from(declared_monthly) * i128::from(haircut_bps) / 10_000) as i64;
            f.income_source = "declared".into();
        }
    }
}

/// The installment (monthly) as a share of monthly income, in basis points.
pub fn affordability_bps(monthly_installment: i64, income_monthly: i64) -> i64 {
    if income_monthly <= 0 {
        return 99_999;
    }
    ratio_bps(monthly_installment, income_monthly).min(99_999)
}

pub fn set_affordability(f: &mut Features, currency: &str, monthly_installment: Option<i64>) {
    match monthly_installment {
        Some(m) => {
            let bps = affordability_bps(m, f.income_monthly_minor);
            let detail = format!(
                "the installment ({} a month) would take {} of {} monthly income ({})",
                money(currency, m),
                pct(bps),
                f.income_source,
                money(currency, f.income_monthly_minor)
            );
            f.set("affordability_bps", Some(bps), Some(detail));
        }
        None => f.set(
            "affordability_bps",
            None,
            Some("no quote to measure the installment".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_like_a_statement() {
        assert_eq!(money("KES", 1_820_000), "KES 18,200");
        assert_eq!(money("KES", 50), "KES 0.50");
        assert_eq!(money("KES", 123_456_789), "KES 1,234,567.89");
        assert_eq!(money("KES", 100_000_000), "KES 1,000,000");
    }
}

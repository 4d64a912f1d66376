//! The installment schedule, computed exactly as the product rules say so
//! that anyone can check a schedule by hand:
//!
//! - rounding is half-even to the minor unit, except where a value is rounded
//!   to a multiple of `rounding_minor` (half-even on the number of multiples);
//! - flat: `I = round(P × rate × n / m)`, `T = multiple((P + I) / n)`,
//!   `interest_k = round(I / n)`, `principal_k = T − interest_k`, the last
//!   installment takes what is left of P and of I;
//! - declining balance, equal installments: `r = rate / m`,
//!   `A = multiple(P·r / (1 − (1 + r)^−n))` (`P / n` when r = 0),
//!   `interest_k = round(balance_{k−1} × r)`, `principal_k = A − interest_k`,
//!   the last pays the remaining balance plus its interest;
//! - declining balance, equal principal: `principal_k = multiple(P / n)`
//!   (the last takes the remainder), `interest_k = round(balance_{k−1} × r)`.
//!
//! Interest on a balance is computed from integers (`balance × bps / (10000 m)`)
//! so a tie is a true tie; only the annuity factor uses a rounded rate.

use chrono::{Days, Months, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

miliki_platform::string_enum!(
    /// How often installments fall due.
    Frequency {
        Daily => "daily",
        Weekly => "weekly",
        Monthly => "monthly",
    }
);

miliki_platform::string_enum!(
    /// How interest is charged.
    InterestMethod {
        Flat => "flat",
        DecliningBalance => "declining_balance",
    }
);

miliki_platform::string_enum!(
    /// How a declining-balance loan is repaid.
    Amortization {
        EqualInstallments => "equal_installments",
        EqualPrincipal => "equal_principal",
    }
);

impl Frequency {
    /// Periods per year, `m`.
    pub fn periods_per_year(self) -> u32 {
        match self {
            Frequency::Daily => 365,
            Frequency::Weekly => 52,
            Frequency::Monthly => 12,
        }
    }

    /// The due date of installment `k`, counted from `start` (never chained, so
    /// a 31 January start falls due on 28/29 February and then 31 March).
    pub fn due_date(self, start: NaiveDate, k: u32) -> Option<NaiveDate> {
        match self {
            Frequency::Daily => start.checked_add_days(Days::new(u64::from(k))),
            Frequency::Weekly => start.checked_add_days(Days::new(7 * u64::from(k))),
            // chrono clamps to the month's last day when the day does not exist.
            Frequency::Monthly => start.checked_add_months(Months::new(k)),
        }
    }

    /// The nominal length of one period in days, for pro-rating interest.
    pub fn nominal_days(self) -> i64 {
        match self {
            Frequency::Daily => 1,
            Frequency::Weekly => 7,
            Frequency::Monthly => 30,
        }
    }
}

/// What a schedule is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// P, the financed principal (price − deposit), in minor units.
    pub principal_minor: i64,
    pub annual_rate_bps: u32,
    /// n.
    pub periods: u32,
    pub frequency: Frequency,
    pub method: InterestMethod,
    /// Only used with declining balance.
    pub amortization: Amortization,
    /// Installment totals (flat, equal installments) or principals (equal
    /// principal) are multiples of this.
    pub rounding_minor: i64,
}

/// One installment of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Installment {
    pub number: u32,
    pub due_date: NaiveDate,
    pub principal_minor: i64,
    pub interest_minor: i64,
    pub total_minor: i64,
    pub balance_after_minor: i64,
}

/// The installments of a financed principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The regular installment (T, A, or the first installment for equal principal).
    pub installment_minor: i64,
    pub total_interest_minor: i64,
    pub installments: Vec<Installment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the principal must be positive")]
    NoPrincipal,
    #[error("the term must be at least one period")]
    NoPeriods,
    #[error("rounding must be a positive number of minor units")]
    BadRounding,
    #[error(
        "with installments in multiples of {rounding_minor} the schedule cannot repay this \
         principal over this many periods (installment {number} would be zero, negative or overshoot)"
    )]
    RoundingOvershoot { rounding_minor: i64, number: u32 },
    #[error("the amounts are too large")]
    Overflow,
    #[error("a due date falls outside the calendar")]
    DateOutOfRange,
}

fn dec(v: i64) -> Decimal {
    Decimal::from(v)
}

/// Half-even to a whole number of minor units.
fn round(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
}

/// Half-even to a multiple of `q` minor units.
fn round_multiple(d: Decimal, q: i64) -> Result<Decimal, ScheduleError> {
    let q = dec(q);
    round(d.checked_div(q).ok_or(ScheduleError::Overflow)?)
        .checked_mul(q)
        .ok_or(ScheduleError::Overflow)
}

fn to_minor(d: Decimal) -> Result<i64, ScheduleError> {
    i64::try_from(d).map_err(|_| ScheduleError::Overflow)
}

/// `round(numerator / denominator)` for integers, exactly.
fn div_round(numerator: i128, denominator: i128) -> Result<i64, ScheduleError> {
    let n = Decimal::from_i128_with_scale(numerator, 0);
    let d = Decimal::from_i128_with_scale(denominator, 0);
    to_minor(round(n.checked_div(d).ok_or(ScheduleError::Overflow)?))
}

/// `x^n` by squaring, each product rounded to Decimal's 28 significant digits.
fn pow(x: Decimal, mut n: u32) -> Result<Decimal, ScheduleError> {
    let mut base = x;
    let mut acc = Decimal::ONE;
    while n > 0 {
        if n & 1 == 1 {
            acc = acc.checked_mul(base).ok_or(ScheduleError::Overflow)?;
        }
        n >>= 1;
        if n > 0 {
            base = base.checked_mul(base).ok_or(ScheduleError::Overflow)?;
        }
    }
    Ok(acc)
}

/// Round half-even of `amount × bps / 10000` (a fee or percentage of money).
pub fn percent_of(amount_minor: i64, bps: u32) -> Result<i64, ScheduleError> {
    div_round(i128::from(amount_minor) * i128::from(bps), 10_000)
}

/// Round half-even of `amount × numerator / denominator` (pro-rating).
pub fn prorate(amount_minor: i64, numerator: i64, denominator: i64) -> i64 {
    if denominator == 0 {
        return 0;
    }
    div_round(
        i128::from(amount_minor) * i128::from(numerator),
        i128::from(denominator),
    )
    .unwrap_or(0)
}

/// `amount × bps / 10000` rounded up: the least deposit that satisfies a minimum.
pub fn percent_of_ceil(amount_minor: i64, bps: u32) -> i64 {
    let product = i128::from(amount_minor) * i128::from(bps);
    let q = product.div_euclid(10_000) + i128::from(product.rem_euclid(10_000) != 0);
    i64::try_from(q).unwrap_or(i64::MAX)
}

/// Computes the schedule of `terms` with installments due from `start`.
pub fn compute(terms: &Terms, start: NaiveDate) -> Result<Schedule, ScheduleError> {
    let p = terms.principal_minor;
    let n = terms.periods;
    let q = terms.rounding_minor;
    if p <= 0 {
        return Err(ScheduleError::NoPrincipal);
    }
    if n == 0 {
        return Err(ScheduleError::NoPeriods);
    }
    if q <= 0 {
        return Err(ScheduleError::BadRounding);
    }
    let m = i128::from(terms.frequency.periods_per_year());
    let bps = i128::from(terms.annual_rate_bps);
    // Interest for one period on `balance`, exactly rounded.
    let period_interest = |balance: i64| div_round(i128::from(balance) * bps, 10_000 * m);

    let mut rows: Vec<(i64, i64)> = Vec::with_capacity(n as usize);
    let installment_minor = match (terms.method, terms.amortization) {
        (InterestMethod::Flat, _) => {
            let total_interest = div_round(i128::from(p) * bps * i128::from(n), 10_000 * m)?;
            let t = to_minor(round_multiple(
                (dec(p) + dec(total_interest)) / dec(i64::from(n)),
                q,
            )?)?;
            let interest_k = div_round(i128::from(total_interest), i128::from(n))?;
            let (mut p_left, mut i_left) = (p, total_interest);
            for _ in 1..n {
                let principal = t - interest_k;
                rows.push((principal, interest_k));
                p_left -= principal;
                i_left -= interest_k;
            }
            rows.push((p_left, i_left));
            t
        }
        (InterestMethod::DecliningBalance, Amortization::EqualInstallments) => {
            let a = if bps == 0 {
                round_multiple(dec(p) / dec(i64::from(n)), q)?
            } else {
                let r = Decimal::from_i128_with_scale(bps, 0)
                    / Decimal::from_i128_with_scale(10_000 * m, 0);
                let f = pow(Decimal::ONE + r, n)?;
                let exact = dec(p)
                    .checked_mul(r)
                    .and_then(|x| x.checked_mul(f))
                    .and_then(|x| x.checked_div(f - Decimal::ONE))
                    .ok_or(ScheduleError::Overflow)?;
                round_multiple(exact, q)?
            };
            let a = to_minor(a)?;
            let mut balance = p;
            for k in 1..=n {
                let interest = period_interest(balance)?;
                let principal = if k == n { balance } else { a - interest };
                rows.push((principal, interest));
                balance -= principal;
            }
            a
        }
        (InterestMethod::DecliningBalance, Amortization::EqualPrincipal) => {
            let each = to_minor(round_multiple(dec(p) / dec(i64::from(n)), q)?)?;
            let mut balance = p;
            for k in 1..=n {
                let interest = period_interest(balance)?;
                let principal = if k == n { balance } else { each };
                rows.push((principal, interest));
                balance -= principal;
            }
            rows.first().map(|(pr, i)| pr + i).unwrap_or(0)
        }
    };

    let mut balance = p;
    let mut installments = Vec::with_capacity(rows.len());
    for (idx, (principal, interest)) in rows.into_iter().enumerate() {
        let number = idx as u32 + 1;
        balance -= principal;
        if principal < 0 || interest < 0 || balance < 0 || principal + interest == 0 {
            return Err(ScheduleError::RoundingOvershoot {
                rounding_minor: q,
                number,
            });
        }
        installments.push(Installment {
            number,
            due_date: terms
                .frequency
                .due_date(start, number)
                .ok_or(ScheduleError::DateOutOfRange)?,
            principal_minor: principal,
            interest_minor: interest,
            total_minor: principal + interest,
            balance_after_minor: balance,
        });
    }
    let total_interest_minor = installments.iter().map(|i| i.interest_minor).sum();
    Ok(Schedule {
        installment_minor,
        total_interest_minor,
        installments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn monthly_due_dates_clamp_to_month_end_counted_from_the_start() {
        let start = date(2026, 1, 31);
        let dates: Vec<_> = (1..=4)
            .map(|k| Frequency::Monthly.due_date(start, k).unwrap())
            .collect();
        assert_eq!(
            dates,
            vec![
                date(2026, 2, 28),
                date(2026, 3, 31),
                date(2026, 4, 30),
                date(2026, 5, 31)
            ]
        );
        // Leap year.
        assert_eq!(
            Frequency::Monthly.due_date(date(2027, 12, 31), 2),
            Some(date(2028, 2, 29))
        );
        assert_eq!(
            Frequency::Weekly.due_date(date(2026, 3, 2), 3),
            Some(date(2026, 3, 23))
        );
        assert_eq!(
            Frequency::Daily.due_date(date(2026, 12, 31), 1),
            Some(date(2027, 1, 1))
        );
    }

    #[test]
    fn half_even_rounding_and_ceil_percentages() {
        assert_eq!(div_round(5, 2).unwrap(), 2);
        assert_eq!(div_round(7, 2).unwrap(), 4);
        assert_eq!(div_round(-5, 2).unwrap(), -2);
        assert_eq!(round_multiple(dec(150), 100).unwrap(), dec(200));
        assert_eq!(round_multiple(dec(250), 100).unwrap(), dec(200));
        assert_eq!(round_multiple(dec(251), 100).unwrap(), dec(300));
        assert_eq!(percent_of_ceil(100_001, 1000), 10_001);
        assert_eq!(percent_of_ceil(100_000, 1000), 10_000);
        assert_eq!(percent_of(12_345, 250).unwrap(), 309); // 308.625
    }

    #[test]
    fn refuses_terms_rounding_cannot_repay() {
        let terms = Terms {
            principal_minor: 1_000,
            annual_rate_bps: 0,
            periods: 52,
            frequency: Frequency::Weekly,
            method: InterestMethod::DecliningBalance,
            amortization: Amortization::EqualInstallments,
            rounding_minor: 100,
        };
        assert!(matches!(
            compute(&terms, date(2026, 1, 1)),
            Err(ScheduleError::RoundingOvershoot { .. })
        ));
    }
}

//! A quote: the whole cost of financing a price on a product, and the schedule.

use chrono::NaiveDate;
use miliki_platform::problem::Validator;
use miliki_platform::ApiError;
use serde::Serialize;
use utoipa::ToSchema;

use super::product::ProductTerms;
use super::schedule::{self, Installment, ScheduleError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Quote {
    pub principal_minor: i64,
    pub deposit_minor: i64,
    pub processing_fee_minor: i64,
    pub total_interest_minor: i64,
    /// Deposit + processing fee + principal + interest: everything the customer pays.
    pub total_payable_minor: i64,
    pub installment_minor: i64,
    pub installments: Vec<Installment>,
}

/// The largest price accepted (10^13 minor units), far above any vehicle.
pub const MAX_PRICE_MINOR: i64 = 10_000_000_000_000;

/// Quotes `price` with `deposit` over `term` periods of `product`, starting
/// `start`. Every wrong input is named: `deposit_minor`, `term_periods`,
/// `price_minor`.
pub fn quote(
    product: &ProductTerms,
    price_minor: i64,
    deposit_minor: i64,
    term_periods: i64,
    start: NaiveDate,
) -> Result<Quote, ApiError> {
    let mut v = Validator::new();
    if !(1..=MAX_PRICE_MINOR).contains(&price_minor) {
        v.error("price_minor", "must be a positive amount in minor units");
    }
    let min_deposit = schedule::percent_of_ceil(price_minor, product.min_deposit_bps);
    if deposit_minor < min_deposit {
        v.error(
            "deposit_minor",
            format!(
                "must be at least {min_deposit} ({} basis points of the price)",
                product.min_deposit_bps
            ),
        );
    } else if price_minor > 0 && deposit_minor >= price_minor {
        v.error(
            "deposit_minor",
            "must be less than the price: nothing would be financed",
        );
    }
    if term_periods < i64::from(product.term_periods_min)
        || term_periods > i64::from(product.term_periods_max)
    {
        v.error(
            "term_periods",
            format!(
                "must be between {} and {} for this product",
                product.term_periods_min, product.term_periods_max
            ),
        );
    }
    v.finish()?;
    let principal = price_minor - deposit_minor;
    let periods = term_periods as u32;
    let fee = schedule::percent_of(principal, product.processing_fee_bps)
        .map_err(|e| ApiError::field("price_minor", e.to_string()))?;
    let s = schedule::compute(&product.terms(principal, periods), start).map_err(|e| match e {
        ScheduleError::RoundingOvershoot { .. } => ApiError::field("term_periods", e.to_string()),
        ScheduleError::DateOutOfRange => ApiError::field("start_date", e.to_string()),
        other => ApiError::field("price_minor", other.to_string()),
    })?;
    Ok(Quote {
        principal_minor: principal,
        deposit_minor,
        processing_fee_minor: fee,
        total_interest_minor: s.total_interest_minor,
        total_payable_minor: deposit_minor + fee + principal + s.total_interest_minor,
        installment_minor: s.installment_minor,
        installments: s.installments,
    })
}

//! Money is an integer count of minor units with its ISO 4217 currency.
//! There are no floats anywhere near it, and splitting an amount always
//! accounts for every minor unit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The currencies an East and West African operator prices in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    Kes,
    Ugx,
    Tzs,
    Rwf,
    Ngn,
    Ghs,
    Zar,
    Usd,
}

impl Currency {
    /// Digits after the decimal point (ISO 4217 minor-unit exponent).
    pub fn exponent(self) -> u32 {
        match self {
            Currency::Ugx | Currency::Rwf => 0,
            _ => 2,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Currency::Kes => "KES",
            Currency::Ugx => "UGX",
            Currency::Tzs => "TZS",
            Currency::Rwf => "RWF",
            Currency::Ngn => "NGN",
            Currency::Ghs => "GHS",
            Currency::Zar => "ZAR",
            Currency::Usd => "USD",
        }
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "KES" => Currency::Kes,
            "UGX" => Currency::Ugx,
            "TZS" => Currency::Tzs,
            "RWF" => Currency::Rwf,
            "NGN" => Currency::Ngn,
            "GHS" => Currency::Ghs,
            "ZAR" => Currency::Zar,
            "USD" => Currency::Usd,
            _ => return Err(MoneyError::UnknownCurrency(s.to_owned())),
        })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
    #[error("cannot split into zero parts")]
    ZeroParts,
}

/// An amount in minor units (cents, or shillings for zero-exponent currencies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(sum, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let diff = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(diff, self.currency))
    }

    /// Splits into `parts` amounts that differ by at most one minor unit and
    /// sum exactly to `self`; the larger parts come first.
    pub fn split_evenly(self, parts: u32) -> Result<Vec<Money>, MoneyError> {
        if parts == 0 {
            return Err(MoneyError::ZeroParts);
        }
        let n = i64::from(parts);
        let base = self.amount_minor.div_euclid(n);
        let remainder = self.amount_minor.rem_euclid(n);
        Ok((0..n)
            .map(|i| Money::new(base + i64::from(i < remainder), self.currency))
            .collect())
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        if exp == 0 {
            return write!(f, "{} {}", self.currency, self.amount_minor);
        }
        let scale = 10i64.pow(exp);
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        let scale = scale.unsigned_abs();
        write!(
            f,
            "{} {sign}{}.{:0width$}",
            self.currency,
            abs / scale,
            abs % scale,
            width = exp as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_with_the_currency_exponent() {
        assert_eq!(
            Money::new(123_456, Currency::Kes).to_string(),
            "KES 1234.56"
        );
        assert_eq!(Money::new(-5, Currency::Kes).to_string(), "KES -0.05");
        assert_eq!(Money::new(150_000, Currency::Ugx).to_string(), "UGX 150000");
    }

    #[test]
    fn refuses_mixed_currencies() {
        let a = Money::new(1, Currency::Kes);
        let b = Money::new(1, Currency::Ugx);
        assert_eq!(
            a.checked_add(b),
            Err(MoneyError::CurrencyMismatch(Currency::Kes, Currency::Ugx))
        );
    }

    proptest! {
        #[test]
        fn split_accounts_for_every_minor_unit(amount in -1_000_000_000_000i64..1_000_000_000_000, parts in 1u32..600) {
            let money = Money::new(amount, Currency::Kes);
            let split = money.split_evenly(parts).unwrap();
            prop_assert_eq!(split.len(), parts as usize);
            prop_assert_eq!(split.iter().map(|m| m.amount_minor).sum::<i64>(), amount);
            let max = split.iter().map(|m| m.amount_minor).max().unwrap();
            let min = split.iter().map(|m| m.amount_minor).min().unwrap();
            prop_assert!(max - min <= 1);
            prop_assert!(split.windows(2).all(|w| w[0].amount_minor >= w[1].amount_minor));
        }

        #[test]
        fn add_then_sub_is_identity(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000) {
            let x = Money::new(a, Currency::Tzs);
            let y = Money::new(b, Currency::Tzs);
            prop_assert_eq!(x.checked_add(y).unwrap().checked_sub(y).unwrap(), x);
        }
    }
}

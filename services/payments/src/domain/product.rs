//! Financing products: the terms a contract is written on. A contract keeps a
//! snapshot of these, so changing or retiring a product never touches a live
//! contract.

use miliki_platform::money::Currency;
use miliki_platform::problem::Validator;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::schedule::{Amortization, Frequency, InterestMethod, Terms};

miliki_platform::string_enum!(
    /// The kinds of vehicle a product finances (the vehicles service's four).
    VehicleType {
        Motorcycle => "motorcycle",
        Car => "car",
        Van => "van",
        Truck => "truck",
    }
);

miliki_platform::string_enum!(
    /// What a payment can pay, in the order a product allocates it.
    Component {
        Penalties => "penalties",
        Fees => "fees",
        Interest => "interest",
        Principal => "principal",
    }
);

impl Component {
    /// Index into per-component arrays.
    pub fn index(self) -> usize {
        match self {
            Component::Penalties => 0,
            Component::Fees => 1,
            Component::Interest => 2,
            Component::Principal => 3,
        }
    }
}

/// The default allocation order.
pub const DEFAULT_ALLOCATION: [Component; 4] = [
    Component::Penalties,
    Component::Fees,
    Component::Interest,
    Component::Principal,
];

/// The late fee charged once per overdue installment after the grace days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LateFeeRule {
    Fixed { amount_minor: i64 },
    PercentOfOverdue { rate_bps: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LateFee {
    #[serde(flatten)]
    pub rule: LateFeeRule,
    pub grace_days: u32,
}

impl LateFee {
    /// The fee for an installment with `overdue_minor` unpaid.
    pub fn amount(&self, overdue_minor: i64) -> i64 {
        match self.rule {
            LateFeeRule::Fixed { amount_minor } => amount_minor,
            LateFeeRule::PercentOfOverdue { rate_bps } => {
                super::schedule::percent_of(overdue_minor, rate_bps).unwrap_or(0)
            }
        }
    }
}

/// A product's terms, as stored and as snapshotted into contracts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductTerms {
    pub name: String,
    pub vehicle_types: Vec<VehicleType>,
    pub currency: Currency,
    pub frequency: Frequency,
    pub term_periods_min: u32,
    pub term_periods_max: u32,
    pub interest_method: InterestMethod,
    pub amortization: Amortization,
    pub annual_rate_bps: u32,
    pub min_deposit_bps: u32,
    pub processing_fee_bps: u32,
    pub late_fee: LateFee,
    pub rounding_minor: i64,
    pub allocation: Vec<Component>,
    /// Whether a payoff waives the interest of installments not yet due.
    pub payoff_waives_future_interest: bool,
}

/// A product as an admin submits it; every field is checked by [`ProductInput::parse`].
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    pub name: Option<String>,
    pub vehicle_types: Option<Vec<String>>,
    pub currency: Option<String>,
    pub frequency: Option<String>,
    pub term_periods_min: Option<i64>,
    pub term_periods_max: Option<i64>,
    pub interest_method: Option<String>,
    pub amortization: Option<String>,
    pub annual_rate_bps: Option<i64>,
    pub min_deposit_bps: Option<i64>,
    pub processing_fee_bps: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub late_fee: Option<serde_json::Value>,
    pub rounding_minor: Option<i64>,
    pub allocation: Option<Vec<String>>,
    pub payoff_waives_future_interest: Option<bool>,
}

/// The longest term any product may offer, in periods (ten years of days).
pub const MAX_TERM_PERIODS: i64 = 3650;

fn bps(v: &mut Validator, field: &str, value: Option<i64>, max: i64) -> Option<u32> {
    match value {
        None => {
            v.error(field, "is required");
            None
        }
        Some(x) if (0..=max).contains(&x) => Some(x as u32),
        Some(_) => {
            v.error(field, format!("must be between 0 and {max} basis points"));
            None
        }
    }
}

impl ProductInput {
    /// The terms, or every field that is wrong.
    pub fn parse(&self) -> Result<ProductTerms, miliki_platform::ApiError> {
        let mut v = Validator::new();
        let name = v.required("name", &self.name).map(str::to_owned);
        if name.as_ref().is_some_and(|n| n.chars().count() > 120) {
            v.error("name", "must be at most 120 characters");
        }
        let vehicle_types = match &self.vehicle_types {
            None => {
                v.error("vehicle_types", "is required");
                None
            }
            Some(list) if list.is_empty() => {
                v.error("vehicle_types", "must name at least one vehicle type");
                None
            }
            Some(list) => {
                let mut out = Vec::new();
                for (i, t) in list.iter().enumerate() {
                    if let Some(t) =
                        v.check(&format!("vehicle_types[{i}]"), t.parse::<VehicleType>())
                    {
                        if !out.contains(&t) {
                            out.push(t);
                        }
                    }
                }
                Some(out)
            }
        };
        let currency = v
            .required("currency", &self.currency)
            .and_then(|c| v.check("currency", c.parse::<Currency>()));
        let frequency = v
            .required("frequency", &self.frequency)
            .and_then(|f| v.check("frequency", f.parse::<Frequency>()));
        let term = |v: &mut Validator, field: &str, value: Option<i64>| match value {
            None => {
                v.error(field, "is required");
                None
            }
            Some(x) if (1..=MAX_TERM_PERIODS).contains(&x) => Some(x as u32),
            Some(_) => {
                v.error(field, format!("must be between 1 and {MAX_TERM_PERIODS}"));
                None
            }
        };
        let min = term(&mut v, "term_periods_min", self.term_periods_min);
        let max = term(&mut v, "term_periods_max", self.term_periods_max);
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                v.error("term_periods_max", "must not be less than term_periods_min");
            }
        }
        let interest_method = v
            .required("interest_method", &self.interest_method)
            .and_then(|m| v.check("interest_method", m.parse::<InterestMethod>()));
        let amortization = match (&self.amortization, interest_method) {
            (None, _) => Some(Amortization::EqualInstallments),
            (Some(a), method) => {
                let parsed = v.check("amortization", a.parse::<Amortization>());
                if parsed == Some(Amortization::EqualPrincipal)
                    && method == Some(InterestMethod::Flat)
                {
                    v.error(
                        "amortization",
                        "equal_principal applies to declining_balance only",
                    );
                }
                parsed
            }
        };
        let annual_rate_bps = bps(&mut v, "annual_rate_bps", self.annual_rate_bps, 100_000);
        let min_deposit_bps = bps(&mut v, "min_deposit_bps", self.min_deposit_bps, 9_999);
        let processing_fee_bps = bps(
            &mut v,
            "processing_fee_bps",
            self.processing_fee_bps.or(Some(0)),
            5_000,
        );
        let late_fee = match &self.late_fee {
            None => Some(LateFee {
                rule: LateFeeRule::Fixed { amount_minor: 0 },
                grace_days: 0,
            }),
            Some(raw) => parse_late_fee(&mut v, raw),
        };
        let rounding_minor = match self.rounding_minor {
            // M-Pesa takes whole shillings.
            None => Some(if currency == Some(Currency::Kes) {
                100
            } else {
                1
            }),
            Some(q) if (1..=1_000_000).contains(&q) => Some(q),
            Some(_) => {
                v.error("rounding_minor", "must be between 1 and 1000000");
                None
            }
        };
        let allocation = match &self.allocation {
            None => Some(DEFAULT_ALLOCATION.to_vec()),
            Some(list) => {
                let mut out = Vec::new();
                for (i, c) in list.iter().enumerate() {
                    if let Some(c) = v.check(&format!("allocation[{i}]"), c.parse::<Component>()) {
                        out.push(c);
                    }
                }
                let mut sorted = out.clone();
                sorted.sort_by_key(|c| c.index());
                sorted.dedup();
                if out.len() == list.len() && (sorted.len() != 4 || out.len() != 4) {
                    v.error(
                        "allocation",
                        "must name penalties, fees, interest and principal once each",
                    );
                }
                Some(out)
            }
        };
        v.finish()?;
        match (
            name,
            vehicle_types,
            currency,
            frequency,
            min,
            max,
            interest_method,
            amortization,
            annual_rate_bps,
            min_deposit_bps,
            processing_fee_bps,
            late_fee,
            rounding_minor,
            allocation,
        ) {
            (
                Some(name),
                Some(vehicle_types),
                Some(currency),
                Some(frequency),
                Some(term_periods_min),
                Some(term_periods_max),
                Some(interest_method),
                Some(amortization),
                Some(annual_rate_bps),
                Some(min_deposit_bps),
                Some(processing_fee_bps),
                Some(late_fee),
                Some(rounding_minor),
                Some(allocation),
            ) => Ok(ProductTerms {
                name,
                vehicle_types,
                currency,
                frequency,
                term_periods_min,
                term_periods_max,
                interest_method,
                amortization,
                annual_rate_bps,
                min_deposit_bps,
                processing_fee_bps,
                late_fee,
                rounding_minor,
                allocation,
                payoff_waives_future_interest: self.payoff_waives_future_interest.unwrap_or(false),
            }),
            _ => Err(miliki_platform::ApiError::field("body", "is incomplete")),
        }
    }
}

fn parse_late_fee(v: &mut Validator, raw: &serde_json::Value) -> Option<LateFee> {
    let Some(obj) = raw.as_object() else {
        v.error("late_fee", "must be an object");
        return None;
    };
    let grace_days = match obj.get("grace_days") {
        None => Some(0),
        Some(g) => match g.as_u64() {
            Some(d) if d <= 365 => Some(d as u32),
            _ => {
                v.error(
                    "late_fee.grace_days",
                    "must be a whole number of days, 0 to 365",
                );
                None
            }
        },
    };
    let rule = match obj.get("kind").and_then(|k| k.as_str()) {
        Some("fixed") => match obj.get("amount_minor").and_then(|a| a.as_i64()) {
            Some(a) if (0..=1_000_000_000).contains(&a) => {
                Some(LateFeeRule::Fixed { amount_minor: a })
            }
            _ => {
                v.error(
                    "late_fee.amount_minor",
                    "is required for a fixed fee: a whole number of minor units, 0 or more",
                );
                None
            }
        },
        Some("percent_of_overdue") => match obj.get("rate_bps").and_then(|a| a.as_i64()) {
            Some(r) if (0..=10_000).contains(&r) => {
                Some(LateFeeRule::PercentOfOverdue { rate_bps: r as u32 })
            }
            _ => {
                v.error(
                    "late_fee.rate_bps",
                    "is required for a percentage fee: 0 to 10000 basis points",
                );
                None
            }
        },
        _ => {
            v.error("late_fee.kind", "must be fixed or percent_of_overdue");
            None
        }
    };
    Some(LateFee {
        rule: rule?,
        grace_days: grace_days?,
    })
}

impl ProductTerms {
    /// The schedule terms for a principal and term on this product.
    pub fn terms(&self, principal_minor: i64, periods: u32) -> Terms {
        Terms {
            principal_minor,
            annual_rate_bps: self.annual_rate_bps,
            periods,
            frequency: self.frequency,
            method: self.interest_method,
            amortization: self.amortization,
            rounding_minor: self.rounding_minor,
        }
    }
}

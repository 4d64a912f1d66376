//! The words of the credit service: application statuses, features, offers
//! and their conditions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::quotes::Quote;

miliki_platform::string_enum!(
    /// Where an application stands.
    ApplicationStatus {
        ManualReview => "manual_review",
        Approved => "approved",
        ConditionallyApproved => "conditionally_approved",
        Declined => "declined",
        Accepted => "accepted",
        Lapsed => "lapsed",
    }
);

impl ApplicationStatus {
    /// Whether the application still holds its reservation (one open per reservation).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::ManualReview | Self::Approved | Self::ConditionallyApproved | Self::Accepted
        )
    }

    /// Whether an offer stands that the customer may accept.
    pub fn has_offer(self) -> bool {
        matches!(self, Self::Approved | Self::ConditionallyApproved)
    }
}

miliki_platform::string_enum!(
    /// What the applicant does for a living.
    Occupation {
        BodaRider => "boda_rider",
        TaxiDriver => "taxi_driver",
        DeliveryRider => "delivery_rider",
        Trader => "trader",
        TransportBusiness => "transport_business",
        Salaried => "salaried",
        Other => "other",
    }
);

miliki_platform::string_enum!(
    /// How often the declared income comes.
    IncomeFrequency {
        Daily => "daily",
        Weekly => "weekly",
        Monthly => "monthly",
    }
);

impl IncomeFrequency {
    pub fn monthly(self, amount_minor: i64) -> i64 {
        let per_year: i128 = match self {
            Self::Daily => 365,
            Self::Weekly => 52,
            Self::Monthly => 12,
        };
        (i128::from(amount_minor) * per_year / 12).min(i128::from(i64::MAX)) as i64
    }
}

/// Every feature value computed for an application (integers: money in
/// minor units, ratios in basis points), with the plain-words detail of each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Features {
    pub values: BTreeMap<String, Option<i64>>,
    pub details: BTreeMap<String, String>,
    /// The monthly income affordability was measured against, and where it came from.
    pub income_monthly_minor: i64,
    /// `statement` or `declared` (after the haircut).
    pub income_source: String,
}

impl Features {
    pub fn set(&mut self, name: &str, value: Option<i64>, detail: Option<String>) {
        self.values.insert(name.to_owned(), value);
        if let Some(d) = detail {
            self.details.insert(name.to_owned(), d);
        }
    }

    pub fn get(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied().flatten()
    }
}

miliki_platform::string_enum!(
    /// A condition that would make a conditional offer acceptable.
    ConditionKind {
        HigherDeposit => "higher_deposit",
        LongerTerm => "longer_term",
        Guarantor => "guarantor",
    }
);

/// One way to meet a conditional offer; any one of the listed conditions will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = OfferCondition)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub kind: ConditionKind,
    /// For `higher_deposit`: the deposit that makes it acceptable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit_minor: Option<i64>,
    /// For `longer_term`: the term that makes it acceptable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_periods: Option<i64>,
    /// The installment under this condition, when a quote was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installment_minor: Option<i64>,
    pub description: String,
}

/// What the customer is offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Offer {
    pub product_id: Uuid,
    pub currency: String,
    pub price_minor: i64,
    pub deposit_minor: i64,
    pub term_periods: i64,
    /// The plan as applied for, quoted by the payments service; absent when
    /// payments could not be reached.
    pub quote: Option<Quote>,
    /// Alternatives: meeting any one makes the offer acceptable. Empty for `approved`.
    pub conditions: Vec<Condition>,
}

/// The terms an offer was accepted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AcceptedTerms {
    pub deposit_minor: i64,
    pub term_periods: i64,
    pub quote: Quote,
    pub condition_met: Option<ConditionKind>,
    pub accepted_by: Uuid,
    pub accepted_at: DateTime<Utc>,
}

/// A guarantor, as given (stored sealed; shown masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Guarantor {
    pub name: String,
    pub phone: String,
    pub national_id: String,
}

/// One state change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Transition {
    #[serde(skip)]
    pub application_id: Uuid,
    pub from: Option<ApplicationStatus>,
    pub to: ApplicationStatus,
    /// Who made it; absent when the system did (a decision, a lapse).
    pub actor_id: Option<Uuid>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

//! HTTP handlers and the views they share.

pub mod applications;
pub mod scores;

use base64::Engine;
use chrono::{DateTime, Utc};
use miliki_platform::contact::PhoneNumber;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{AcceptedTerms, ApplicationStatus, Features, Guarantor, Offer, Transition};
use crate::model::Score;
use crate::state::AppState;
use crate::statement::StatementSummary;
use crate::store::ApplicationRecord;

/// The keyring field guarantors are sealed under.
pub const GUARANTOR_FIELD: &str = "credit.applications.guarantor";

pub fn seal_guarantor(state: &AppState, g: &Guarantor) -> String {
    let json = serde_json::to_string(g).unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .encode(state.deps.keyring.encrypt_str(GUARANTOR_FIELD, &json))
}

pub fn open_guarantor(state: &AppState, sealed: &str) -> Option<Guarantor> {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    let json = state
        .deps
        .keyring
        .decrypt_string(GUARANTOR_FIELD, &blob)
        .ok()?;
    serde_json::from_str(&json).ok()
}

/// A guarantor as shown: the name and a masked phone, never the ID number.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuarantorView {
    pub name: String,
    pub phone: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Income {
    pub declared_minor: i64,
    pub frequency: String,
}

/// An application.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApplicationView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub submitted_by: Uuid,
    pub vehicle_id: Uuid,
    pub reservation_id: Uuid,
    pub product_id: Uuid,
    pub currency: String,
    pub price_minor: i64,
    pub deposit_minor: i64,
    pub term_periods: i64,
    pub occupation: String,
    pub income: Income,
    pub guarantor: Option<GuarantorView>,
    /// What the statement showed, if one was given.
    pub statement: Option<StatementSummary>,
    pub status: ApplicationStatus,
    pub features: Features,
    pub score: Option<Score>,
    pub offer: Option<Offer>,
    pub accepted: Option<AcceptedTerms>,
    /// Every state change, with who and why (on a single application).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Transition>>,
    /// The approved upgrade whose equity pays the deposit, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<crate::upgrades::UpgradeGrant>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ApplicationView {
    pub fn new(state: &AppState, a: &ApplicationRecord, history: Option<Vec<Transition>>) -> Self {
        Self {
            id: a.id,
            customer_id: a.customer_id,
            submitted_by: a.submitted_by,
            vehicle_id: a.vehicle_id,
            reservation_id: a.reservation_id,
            product_id: a.product_id,
            currency: a.currency.clone(),
            price_minor: a.price_minor,
            deposit_minor: a.deposit_minor,
            term_periods: a.term_periods,
            occupation: a.occupation.clone(),
            income: Income {
                declared_minor: a.income_declared_minor,
                frequency: a.income_frequency.clone(),
            },
            guarantor: a
                .guarantor_sealed
                .as_deref()
                .and_then(|s| open_guarantor(state, s))
                .map(|g| GuarantorView {
                    phone: PhoneNumber::parse(&g.phone, "KE")
                        .map(|p| p.masked())
                        .unwrap_or_else(|_| "***".into()),
                    name: g.name,
                }),
            statement: a.statement.clone(),
            status: a.status,
            features: a.features.clone(),
            score: a.score.clone(),
            offer: a.offer.clone(),
            accepted: a.accepted.clone(),
            history,
            upgrade: None,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

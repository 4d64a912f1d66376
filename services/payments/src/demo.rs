//! `serve --demo`: realistic financing products, added once.
// Amounts are written as shillings_cents (200_00 is KES 200.00).
#![allow(clippy::inconsistent_digit_grouping)]

use miliki_platform::ApiError;
use serde_json::json;

use crate::domain::product::ProductInput;
use crate::state::AppState;
use crate::store;

/// The demo products, as an admin would submit them.
fn demo_products() -> Vec<serde_json::Value> {
    vec![
        json!({
            "name": "Boda-boda weekly (78 weeks)",
            "vehicle_types": ["motorcycle"], "currency": "KES", "frequency": "weekly",
            "term_periods_min": 52, "term_periods_max": 104,
            "interest_method": "flat", "annual_rate_bps": 3000,
            "min_deposit_bps": 1500, "processing_fee_bps": 200,
            "late_fee": {"kind": "fixed", "amount_minor": 200_00, "grace_days": 2}
        }),
        json!({
            "name": "Boda-boda daily",
            "vehicle_types": ["motorcycle"], "currency": "KES", "frequency": "daily",
            "term_periods_min": 180, "term_periods_max": 730,
            "interest_method": "declining_balance", "amortization": "equal_installments",
            "annual_rate_bps": 3600, "min_deposit_bps": 1000, "processing_fee_bps": 150,
            "late_fee": {"kind": "fixed", "amount_minor": 50_00, "grace_days": 1}
        }),
        json!({
            "name": "Ride-hailing car monthly",
            "vehicle_types": ["car", "van"], "currency": "KES", "frequency": "monthly",
            "term_periods_min": 12, "term_periods_max": 48,
            "interest_method": "declining_balance", "amortization": "equal_installments",
            "annual_rate_bps": 1800, "min_deposit_bps": 2000, "processing_fee_bps": 100,
            "late_fee": {"kind": "percent_of_overdue", "rate_bps": 500, "grace_days": 5},
            "payoff_waives_future_interest": true
        }),
        json!({
            "name": "Truck monthly, equal principal",
            "vehicle_types": ["truck"], "currency": "KES", "frequency": "monthly",
            "term_periods_min": 12, "term_periods_max": 60,
            "interest_method": "declining_balance", "amortization": "equal_principal",
            "annual_rate_bps": 1500, "min_deposit_bps": 2500, "processing_fee_bps": 100,
            "late_fee": {"kind": "percent_of_overdue", "rate_bps": 300, "grace_days": 7}
        }),
    ]
}

/// Adds the demo products not already there (by name). Returns how many were added.
pub async fn seed_demo(state: &AppState) -> Result<usize, ApiError> {
    let deps = &state.deps;
    let existing = store::list_products(deps.db.reader(), None, None, 1000).await?;
    let mut added = 0;
    for raw in demo_products() {
        let input: ProductInput = serde_json::from_value(raw).map_err(ApiError::internal)?;
        let terms = input.parse()?;
        if existing.iter().any(|p| p.terms.name == terms.name) {
            continue;
        }
        let mut conn = deps.db.writer().acquire().await?;
        store::insert_product(
            &mut conn,
            miliki_platform::id::new_id(),
            &terms,
            uuid::Uuid::nil(),
            deps.clock.now(),
        )
        .await?;
        added += 1;
    }
    Ok(added)
}

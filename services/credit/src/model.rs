//! The scorecard: a versioned points model loaded from TOML (the default
//! ships in `model/scorecard.toml`, whose comments give its rationale).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The model the repository ships.
pub const DEFAULT_MODEL: &str = include_str!("../model/scorecard.toml");

/// Every feature the service computes; a model may score any subset of them.
pub const FEATURES: &[&str] = &[
    "kyc_age_days",
    "agent_onboarded",
    "monthly_inflow_minor",
    "inflow_regularity_bps",
    "avg_balance_minor",
    "distinct_payers",
    "betting_share_bps",
    "failed_transactions",
    "on_time_ratio_bps",
    "worst_days_past_due",
    "contracts_completed",
    "current_arrears_days",
    "risk_events_per_30_days_x100",
    "affordability_bps",
    "guarantor",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    pub base_score: f64,
    pub base_odds: f64,
    pub pdo: f64,
}

impl Scaling {
    /// pdo / ln 2: points per unit of ln(odds).
    pub fn factor(&self) -> f64 {
        self.pdo / std::f64::consts::LN_2
    }

    /// base_score − factor · ln(base_odds).
    pub fn offset(&self) -> f64 {
        self.base_score - self.factor() * self.base_odds.ln()
    }

    /// The odds of repaying a score stands for: exp((score − offset) / factor).
    pub fn odds(&self, score: i64) -> f64 {
        ((score as f64 - self.offset()) / self.factor()).exp()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub name: String,
    pub min: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bin {
    /// Values under this fall in the bin; the last bin has none.
    pub below: Option<i64>,
    pub points: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureModel {
    pub name: String,
    pub label: String,
    /// The plain-words reason when this feature costs points.
    pub reason: String,
    /// What would raise the points of this feature.
    pub advice: String,
    pub missing: i64,
    pub bins: Vec<Bin>,
}

impl FeatureModel {
    pub fn points(&self, value: Option<i64>) -> i64 {
        match value {
            None => self.missing,
            Some(v) => self
                .bins
                .iter()
                .find(|b| b.below.is_none_or(|below| v < below))
                .map(|b| b.points)
                .unwrap_or(self.missing),
        }
    }

    pub fn best(&self) -> i64 {
        self.bins
            .iter()
            .map(|b| b.points)
            .chain([self.missing])
            .max()
            .unwrap_or(0)
    }
}

/// The decision policy's thresholds, versioned with the model they read.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub approve_score: i64,
    pub floor_score: i64,
    pub max_affordability_bps: i64,
    pub declared_income_haircut_bps: i64,
    pub conflicting_income_ratio_bps: i64,
    pub decline_arrears_days: i64,
    pub conditional_deposit_bps: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub version: String,
    /// The currency the model's money bins are written in; money features of
    /// an application in another currency count as missing.
    pub currency: String,
    pub base_points: i64,
    pub scaling: Scaling,
    pub bands: Vec<Band>,
    pub policy: Policy,
    pub features: Vec<FeatureModel>,
}

/// One feature's contribution to a score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeaturePoints {
    pub feature: String,
    pub value: Option<i64>,
    pub points: i64,
    /// The most this feature can earn.
    pub max_points: i64,
}

/// A principal reason: a feature that cost points, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    pub feature: String,
    /// Points below the feature's best.
    pub cost: i64,
    pub text: String,
}

/// A computed score, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Score {
    pub score: i64,
    pub band: String,
    pub model_version: String,
    /// The odds of repaying this score stands for (`good : 1`).
    pub odds: f64,
    pub base_points: i64,
    pub points: Vec<FeaturePoints>,
    /// Up to four features that cost the most points.
    pub reasons: Vec<Reason>,
    /// What would raise it: the advice of the costliest features.
    pub improvements: Vec<String>,
}

impl Model {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let model: Model =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("the credit model: {e}"))?;
        model.validate()?;
        Ok(model)
    }

    pub fn default_model() -> Self {
        // The shipped model is checked by a unit test; failing here is a build bug.
        Self::parse(DEFAULT_MODEL).expect("the shipped credit model parses")
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.version.trim().is_empty() {
            anyhow::bail!("the credit model needs a version");
        }
        if !(self.scaling.pdo > 0.0 && self.scaling.base_odds > 0.0) {
            anyhow::bail!("the credit model's pdo and base_odds must be positive");
        }
        if self.bands.is_empty() || self.bands.windows(2).any(|w| w[0].min <= w[1].min) {
            anyhow::bail!("the credit model's bands must be listed highest first");
        }
        let p = &self.policy;
        if p.floor_score > p.approve_score {
            anyhow::bail!("the policy's floor_score is above its approve_score");
        }
        for f in &self.features {
            if !FEATURES.contains(&f.name.as_str()) {
                anyhow::bail!("the credit model scores an unknown feature {:?}", f.name);
            }
            let Some((last, rest)) = f.bins.split_last() else {
                anyhow::bail!("feature {:?} has no bins", f.name);
            };
            if last.below.is_some() || rest.iter().any(|b| b.below.is_none()) {
                anyhow::bail!(
                    "feature {:?}: only the last bin may (and must) lack `below`",
                    f.name
                );
            }
            let bounds: Vec<i64> = rest.iter().filter_map(|b| b.below).collect();
            if bounds.windows(2).any(|w| w[0] >= w[1]) {
                anyhow::bail!("feature {:?}: bins must increase", f.name);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if !self.features.iter().all(|f| seen.insert(&f.name)) {
            anyhow::bail!("the credit model lists a feature twice");
        }
        Ok(())
    }

    pub fn band(&self, score: i64) -> String {
        self.bands
            .iter()
            .find(|b| score >= b.min)
            .or(self.bands.last())
            .map(|b| b.name.clone())
            .unwrap_or_default()
    }

    /// Scores `values`; `describe` gives the plain words of a feature's value.
    pub fn score(
        &self,
        values: &BTreeMap<String, Option<i64>>,
        describe: impl Fn(&str) -> Option<String>,
    ) -> Score {
        let mut total = self.base_points;
        let mut points = Vec::with_capacity(self.features.len());
        for f in &self.features {
            let value = values.get(&f.name).copied().flatten();
            let p = f.points(value);
            total += p;
            points.push(FeaturePoints {
                feature: f.name.clone(),
                value,
                points: p,
                max_points: f.best(),
            });
        }
        let mut costly: Vec<(&FeatureModel, &FeaturePoints)> = self
            .features
            .iter()
            .zip(&points)
            .filter(|(_, p)| p.value.is_some() && p.max_points > p.points)
            .collect();
        // Reasons come from evidence: a feature with no value (no statement,
        // no history yet) is not held against anyone as a reason.
        // The costliest first; ties keep the model's order.
        costly.sort_by_key(|(_, p)| std::cmp::Reverse(p.max_points - p.points));
        costly.truncate(4);
        let reasons = costly
            .iter()
            .map(|(f, p)| Reason {
                feature: f.name.clone(),
                cost: p.max_points - p.points,
                text: match describe(&f.name) {
                    Some(d) => format!("{}: {d}", f.reason),
                    None => f.reason.clone(),
                },
            })
            .collect();
        let improvements = costly
            .iter()
            .map(|(f, p)| format!("{} (up to +{} points)", f.advice, p.max_points - p.points))
            .collect();
        Score {
            score: total,
            band: self.band(total),
            model_version: self.version.clone(),
            odds: (self.scaling.odds(total) * 100.0).round() / 100.0,
            base_points: self.base_points,
            points,
            reasons,
            improvements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_parses_and_scores_every_feature() {
        let m = Model::default_model();
        assert_eq!(m.features.len(), FEATURES.len());
        // factor = 20 / ln 2, offset = 600 − factor · ln 30.
        assert!((m.scaling.factor() - 28.853_900_817_779_27).abs() < 1e-9);
        assert!((m.scaling.offset() - 501.862_188_287_707_6).abs() < 1e-6);
        assert!((m.scaling.odds(600) - 30.0).abs() < 1e-9);
        assert!((m.scaling.odds(620) - 60.0).abs() < 1e-9);
    }

    #[test]
    fn bins_are_taken_by_their_upper_bound() {
        let m = Model::default_model();
        let f = m
            .features
            .iter()
            .find(|f| f.name == "inflow_regularity_bps")
            .unwrap();
        assert_eq!(f.points(Some(3999)), 0);
        assert_eq!(f.points(Some(4000)), 15);
        assert_eq!(f.points(Some(10_000)), 50);
        assert_eq!(f.points(None), 0);
        assert_eq!(f.best(), 50);
    }

    #[test]
    fn broken_models_are_refused() {
        let good = DEFAULT_MODEL;
        assert!(
            Model::parse(&good.replace("name = \"guarantor\"", "name = \"shoe_size\"")).is_err()
        );
        assert!(Model::parse(&good.replace("floor_score = 560", "floor_score = 700")).is_err());
        assert!(Model::parse(
            &good.replace("{ below = 30, points = 0 }", "{ below = 400, points = 0 }")
        )
        .is_err());
        assert!(Model::parse("version = 1").is_err());
    }
}

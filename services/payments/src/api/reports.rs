//! Reports for admins: the portfolio at risk, and collections per day.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::NaiveDate;
use miliki_platform::auth::Role;
use miliki_platform::db::RowExt;
use miliki_platform::http::{Json, Query};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::state::{AppState, Caller};
use crate::store::{date_text, parse_date};

#[derive(Debug, Deserialize, IntoParams)]
pub struct PortfolioParams {
    /// The date installments are aged against (default today). Payments are
    /// counted as they stand now.
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Par {
    /// Outstanding principal of contracts at least `days` past due.
    pub days: i64,
    pub amount_minor: i64,
    /// Of all outstanding principal, as a decimal string (e.g. "0.0425").
    pub ratio: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BucketFigures {
    pub bucket: String,
    pub contracts: i64,
    pub outstanding_principal_minor: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrencyPortfolio {
    pub currency: String,
    pub active_contracts: i64,
    pub outstanding_principal_minor: i64,
    pub par: Vec<Par>,
    pub buckets: Vec<BucketFigures>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Portfolio {
    pub as_of: NaiveDate,
    pub currencies: Vec<CurrencyPortfolio>,
}

fn ratio(part: i64, whole: i64) -> String {
    if whole == 0 {
        return "0".into();
    }
    let r = rust_decimal::Decimal::from(part) / rust_decimal::Decimal::from(whole);
    r.round_dp(4).normalize().to_string()
}

fn parse_day(v: &mut Validator, field: &str, raw: Option<&str>) -> Option<NaiveDate> {
    raw.and_then(|s| {
        v.check(
            field,
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a date like 2026-03-02"),
        )
    })
}

/// Per currency: contracts, outstanding principal, PAR amounts, and per bucket (count, principal).
type Tally = (i64, i64, [i64; 4], BTreeMap<String, (i64, i64)>);

/// The portfolio: live contracts, outstanding principal, PAR 1/7/30/90 and buckets.
#[utoipa::path(get, path = "/api/v1/reports/portfolio", tag = "reports", security(("bearer" = [])),
    params(PortfolioParams),
    responses((status = 200, body = Portfolio), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn portfolio(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<PortfolioParams>,
) -> Result<Json<Portfolio>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let as_of =
        parse_day(&mut v, "as_of", params.as_of.as_deref()).unwrap_or_else(|| state.today());
    v.finish()?;
    let rows = sqlx::query(
        "SELECT c.id, c.currency, c.status, c.days_past_due, \
         MIN(CASE WHEN i.number > 0 AND i.due_date < $1 AND \
           (i.penalties_due + i.fees_due + i.interest_due + i.principal_due) > \
           (i.penalties_paid + i.fees_paid + i.interest_paid + i.principal_paid + \
            i.penalties_waived + i.fees_waived + i.interest_waived + i.principal_waived) \
           THEN i.due_date END) AS oldest, \
         CAST(SUM(CASE WHEN i.number > 0 THEN i.principal_due - i.principal_paid - i.principal_waived ELSE 0 END) AS BIGINT) AS principal \
         FROM contracts c JOIN installments i ON i.contract_id = c.id \
         WHERE c.status IN ('active', 'paused', 'defaulted') \
         GROUP BY c.id, c.currency, c.status, c.days_past_due",
    )
    .bind(date_text(as_of))
    .fetch_all(state.deps.db.reader())
    .await?;
    let buckets = state.config.buckets();
    let mut by_currency: BTreeMap<String, Tally> = BTreeMap::new();
    for r in rows {
        let currency: String = r.try_get("currency")?;
        let status: String = r.try_get("status")?;
        let principal: i64 = r.try_get("principal")?;
        let dpd = if status == "paused" {
            r.try_get::<i64, _>("days_past_due")?
        } else {
            match r.try_get::<Option<String>, _>("oldest")? {
                Some(d) => (as_of - parse_date(&d)?).num_days(),
                None => 0,
            }
        };
        let _ = r.uuid("id")?;
        let e = by_currency.entry(currency).or_default();
        e.0 += 1;
        e.1 += principal;
        for (i, days) in [1, 7, 30, 90].iter().enumerate() {
            if dpd >= *days {
                e.2[i] += principal;
            }
        }
        let b = e.3.entry(state.config.bucket(dpd)).or_default();
        b.0 += 1;
        b.1 += principal;
    }
    let currencies = by_currency
        .into_iter()
        .map(
            |(currency, (count, principal, par, per_bucket))| CurrencyPortfolio {
                currency,
                active_contracts: count,
                outstanding_principal_minor: principal,
                par: [1, 7, 30, 90]
                    .iter()
                    .zip(par)
                    .map(|(days, amount)| Par {
                        days: *days,
                        amount_minor: amount,
                        ratio: ratio(amount, principal),
                    })
                    .collect(),
                buckets: buckets
                    .iter()
                    .map(|b| {
                        let (n, amount) = per_bucket.get(b).copied().unwrap_or((0, 0));
                        BucketFigures {
                            bucket: b.clone(),
                            contracts: n,
                            outstanding_principal_minor: amount,
                        }
                    })
                    .collect(),
            },
        )
        .collect();
    Ok(Json(Portfolio { as_of, currencies }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CollectionsParams {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectionDay {
    pub date: NaiveDate,
    pub currency: String,
    /// What fell due that day (installments and deposits, with their fees and penalties).
    pub due_minor: i64,
    /// Payments received that day and not reversed.
    pub collected_minor: i64,
    /// Collected over due, as a decimal string; absent when nothing was due.
    pub collection_rate: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Collections {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<CollectionDay>,
}

/// The longest range the collections report covers.
pub const MAX_RANGE_DAYS: i64 = 366;

/// Collections per day: due, collected, collection rate.
#[utoipa::path(get, path = "/api/v1/reports/collections", tag = "reports", security(("bearer" = [])),
    params(CollectionsParams),
    responses((status = 200, body = Collections), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn collections(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<CollectionsParams>,
) -> Result<Json<Collections>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let today = state.today();
    let from = parse_day(&mut v, "from", params.from.as_deref());
    let to = parse_day(&mut v, "to", params.to.as_deref());
    if params.from.is_none() {
        v.error("from", "is required");
    }
    let to = to.unwrap_or(today);
    if let Some(f) = from {
        if f > to {
            v.error("to", "must not be before from");
        } else if (to - f).num_days() >= MAX_RANGE_DAYS {
            v.error(
                "to",
                format!("the range may cover at most {MAX_RANGE_DAYS} days"),
            );
        }
    }
    v.finish()?;
    let from = from.unwrap_or(today);
    let due_rows = sqlx::query(
        "SELECT i.due_date AS day, c.currency, CAST(SUM(i.penalties_due + i.fees_due + i.interest_due + i.principal_due) AS BIGINT) AS amount \
         FROM installments i JOIN contracts c ON c.id = i.contract_id \
         WHERE i.due_date >= $1 AND i.due_date <= $2 AND c.status <> 'cancelled' \
         AND (i.number > 0 OR c.status <> 'pending_deposit') \
         GROUP BY i.due_date, c.currency",
    )
    .bind(date_text(from))
    .bind(date_text(to))
    .fetch_all(state.deps.db.reader())
    .await?;
    let paid_rows = sqlx::query(
        "SELECT local_date AS day, currency, CAST(SUM(amount_minor) AS BIGINT) AS amount FROM payments \
         WHERE local_date >= $1 AND local_date <= $2 AND status = 'received' GROUP BY local_date, currency",
    )
    .bind(date_text(from))
    .bind(date_text(to))
    .fetch_all(state.deps.db.reader())
    .await?;
    let mut days: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for r in due_rows {
        let key = (
            r.try_get::<String, _>("day")?,
            r.try_get::<String, _>("currency")?,
        );
        days.entry(key).or_default().0 += r.try_get::<i64, _>("amount")?;
    }
    for r in paid_rows {
        let key = (
            r.try_get::<String, _>("day")?,
            r.try_get::<String, _>("currency")?,
        );
        days.entry(key).or_default().1 += r.try_get::<i64, _>("amount")?;
    }
    let days = days
        .into_iter()
        .map(|((day, currency), (due, collected))| {
            Ok(CollectionDay {
                date: parse_date(&day)?,
                currency,
                due_minor: due,
                collected_minor: collected,
                collection_rate: (due > 0).then(|| ratio(collected, due)),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(Collections { from, to, days }))
}

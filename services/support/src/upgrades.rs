//! Upgrade requests: a customer in good standing asks to move from the
//! vehicle under contract to a bigger one, carrying their equity over.
//!
//! Eligibility is worked out when the request is made, and again when an
//! admin decides it, from the payments service's contract and the vehicles
//! service's listing (asked over HTTP on the caller's behalf, so their own
//! rules on who may see what apply) and the credit band this service keeps
//! from `credit.score.changed.v1`. Each check is shown with its reason.
//!
//! The trade-in value is the old vehicle's price less straight-line
//! depreciation per month since the contract started, never below a floor;
//! the equity is that value less what the contract still owes (principal,
//! fees, penalties; interest not yet due is never owed on a trade-in) plus
//! any credit waiting on it. An approval (`support.upgrade.decided.v1`)
//! lets a credit application for the desired vehicle carry that equity as
//! its deposit; when its contract activates, payments closes the old one as
//! `upgraded` (`payments.contract.upgraded.v1`) and the request is completed.
//!
//! States: `ineligible` (recorded with the failed checks; nothing to
//! decide), `pending_review` → `approved` → `completed`, `pending_review` →
//! `declined`, `pending_review` → `cancelled` by the customer, and
//! `approved` → `expired` when no trade-in followed within
//! `MILIKI_UPGRADE_APPROVAL_DAYS` (credit then refuses to carry it).
//! Every change is kept with who made it and why.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use miliki_events::catalogue::support::UpgradeDecided;
use miliki_events::standing;
use miliki_platform::auth::Role;
use miliki_platform::clock::{from_micros, to_micros};
use miliki_platform::config::Settings;
use miliki_platform::db::{FilteredQuery, RowExt, Tx};
use miliki_platform::http::{created, Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::string_enum;
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::state::{extra_u64, AppState, Caller};

// ---------------------------------------------------------------- rules

/// Who may upgrade and what a trade-in is worth (`MILIKI_UPGRADE_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// The share of the contract's total payable already paid, in basis points.
    pub min_paid_bps: i64,
    /// Credit bands that may upgrade.
    pub bands: Vec<String>,
    /// Straight-line depreciation of the old vehicle's price per month.
    pub depreciation_bps_per_month: i64,
    /// The trade-in value never falls below this share of the price.
    pub residual_floor_bps: i64,
    /// The operator's calendar (`MILIKI_TIME_ZONE`), in which contracts start.
    pub time_zone: chrono_tz::Tz,
    /// How long an approval may wait to be carried into an application.
    pub approval_valid: chrono::Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            min_paid_bps: 3_000,
            bands: vec!["A".into(), "B".into(), "C".into()],
            depreciation_bps_per_month: 150,
            residual_floor_bps: 3_000,
            time_zone: chrono_tz::Africa::Nairobi,
            approval_valid: chrono::Duration::days(30),
        }
    }
}

impl Rules {
    pub fn from_settings(settings: &Settings) -> Self {
        let d = Rules::default();
        let bps = |key: &str, default: i64| {
            extra_u64(settings, key, default as u64).clamp(0, 10_000) as i64
        };
        let bands = match settings.extra.get("upgrade_bands") {
            Some(serde_json::Value::String(s)) => s
                .split(',')
                .map(|b| b.trim().to_owned())
                .filter(|b| !b.is_empty())
                .collect(),
            _ => d.bands.clone(),
        };
        Self {
            min_paid_bps: bps("upgrade_min_paid_bps", d.min_paid_bps),
            bands,
            depreciation_bps_per_month: bps(
                "upgrade_depreciation_bps_per_month",
                d.depreciation_bps_per_month,
            ),
            residual_floor_bps: bps("upgrade_residual_floor_bps", d.residual_floor_bps),
            time_zone: match settings.extra.get("time_zone") {
                Some(serde_json::Value::String(name)) => name.parse().unwrap_or(d.time_zone),
                _ => d.time_zone,
            },
            approval_valid: chrono::Duration::days(
                extra_u64(settings, "upgrade_approval_days", 30).clamp(1, 365) as i64,
            ),
        }
    }
}

/// What the eligibility rules read of the contract (from payments).
#[derive(Debug, Clone, Deserialize)]
pub struct ContractFacts {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub status: String,
    pub currency: String,
    pub price_minor: i64,
    pub total_payable_minor: i64,
    pub start_date: Option<NaiveDate>,
    pub days_past_due: i64,
    pub balances: Balances,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Balances {
    pub outstanding_principal_minor: i64,
    pub outstanding_fees_minor: i64,
    pub outstanding_penalties_minor: i64,
    pub credit_minor: i64,
    pub paid_to_date_minor: i64,
}

/// What the rules read of the desired vehicle (from vehicles).
#[derive(Debug, Clone, Deserialize)]
pub struct VehicleFacts {
    pub id: Uuid,
    pub status: String,
    pub price_minor: i64,
    pub currency: String,
    #[serde(default)]
    pub held_by: Option<Uuid>,
    #[serde(default)]
    pub held_by_you: bool,
}

/// One eligibility rule and how the request fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// `contract_active`, `paid_share`, `days_past_due`, `credit_band`,
    /// `vehicle_available`, `bigger_vehicle`, `equity`.
    pub code: String,
    pub met: bool,
    /// Why, in plain words.
    pub detail: String,
}

/// Eligibility and equity, as worked out at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Assessment {
    pub eligible: bool,
    pub checks: Vec<Check>,
    pub currency: String,
    /// Paid on the contract (deposit, fee, installments, waiting credit).
    pub paid_minor: i64,
    pub total_payable_minor: i64,
    /// `paid_minor` as a share of the total payable, in basis points.
    pub paid_share_bps: i64,
    pub days_past_due: i64,
    pub credit_band: Option<String>,
    pub old_price_minor: i64,
    /// Whole days since the contract started.
    pub days_under_contract: i64,
    pub depreciation_bps: i64,
    pub trade_in_value_minor: i64,
    /// Principal, fees and penalties still owed.
    pub owed_minor: i64,
    pub credit_minor: i64,
    /// `trade_in_value − owed + credit`: the deposit the upgrade carries.
    pub equity_minor: i64,
    pub desired_price_minor: i64,
    pub assessed_at: DateTime<Utc>,
}

fn check(code: &str, met: bool, detail: String) -> Check {
    Check {
        code: code.to_owned(),
        met,
        detail,
    }
}

fn pct(bps: i64) -> String {
    format!("{}.{:02}%", bps / 100, bps % 100)
}

/// Applies `rules` to the facts. Pure: the same facts give the same answer.
pub fn assess(
    rules: &Rules,
    contract: &ContractFacts,
    vehicle: Option<&VehicleFacts>,
    band: Option<&str>,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Assessment {
    let b = &contract.balances;
    let paid = b.paid_to_date_minor + b.credit_minor;
    let paid_share_bps = if contract.total_payable_minor > 0 {
        (i128::from(paid) * 10_000 / i128::from(contract.total_payable_minor)) as i64
    } else {
        0
    };
    let days = contract
        .start_date
        .map(|s| (today - s).num_days().max(0))
        .unwrap_or(0);
    // Per month of 365/12 days, to the day.
    let depreciation_bps = ((i128::from(rules.depreciation_bps_per_month) * i128::from(days) * 12
        / 365) as i64)
        .min(10_000 - rules.residual_floor_bps);
    let trade_in =
        (i128::from(contract.price_minor) * i128::from(10_000 - depreciation_bps) / 10_000) as i64;
    let owed =
        b.outstanding_principal_minor + b.outstanding_fees_minor + b.outstanding_penalties_minor;
    let equity = trade_in - owed + b.credit_minor;
    let mut checks = vec![
        check(
            "contract_active",
            contract.status == "active",
            format!("the contract is {}", contract.status),
        ),
        check(
            "paid_share",
            paid_share_bps >= rules.min_paid_bps,
            format!(
                "{} of the contract is paid; {} is needed",
                pct(paid_share_bps),
                pct(rules.min_paid_bps)
            ),
        ),
        check(
            "days_past_due",
            contract.days_past_due == 0,
            if contract.days_past_due == 0 {
                "no installment is overdue".to_owned()
            } else {
                format!("{} days past due", contract.days_past_due)
            },
        ),
        match band {
            Some(band) => check(
                "credit_band",
                rules.bands.iter().any(|b| b == band),
                format!(
                    "credit band {band}; bands {} may upgrade",
                    rules.bands.join(", ")
                ),
            ),
            None => check(
                "credit_band",
                false,
                "no credit score is on record for the customer yet".to_owned(),
            ),
        },
    ];
    let money = |minor: i64| crate::notify::format_money(minor, &contract.currency);
    let desired_price = vehicle.map(|v| v.price_minor).unwrap_or(0);
    match vehicle {
        None => checks.push(check(
            "vehicle_available",
            false,
            "the desired vehicle is not listed".to_owned(),
        )),
        Some(v) => {
            let held_by_customer = v.status == "reserved"
                && (v.held_by == Some(contract.customer_id) || v.held_by_you);
            checks.push(check(
                "vehicle_available",
                (v.status == "available" || held_by_customer) && v.currency == contract.currency,
                if v.currency != contract.currency {
                    format!(
                        "the desired vehicle is priced in {}, the contract in {}",
                        v.currency, contract.currency
                    )
                } else if held_by_customer {
                    "the desired vehicle is reserved for the customer".to_owned()
                } else {
                    format!("the desired vehicle is {}", v.status)
                },
            ));
            checks.push(check(
                "bigger_vehicle",
                v.id != contract.vehicle_id && v.price_minor > contract.price_minor,
                if v.id == contract.vehicle_id {
                    "the desired vehicle is the one under contract".to_owned()
                } else {
                    format!(
                        "the desired vehicle costs {} against {} for the current one",
                        money(v.price_minor),
                        money(contract.price_minor)
                    )
                },
            ));
        }
    }
    checks.push(check(
        "equity",
        equity > 0,
        format!(
            "trade-in value {} less {} owed plus {} credit leaves {}",
            money(trade_in),
            money(owed),
            money(b.credit_minor),
            money(equity)
        ),
    ));
    Assessment {
        eligible: checks.iter().all(|c| c.met),
        checks,
        currency: contract.currency.clone(),
        paid_minor: paid,
        total_payable_minor: contract.total_payable_minor,
        paid_share_bps,
        days_past_due: contract.days_past_due,
        credit_band: band.map(str::to_owned),
        old_price_minor: contract.price_minor,
        days_under_contract: days,
        depreciation_bps,
        trade_in_value_minor: trade_in,
        owed_minor: owed,
        credit_minor: b.credit_minor,
        equity_minor: equity,
        desired_price_minor: desired_price,
        assessed_at: now,
    }
}

// ---------------------------------------------------------------- other services

/// Asks `service` for `path` with the caller's token. `Ok(None)` for a 404
/// (or a 403: what the caller may not see does not exist for them).
async fn ask<T: serde::de::DeserializeOwned>(
    state: &AppState,
    caller: &Caller,
    service: &str,
    path: &str,
) -> Result<Option<T>, ApiError> {
    let url = format!("{}{path}", state.deps.service_url(service));
    let unavailable = |why: String| {
        ApiError::Unavailable(format!(
            "the {service} service cannot answer right now ({why}); nothing was changed"
        ))
    };
    let resp = state
        .http
        .get(url)
        .bearer_auth(&caller.token)
        .send()
        .await
        .map_err(|e| unavailable(e.without_url().to_string()))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(unavailable(format!("it answered {status}")));
    }
    resp.json::<T>()
        .await
        .map(Some)
        .map_err(|e| unavailable(format!("an unreadable answer: {e}")))
}

/// The credit band this service last heard for `customer`.
pub async fn band(conn: &mut AnyConnection, customer: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT band FROM credit_bands WHERE customer_id = $1")
        .bind(customer.to_string())
        .fetch_optional(conn)
        .await
}

/// Keeps the latest band per customer (an older event does not overwrite a newer one).
pub async fn record_band(
    conn: &mut AnyConnection,
    customer: Uuid,
    band: &str,
    score: i64,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO credit_bands (customer_id, band, score, as_of) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (customer_id) DO UPDATE SET band = excluded.band, score = excluded.score, \
         as_of = excluded.as_of WHERE credit_bands.as_of <= excluded.as_of",
    )
    .bind(customer.to_string())
    .bind(band)
    .bind(score)
    .bind(to_micros(at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Works the assessment out now, on the caller's behalf.
async fn assess_now(
    state: &AppState,
    caller: &Caller,
    contract_id: Uuid,
    desired: Uuid,
) -> Result<(ContractFacts, Assessment), ApiError> {
    let contract: ContractFacts = ask(
        state,
        caller,
        "payments",
        &format!("/api/v1/contracts/{contract_id}"),
    )
    .await?
    .ok_or(ApiError::NotFound("contract"))?;
    let vehicle: Option<VehicleFacts> = ask(
        state,
        caller,
        "vehicles",
        &format!("/api/v1/vehicles/{desired}"),
    )
    .await?;
    let mut conn = state.deps.db.reader().acquire().await?;
    let band = band(&mut conn, contract.customer_id).await?;
    let now = state.deps.clock.now();
    let today = now
        .with_timezone(&state.config.upgrade.time_zone)
        .date_naive();
    let a = assess(
        &state.config.upgrade,
        &contract,
        vehicle.as_ref(),
        band.as_deref(),
        today,
        now,
    );
    Ok((contract, a))
}

// ---------------------------------------------------------------- records

string_enum!(
    /// Where an upgrade request is.
    Status {
        Ineligible => "ineligible",
        PendingReview => "pending_review",
        Approved => "approved",
        Declined => "declined",
        Cancelled => "cancelled",
        Completed => "completed",
        Expired => "expired",
    }
);

/// An upgrade request as stored and shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UpgradeRequest {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub contract_id: Uuid,
    pub desired_vehicle_id: Uuid,
    pub requested_by: Uuid,
    pub status: Status,
    /// The latest assessment (at the request, or at the decision).
    pub assessment: Assessment,
    pub decided_by: Option<Uuid>,
    pub decision_reason: Option<String>,
    /// The contract the upgrade became, once the old one was traded in.
    pub new_contract_id: Option<Uuid>,
    /// An approval lapses (`expired`) unless its contract trades in by then.
    pub valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every state change with who made it and why (on a single request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Transition>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = UpgradeTransition)]
pub struct Transition {
    pub from: Option<Status>,
    pub to: Status,
    /// Absent when the platform moved it (the trade-in completing it).
    pub actor_id: Option<Uuid>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

fn from_row(r: &AnyRow) -> Result<UpgradeRequest, sqlx::Error> {
    let assessment: String = r.try_get("assessment")?;
    Ok(UpgradeRequest {
        id: r.uuid("id")?,
        customer_id: r.uuid("customer_id")?,
        contract_id: r.uuid("contract_id")?,
        desired_vehicle_id: r.uuid("desired_vehicle_id")?,
        requested_by: r.uuid("requested_by")?,
        status: r.parsed("status")?,
        assessment: serde_json::from_str(&assessment)
            .map_err(|e| sqlx::Error::Decode(format!("assessment: {e}").into()))?,
        decided_by: r.opt_uuid("decided_by")?,
        decision_reason: r.try_get("decision_reason")?,
        new_contract_id: r.opt_uuid("new_contract_id")?,
        valid_until: r.try_get::<Option<i64>, _>("valid_until")?.map(from_micros),
        created_at: from_micros(r.try_get("created_at")?),
        updated_at: from_micros(r.try_get("updated_at")?),
        history: None,
    })
}

async fn find(
    conn: &mut AnyConnection,
    id: Uuid,
    lock: &str,
) -> Result<Option<UpgradeRequest>, sqlx::Error> {
    let sql = format!("SELECT * FROM upgrade_requests WHERE id = $1{lock}");
    sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

async fn history(conn: &mut AnyConnection, id: Uuid) -> Result<Vec<Transition>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT from_status, to_status, actor_id, reason, at FROM upgrade_transitions \
         WHERE upgrade_id = $1 ORDER BY at, seq",
    )
    .bind(id.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let from: Option<String> = r.try_get("from_status")?;
            Ok(Transition {
                from: from
                    .map(|f| f.parse())
                    .transpose()
                    .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
                to: r.parsed("to_status")?,
                actor_id: r.opt_uuid("actor_id")?,
                reason: r.try_get("reason")?,
                at: from_micros(r.try_get("at")?),
            })
        })
        .collect()
}

async fn record_transition(
    tx: &mut Tx,
    id: Uuid,
    from: Option<Status>,
    to: Status,
    actor: Option<Uuid>,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let seq: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM upgrade_transitions WHERE upgrade_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut **tx)
            .await?;
    sqlx::query(
        "INSERT INTO upgrade_transitions (upgrade_id, seq, from_status, to_status, actor_id, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(seq)
    .bind(from.map(|f| f.as_str()))
    .bind(to.as_str())
    .bind(actor.map(|a| a.to_string()))
    .bind(reason)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves `r` from `from` to `to` if it is still there; false when it moved meanwhile.
#[allow(clippy::too_many_arguments)]
async fn advance(
    tx: &mut Tx,
    r: &UpgradeRequest,
    to: Status,
    actor: Option<Uuid>,
    reason: &str,
    assessment: Option<&Assessment>,
    new_contract: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let assessment =
        serde_json::to_string(assessment.unwrap_or(&r.assessment)).map_err(ApiError::internal)?;
    let decided = matches!(to, Status::Approved | Status::Declined);
    let moved = sqlx::query(
        "UPDATE upgrade_requests SET status = $1, assessment = $2, \
         decided_by = CASE WHEN $3 = 1 THEN $4 ELSE decided_by END, \
         decision_reason = CASE WHEN $3 = 1 THEN $5 ELSE decision_reason END, \
         new_contract_id = COALESCE($6, new_contract_id), updated_at = $7 \
         WHERE id = $8 AND status = $9",
    )
    .bind(to.as_str())
    .bind(assessment)
    .bind(i64::from(decided))
    .bind(actor.map(|a| a.to_string()))
    .bind(reason)
    .bind(new_contract.map(|c| c.to_string()))
    .bind(to_micros(now))
    .bind(r.id.to_string())
    .bind(r.status.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if moved {
        record_transition(tx, r.id, Some(r.status), to, actor, reason, now).await?;
    }
    Ok(moved)
}

/// Whether `caller` may act for `customer`: the customer, their agent, an admin.
async fn may_act_for(state: &AppState, caller: &Caller, customer: Uuid) -> Result<bool, ApiError> {
    Ok(match caller.role {
        Role::Admin => true,
        Role::Customer => caller.id == customer,
        Role::Agent => standing::onboarded_by(&state.deps.db, customer).await? == Some(caller.id),
    })
}

async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> Result<UpgradeRequest, ApiError> {
    let mut conn = state.deps.db.reader().acquire().await?;
    let mut r = find(&mut conn, id, "")
        .await?
        .ok_or(ApiError::NotFound("upgrade request"))?;
    if !may_act_for(state, caller, r.customer_id).await? {
        return Err(ApiError::NotFound("upgrade request"));
    }
    r.history = Some(history(&mut conn, id).await?);
    Ok(r)
}

// ---------------------------------------------------------------- handlers

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpgrade {
    /// The contract whose vehicle is traded in.
    pub contract_id: Option<Uuid>,
    /// The bigger vehicle the customer wants.
    pub desired_vehicle_id: Option<Uuid>,
}

/// Ask to upgrade (the customer, or their agent). The answer shows every
/// eligibility check with its reason and the equity carried over; an
/// ineligible request is kept as `ineligible`, an eligible one waits for an admin.
#[utoipa::path(post, path = "/api/v1/upgrade-requests", tag = "upgrade-requests", security(("bearer" = [])),
    request_body = CreateUpgrade,
    responses(
        (status = 201, body = UpgradeRequest),
        (status = 403, description = "Admins decide requests; they do not make them", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such contract the caller may see", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request for the contract is already open", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payments or vehicles cannot answer; nothing changed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateUpgrade>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Customer, Role::Agent])?;
    let mut v = Validator::new();
    if req.contract_id.is_none() {
        v.error("contract_id", "is required");
    }
    if req.desired_vehicle_id.is_none() {
        v.error("desired_vehicle_id", "is required");
    }
    v.finish()?;
    let (Some(contract_id), Some(desired)) = (req.contract_id, req.desired_vehicle_id) else {
        return Err(ApiError::BadRequest("invalid upgrade request".into()));
    };
    // A lapsed approval no longer holds the contract's one open request.
    expire_due(&state, Some(contract_id)).await?;
    let (contract, assessment) = assess_now(&state, &caller, contract_id, desired).await?;
    // Payments let the caller see the contract; this service holds them to
    // its own rule too (an agent's book as it learned it from events).
    if !may_act_for(&state, &caller, contract.customer_id).await? {
        return Err(ApiError::NotFound("contract"));
    }
    let now = state.deps.clock.now();
    let status = if assessment.eligible {
        Status::PendingReview
    } else {
        Status::Ineligible
    };
    let r = UpgradeRequest {
        id: miliki_platform::id::new_id(),
        customer_id: contract.customer_id,
        contract_id,
        desired_vehicle_id: desired,
        requested_by: caller.id,
        status,
        assessment,
        decided_by: None,
        decision_reason: None,
        new_contract_id: None,
        valid_until: None,
        created_at: now,
        updated_at: now,
        history: None,
    };
    let mut tx = state.deps.db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO upgrade_requests (id, customer_id, contract_id, desired_vehicle_id, requested_by, \
         status, assessment, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(r.id.to_string())
    .bind(r.customer_id.to_string())
    .bind(r.contract_id.to_string())
    .bind(r.desired_vehicle_id.to_string())
    .bind(r.requested_by.to_string())
    .bind(r.status.as_str())
    .bind(serde_json::to_string(&r.assessment).map_err(ApiError::internal)?)
    .bind(to_micros(now))
    .bind(to_micros(now))
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        if miliki_platform::db::is_unique_violation(&e) {
            return Err(ApiError::Conflict(
                "an upgrade request for this contract is already open".into(),
            ));
        }
        return Err(e.into());
    }
    let why = if r.assessment.eligible {
        "requested; every check met".to_owned()
    } else {
        let failed: Vec<&str> = r
            .assessment
            .checks
            .iter()
            .filter(|c| !c.met)
            .map(|c| c.code.as_str())
            .collect();
        format!("requested; not met: {}", failed.join(", "))
    };
    record_transition(&mut tx, r.id, None, r.status, Some(caller.id), &why, now).await?;
    tx.commit().await?;
    let r = visible(&state, &caller, r.id).await?;
    Ok(created(&format!("/api/v1/upgrade-requests/{}", r.id), r))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub status: Option<String>,
    pub customer_id: Option<Uuid>,
    pub cursor: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<u32>,
}

/// Upgrade requests, newest first: a customer's own, an agent's book, all for admins.
#[utoipa::path(get, path = "/api/v1/upgrade-requests", tag = "upgrade-requests", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = Page<UpgradeRequest>),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> Result<Json<Page<UpgradeRequest>>, ApiError> {
    let mut v = Validator::new();
    let (limit, before) =
        pagination::parse_page_params::<Uuid>(&mut v, p.limit, p.cursor.as_deref());
    let status = p
        .status
        .as_deref()
        .and_then(|s| v.check("status", s.parse::<Status>()));
    v.finish()?;
    let mut q = FilteredQuery::new("SELECT * FROM upgrade_requests");
    match caller.role {
        Role::Admin => {}
        Role::Customer => {
            q.and("customer_id = ?", caller.id.to_string());
        }
        Role::Agent => {
            q.and(
                "customer_id IN (SELECT user_id FROM user_standing WHERE onboarded_by = ?)",
                caller.id.to_string(),
            );
        }
    }
    if let Some(s) = status {
        q.and("status = ?", s.as_str());
    }
    if let Some(c) = p.customer_id {
        q.and("customer_id = ?", c.to_string());
    }
    if let Some(b) = before {
        q.and("id < ?", b.to_string());
    }
    q.push(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let rows = q.fetch_all(state.deps.db.reader()).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let page = pagination::page_from(items, limit, |r| r.id);
    Ok(Json(Page {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One upgrade request with its history.
#[utoipa::path(get, path = "/api/v1/upgrade-requests/{id}", tag = "upgrade-requests", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = UpgradeRequest),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<UpgradeRequest>, ApiError> {
    Ok(Json(visible(&state, &caller, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpgradeDecisionRequest)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `approve` or `decline`.
    pub decision: Option<String>,
    /// Why, in words the customer reads (required).
    pub reason: Option<String>,
}

/// Decide a pending request (admins). Eligibility is assessed again first:
/// an approval is refused (409, with the failed checks) when it no longer holds.
#[utoipa::path(post, path = "/api/v1/upgrade-requests/{id}/decision", tag = "upgrade-requests", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = DecisionRequest,
    responses(
        (status = 200, body = UpgradeRequest),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not pending review, or no longer eligible", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<DecisionRequest>,
) -> Result<Json<UpgradeRequest>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let approve = match req.decision.as_deref() {
        Some("approve") => Some(true),
        Some("decline") => Some(false),
        Some(_) => {
            v.error("decision", "must be approve or decline");
            None
        }
        None => {
            v.error("decision", "is required");
            None
        }
    };
    let reason = req.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        v.error("reason", "is required");
    } else if reason.chars().count() > 1_000 {
        v.error("reason", "must be at most 1000 characters");
    }
    v.finish()?;
    let approve = approve.unwrap_or(false);
    let r = visible(&state, &caller, id).await?;
    if r.status != Status::PendingReview {
        return Err(ApiError::Conflict(format!(
            "the request is {}: only a request pending review is decided",
            r.status
        )));
    }
    let assessment = if approve {
        let (_, a) = assess_now(&state, &caller, r.contract_id, r.desired_vehicle_id).await?;
        if !a.eligible {
            let failed: Vec<String> = a
                .checks
                .iter()
                .filter(|c| !c.met)
                .map(|c| format!("{} ({})", c.code, c.detail))
                .collect();
            return Err(ApiError::Conflict(format!(
                "the request is no longer eligible: {}",
                failed.join("; ")
            )));
        }
        a
    } else {
        r.assessment.clone()
    };
    let to = if approve {
        Status::Approved
    } else {
        Status::Declined
    };
    let now = state.deps.clock.now();
    let mut tx = state.deps.db.begin().await?;
    if !advance(
        &mut tx,
        &r,
        to,
        Some(caller.id),
        reason,
        Some(&assessment),
        None,
        now,
    )
    .await?
    {
        return Err(ApiError::Conflict(
            "the request was changed meanwhile".into(),
        ));
    }
    let valid_until = approve.then(|| now + state.config.upgrade.approval_valid);
    if let Some(until) = valid_until {
        sqlx::query("UPDATE upgrade_requests SET valid_until = $1 WHERE id = $2")
            .bind(to_micros(until))
            .bind(r.id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    state
        .deps
        .events
        .write(
            &mut tx,
            &UpgradeDecided {
                upgrade_request_id: r.id,
                customer_id: r.customer_id,
                contract_id: r.contract_id,
                desired_vehicle_id: r.desired_vehicle_id,
                decision: to.as_str().to_owned(),
                reason: reason.to_owned(),
                decided_by: caller.id,
                trade_in_value_minor: assessment.trade_in_value_minor,
                equity_minor: assessment.equity_minor,
                currency: assessment.currency.clone(),
                valid_until,
            },
        )
        .await?;
    state.deps.events.commit(tx).await?;
    Ok(Json(visible(&state, &caller, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpgradeCancelRequest)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: Option<String>,
}

/// Withdraw a request pending review (the customer or their agent).
#[utoipa::path(post, path = "/api/v1/upgrade-requests/{id}/cancel", tag = "upgrade-requests", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = CancelRequest,
    responses(
        (status = 200, body = UpgradeRequest),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No longer pending review", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<CancelRequest>,
) -> Result<Json<UpgradeRequest>, ApiError> {
    caller.require(&[Role::Customer, Role::Agent])?;
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("withdrawn by the customer");
    if reason.chars().count() > 1_000 {
        return Err(ApiError::field("reason", "must be at most 1000 characters"));
    }
    let r = visible(&state, &caller, id).await?;
    // Once approved, the equity is the customer's to use or leave unused.
    if r.status != Status::PendingReview {
        return Err(ApiError::Conflict(format!(
            "the request is {}: only a request pending review is withdrawn",
            r.status
        )));
    }
    let now = state.deps.clock.now();
    let mut tx = state.deps.db.begin().await?;
    if !advance(
        &mut tx,
        &r,
        Status::Cancelled,
        Some(caller.id),
        reason,
        None,
        None,
        now,
    )
    .await?
    {
        return Err(ApiError::Conflict(
            "the request was changed meanwhile".into(),
        ));
    }
    tx.commit().await?;
    Ok(Json(visible(&state, &caller, id).await?))
}

/// Expires approvals (of `contract`, or all) whose time ran out by the
/// clock's now, each with its transition; returns how many. Safe to run
/// anywhere at once: each move is guarded by the status it was read in.
pub async fn expire_due(state: &AppState, contract: Option<Uuid>) -> Result<usize, ApiError> {
    let now = state.deps.clock.now();
    let mut q = FilteredQuery::new("SELECT * FROM upgrade_requests");
    q.and("status = ?", "approved");
    q.and(
        "valid_until < CAST(? AS BIGINT)",
        to_micros(now).to_string(),
    );
    if let Some(c) = contract {
        q.and("contract_id = ?", c.to_string());
    }
    q.push(" ORDER BY valid_until LIMIT 100");
    let rows = q.fetch_all(state.deps.db.reader()).await?;
    let mut n = 0;
    for row in rows {
        let r = from_row(&row)?;
        let mut tx = state.deps.db.begin().await?;
        let reason = match r.valid_until {
            Some(until) => format!(
                "the approval ran out at {} (UTC) with no trade-in",
                until.format("%Y-%m-%d %H:%M")
            ),
            None => "the approval ran out with no trade-in".to_owned(),
        };
        if advance(&mut tx, &r, Status::Expired, None, &reason, None, None, now).await? {
            n += 1;
        }
        tx.commit().await?;
    }
    Ok(n)
}

/// Runs [`expire_due`] every `poll` until shutdown.
pub async fn run_expiry(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let poll = state.config.sla_poll;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        match expire_due(&state, None).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "upgrade approvals ran out"),
            Err(e) => tracing::warn!(error = %e, "upgrade expiry failed; will retry"),
        }
    }
}

/// The old contract was traded in: the request is done.
pub async fn complete(
    tx: &mut Tx,
    upgrade_request: Uuid,
    new_contract: Uuid,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let Some(r) = find(tx, upgrade_request, "").await? else {
        tracing::warn!(upgrade = %upgrade_request, "a trade-in for an upgrade request this service does not hold");
        return Ok(());
    };
    // An application accepted in time may trade in after the approval lapsed.
    if !matches!(r.status, Status::Approved | Status::Expired) {
        tracing::warn!(upgrade = %upgrade_request, status = %r.status,
            "a trade-in for an upgrade request that is not approved");
        return Ok(());
    }
    let reason = format!("traded in for contract {new_contract}");
    // Guarded by the status it was read in; the inbox claim makes it once.
    advance(
        tx,
        &r,
        Status::Completed,
        None,
        &reason,
        None,
        Some(new_contract),
        at,
    )
    .await
    .map_err(|e| anyhow::anyhow!("completing upgrade request {upgrade_request}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(paid: i64, credit: i64, principal_left: i64, start: NaiveDate) -> ContractFacts {
        ContractFacts {
            id: Uuid::nil(),
            customer_id: Uuid::from_u128(1),
            vehicle_id: Uuid::from_u128(2),
            status: "active".into(),
            currency: "KES".into(),
            price_minor: 100_000,
            total_payable_minor: 120_000,
            start_date: Some(start),
            days_past_due: 0,
            balances: Balances {
                outstanding_principal_minor: principal_left,
                outstanding_fees_minor: 0,
                outstanding_penalties_minor: 500,
                credit_minor: credit,
                paid_to_date_minor: paid,
            },
        }
    }

    fn bike(price: i64) -> VehicleFacts {
        VehicleFacts {
            id: Uuid::from_u128(3),
            status: "available".into(),
            price_minor: price,
            currency: "KES".into(),
            held_by: None,
            held_by_you: false,
        }
    }

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    #[test]
    fn the_trade_in_loses_value_by_the_month_down_to_the_floor() {
        let rules = Rules::default();
        let start = day("2026-01-01");
        let c = contract(60_000, 2_000, 40_000, start);
        let now = Utc::now();
        // 365 days: 12 months at 1.5% = 18%.
        let a = assess(
            &rules,
            &c,
            Some(&bike(150_000)),
            Some("B"),
            day("2027-01-01"),
            now,
        );
        assert_eq!(a.depreciation_bps, 1_800);
        assert_eq!(a.trade_in_value_minor, 82_000);
        // Owed: principal and penalties, not interest; waiting credit counts.
        assert_eq!(a.owed_minor, 40_500);
        assert_eq!(a.equity_minor, 82_000 - 40_500 + 2_000);
        assert!(a.eligible, "{a:?}");
        // Ten years on, the floor holds the value at 30% of the price.
        let a = assess(
            &rules,
            &c,
            Some(&bike(150_000)),
            Some("B"),
            day("2036-01-01"),
            now,
        );
        assert_eq!(a.depreciation_bps, 7_000);
        assert_eq!(a.trade_in_value_minor, 30_000);
        assert!(!a.eligible, "the floor no longer covers what is owed");
        assert!(a.checks.iter().any(|c| c.code == "equity" && !c.met));
    }

    #[test]
    fn every_rule_names_its_reason_when_unmet() {
        let rules = Rules::default();
        let mut c = contract(20_000, 0, 80_000, day("2026-01-01"));
        c.days_past_due = 9;
        c.status = "paused".into();
        let mut v = bike(90_000);
        v.status = "reserved".into();
        let a = assess(
            &rules,
            &c,
            Some(&v),
            Some("D"),
            day("2026-02-01"),
            Utc::now(),
        );
        let unmet: Vec<&str> = a
            .checks
            .iter()
            .filter(|c| !c.met)
            .map(|c| c.code.as_str())
            .collect();
        assert_eq!(
            unmet,
            [
                "contract_active",
                "paid_share",
                "days_past_due",
                "credit_band",
                "vehicle_available",
                "bigger_vehicle"
            ]
        );
        assert!(!a.eligible);
        // Reserved for the customer themselves is as good as available.
        v.held_by = Some(c.customer_id);
        let a = assess(&rules, &c, Some(&v), None, day("2026-02-01"), Utc::now());
        let available = a.checks.iter().find(|c| c.code == "vehicle_available");
        assert!(available.is_some_and(|c| c.met), "{a:?}");
        let band = a.checks.iter().find(|c| c.code == "credit_band");
        assert!(band.is_some_and(|c| !c.met && c.detail.contains("no credit score")));
    }
}

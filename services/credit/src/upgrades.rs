//! Upgrades approved by the support service, as credit holds them: an
//! application for the desired vehicle may name the upgrade request
//! (`upgrade_request_id`), and then its deposit is the equity the trade-in
//! of the old contract's vehicle leaves. Accepting it tells payments, in
//! `credit.application.accepted.v1`, which contract to trade in and at what value.

use chrono::{DateTime, Utc};
use miliki_events::catalogue::credit::UpgradeTerms;
use miliki_events::catalogue::support::UpgradeDecided;
use miliki_platform::clock::{from_micros, to_micros};
use miliki_platform::db::RowExt;
use miliki_platform::ApiError;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store;

/// An approved upgrade's equity, ready to be carried into an application.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UpgradeGrant {
    pub upgrade_request_id: Uuid,
    pub customer_id: Uuid,
    /// The contract traded in.
    pub contract_id: Uuid,
    /// The vehicle the upgrade is for.
    pub vehicle_id: Uuid,
    pub trade_in_value_minor: i64,
    /// The equity when the upgrade was approved; the trade-in itself works it
    /// out again from the old contract on the day.
    pub equity_minor: i64,
    pub currency: String,
    /// After this the approval can no longer be taken up.
    pub valid_until: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub application_id: Option<Uuid>,
}

impl UpgradeGrant {
    pub fn terms(&self) -> UpgradeTerms {
        UpgradeTerms {
            upgrade_request_id: self.upgrade_request_id,
            from_contract_id: self.contract_id,
            trade_in_value_minor: self.trade_in_value_minor,
        }
    }
}

fn from_row(r: &AnyRow) -> Result<UpgradeGrant, sqlx::Error> {
    Ok(UpgradeGrant {
        upgrade_request_id: r.uuid("upgrade_request_id")?,
        customer_id: r.uuid("customer_id")?,
        contract_id: r.uuid("contract_id")?,
        vehicle_id: r.uuid("vehicle_id")?,
        trade_in_value_minor: r.try_get("trade_in_value_minor")?,
        equity_minor: r.try_get("equity_minor")?,
        currency: r.try_get("currency")?,
        valid_until: r.try_get::<Option<i64>, _>("valid_until")?.map(from_micros),
        application_id: r.opt_uuid("application_id")?,
    })
}

/// Records an approval (a redelivery or a declined decision changes nothing).
pub async fn apply_decision(
    conn: &mut AnyConnection,
    d: &UpgradeDecided,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if d.decision != "approved" {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO upgrade_grants (upgrade_request_id, customer_id, contract_id, vehicle_id, \
         trade_in_value_minor, equity_minor, currency, granted_at, valid_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (upgrade_request_id) DO NOTHING",
    )
    .bind(d.upgrade_request_id.to_string())
    .bind(d.customer_id.to_string())
    .bind(d.contract_id.to_string())
    .bind(d.desired_vehicle_id.to_string())
    .bind(d.trade_in_value_minor)
    .bind(d.equity_minor)
    .bind(&d.currency)
    .bind(to_micros(at))
    .bind(d.valid_until.map(to_micros))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find(
    conn: &mut AnyConnection,
    id: Uuid,
    lock: &str,
) -> Result<Option<UpgradeGrant>, sqlx::Error> {
    let sql = format!("SELECT * FROM upgrade_grants WHERE upgrade_request_id = $1{lock}");
    sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

/// The grant an application took up, if any.
pub async fn of_application(
    conn: &mut AnyConnection,
    application: Uuid,
) -> Result<Option<UpgradeGrant>, sqlx::Error> {
    sqlx::query("SELECT * FROM upgrade_grants WHERE application_id = $1")
        .bind(application.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

/// An upgrade request credit has not heard approved.
pub fn not_found() -> ApiError {
    ApiError::field(
        "upgrade_request_id",
        "no approved upgrade request has this id (an approval takes a moment to arrive)",
    )
}

/// Refuses `grant` for an application of `customer` on `vehicle` (each
/// reason named) when it is not theirs, not for that vehicle, expired at
/// `now`, or already carried by another application still open.
pub async fn check_usable(
    conn: &mut AnyConnection,
    grant: &UpgradeGrant,
    customer: Uuid,
    vehicle: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let field = "upgrade_request_id";
    if grant.customer_id != customer {
        return Err(ApiError::field(field, "the upgrade is another customer's"));
    }
    if grant.vehicle_id != vehicle {
        return Err(ApiError::field(
            field,
            "the upgrade was approved for another vehicle",
        ));
    }
    if let Some(until) = grant.valid_until.filter(|u| *u < now) {
        return Err(ApiError::Conflict(format!(
            "the upgrade approval ran out at {} (UTC); ask for the upgrade again",
            until.format("%Y-%m-%d %H:%M")
        )));
    }
    if let Some(app) = grant.application_id {
        let open = store::find_application(conn, app, "")
            .await?
            .is_some_and(|a| a.status.is_open());
        if open {
            return Err(ApiError::Conflict(
                "the upgrade is already carried by another application".into(),
            ));
        }
    }
    Ok(())
}

/// Binds the grant to `application` (the one that carries it now).
pub async fn bind(
    conn: &mut AnyConnection,
    id: Uuid,
    application: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE upgrade_grants SET application_id = $1 WHERE upgrade_request_id = $2")
        .bind(application.to_string())
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

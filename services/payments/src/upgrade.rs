//! Upgrades. A contract written from an application that carries an
//! approved upgrade ([`UpgradeTerms`]) waits in `pending_deposit` like any
//! other; as soon as the trade-in of the customer's old vehicle, with what
//! the customer paid on the new contract, meets its deposit and fee, one
//! commit settles the old contract by the trade-in (it closes `upgraded`),
//! pays the equity left over into the new contract, and activates it.
//!
//! The trade-in value is fixed when the upgrade is approved; the equity is
//! worked out from the old contract's book at the moment of the trade-in, so
//! whatever the customer paid on it meanwhile is carried over too.

use chrono::NaiveDate;
use miliki_events::catalogue::credit::UpgradeTerms;
use miliki_events::catalogue::payments::ContractUpgraded;
use miliki_platform::clock::to_micros;
use miliki_platform::db::{RowExt, Tx};
use miliki_platform::ApiError;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::domain::book::Book;
use crate::domain::contract::ContractStatus;
use crate::ops::{self, NewContract};
use crate::state::AppState;
use crate::store::{self, ContractRecord, PaymentRecord};

/// The payment method of the equity a trade-in carries into the new contract.
pub const TRADE_IN: &str = "trade_in";

/// A new contract's upgrade that has not traded in yet.
#[derive(Debug, Clone)]
pub struct PendingUpgrade {
    pub from_contract_id: Uuid,
    pub upgrade_request_id: Uuid,
    pub trade_in_value_minor: i64,
}

/// Refuses a new contract whose upgrade names an old contract that is not
/// the same customer's or is on the same vehicle. An old contract that is
/// not active (paused, in default) is not refused here: the new contract is
/// written and waits, as [`try_trade_in`] does, so the accepted application
/// is not lost.
pub async fn check_trade_in(
    tx: &mut Tx,
    input: &NewContract,
    up: &UpgradeTerms,
) -> Result<(), ApiError> {
    let old = store::find_contract(tx, up.from_contract_id, "")
        .await?
        .ok_or_else(|| ApiError::field("upgrade", "the contract to trade in does not exist"))?;
    if old.customer_id != input.customer_id {
        return Err(ApiError::field(
            "upgrade",
            "the contract to trade in is another customer's",
        ));
    }
    if old.vehicle_id == input.vehicle_id {
        return Err(ApiError::field(
            "upgrade",
            "an upgrade is to another vehicle",
        ));
    }
    if up.trade_in_value_minor < 0 {
        return Err(ApiError::field("upgrade", "the trade-in value is negative"));
    }
    Ok(())
}

/// Records that `contract` settles through `up`.
pub async fn record(
    conn: &mut AnyConnection,
    contract: Uuid,
    up: &UpgradeTerms,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contract_upgrades (contract_id, from_contract_id, upgrade_request_id, \
         trade_in_value_minor) VALUES ($1, $2, $3, $4)",
    )
    .bind(contract.to_string())
    .bind(up.from_contract_id.to_string())
    .bind(up.upgrade_request_id.to_string())
    .bind(up.trade_in_value_minor)
    .execute(conn)
    .await?;
    Ok(())
}

/// The upgrade `contract` still waits to trade in, if any.
pub async fn pending(
    conn: &mut AnyConnection,
    contract: Uuid,
) -> Result<Option<PendingUpgrade>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT from_contract_id, upgrade_request_id, trade_in_value_minor FROM contract_upgrades \
         WHERE contract_id = $1 AND settled_at IS NULL",
    )
    .bind(contract.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(PendingUpgrade {
            from_contract_id: r.uuid("from_contract_id")?,
            upgrade_request_id: r.uuid("upgrade_request_id")?,
            trade_in_value_minor: sqlx::Row::try_get(&r, "trade_in_value_minor")?,
        })
    })
    .transpose()
}

/// Trades the old contract in when its equity, with the credit already on
/// `new`, meets `new`'s deposit and fee; the caller's settlement then
/// allocates it and activates `new`. Returns whether it traded in. The old
/// contract is locked after the new one (nothing locks them the other way).
pub async fn try_trade_in(
    state: &AppState,
    tx: &mut Tx,
    new: &ContractRecord,
    book: &mut Book,
    up: &PendingUpgrade,
    today: NaiveDate,
) -> Result<bool, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let (mut old, old_book) = ops::load_locked(state, tx, up.from_contract_id).await?;
    if old.status != ContractStatus::Active {
        tracing::warn!(contract = %new.id, old = %old.id, status = %old.status,
            "the contract to trade in is no longer active; the upgrade waits");
        return Ok(false);
    }
    let mut traded = old_book.clone();
    let Some((outcome, equity)) = traded.trade_in(up.trade_in_value_minor) else {
        tracing::warn!(contract = %new.id, old = %old.id,
            "the trade-in value no longer covers the old contract; the upgrade waits");
        return Ok(false);
    };
    let owed = book
        .lines
        .first()
        .map(|l| l.total_outstanding())
        .unwrap_or(0);
    if book.credit_minor + equity < owed {
        return Ok(false);
    }
    // The platform moves it, whoever's payment set the trade-in off.
    ops::transition(
        tx,
        &mut old,
        ContractStatus::Upgraded,
        None,
        &format!("traded in for contract {}", new.id),
        now,
    )
    .await?;
    old.credit_minor = traded.credit_minor;
    old.days_past_due = 0;
    old.overdue_minor = 0;
    old.bucket = state.config.bucket(0);
    old.updated_at = now;
    store::save_lines(tx, old.id, &traded, &outcome.touched).await?;
    store::append_postings(
        tx,
        old.id,
        None,
        old.currency,
        &outcome.postings,
        now,
        today,
    )
    .await?;
    store::update_contract(tx, &old).await?;
    if equity > 0 {
        // The upgrade request's id: the equity is carried at most once.
        let payment = PaymentRecord {
            id: up.upgrade_request_id,
            contract_id: new.id,
            customer_id: new.customer_id,
            amount_minor: equity,
            currency: new.currency,
            method: TRADE_IN.to_owned(),
            status: "received".into(),
            days_late: 0,
            received_by: crate::collect::SYSTEM,
            received_at: now,
            local_date: today,
            reversed_by: None,
            reversed_at: None,
            reversal_reason: None,
        };
        store::insert_payment(tx, &payment).await?;
        let received = book.receive(equity, TRADE_IN);
        store::append_postings(
            tx,
            new.id,
            Some(payment.id),
            new.currency,
            &[received],
            now,
            today,
        )
        .await?;
    }
    sqlx::query(
        "UPDATE contract_upgrades SET equity_minor = $1, settled_at = $2 WHERE contract_id = $3",
    )
    .bind(equity)
    .bind(to_micros(now))
    .bind(new.id.to_string())
    .execute(&mut **tx)
    .await?;
    deps.events
        .write(
            tx,
            &ContractUpgraded {
                contract_id: old.id,
                customer_id: old.customer_id,
                vehicle_id: old.vehicle_id,
                new_contract_id: new.id,
                new_vehicle_id: new.vehicle_id,
                upgrade_request_id: up.upgrade_request_id,
                trade_in_value_minor: up.trade_in_value_minor,
                equity_minor: equity,
                currency: old.currency.code().into(),
            },
        )
        .await?;
    Ok(true)
}

/// Tries again the upgrades whose new contract was paid while its old
/// contract could not be traded in (paused, or in default) and whose old
/// contract is active again. Run once a day by the daily job; locks each new
/// contract before its old one, as a payment does. Returns how many traded in.
pub async fn retry_waiting(state: &AppState, today: NaiveDate) -> Result<usize, ApiError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT u.contract_id FROM contract_upgrades u \
         JOIN contracts o ON o.id = u.from_contract_id \
         JOIN contracts n ON n.id = u.contract_id \
         WHERE u.settled_at IS NULL AND o.status = 'active' AND n.status = 'pending_deposit' \
         ORDER BY u.contract_id LIMIT 500",
    )
    .fetch_all(state.deps.db.reader())
    .await?;
    let mut traded = 0;
    for id in ids {
        let id = miliki_platform::id::parse_stored(&id)?;
        let mut tx = state.deps.db.begin().await?;
        let (mut c, mut book) = ops::load_locked(state, &mut tx, id).await?;
        ops::settle(
            state,
            &mut tx,
            &mut c,
            &mut book,
            crate::domain::book::Outcome::default(),
            today,
            None,
            None,
        )
        .await?;
        if c.status == ContractStatus::Active {
            traded += 1;
        }
        state.deps.events.commit(tx).await?;
    }
    Ok(traded)
}

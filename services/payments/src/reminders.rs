//! Installment-due reminders: two days before an installment falls due and on
//! the day itself, the daily job publishes `payments.installment.due.v1` for
//! each unpaid installment of a contract that takes payments (active or
//! defaulted; not paused, paid off or cancelled). Each reminder is claimed in
//! `installment_reminders` in the transaction that writes it to the outbox,
//! so restarts and replicas never send one twice; a reminder is only ever
//! sent on its own day, so a clock that jumps past it sends nothing stale.

use chrono::{DateTime, NaiveDate, Utc};
use miliki_events::catalogue::payments as ev;
use miliki_platform::clock::to_micros;
use miliki_platform::db::Tx;
use miliki_platform::ApiError;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::book::Book;
use crate::domain::contract::ContractStatus;
use crate::state::AppState;
use crate::store::{self, date_text};

/// How many days before a due date reminders go: two days ahead, and the day.
pub const DAYS_BEFORE: [i64; 2] = [2, 0];

/// Reminders claimed per transaction.
const BATCH: i64 = 200;

/// What collection will ask for on `due`: every installment due by then that
/// is still unpaid, less credit waiting on the contract. Nothing (zero or
/// less) when the customer paid ahead.
pub fn amount_due(book: &Book, due: NaiveDate) -> i64 {
    book.lines
        .iter()
        .filter(|l| l.number > 0 && l.due_date <= due)
        .map(|l| l.total_outstanding())
        .sum::<i64>()
        - book.credit_minor
}

/// One installment a reminder may be owed for.
struct Candidate {
    contract_id: Uuid,
    installment: u32,
    due_date: NaiveDate,
    days_before: i64,
}

/// Publishes the reminders of `today` not yet claimed, once the local time
/// has reached the configured hour. Returns how many were published.
pub async fn remind_due(
    state: &AppState,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Result<usize, ApiError> {
    let local = now.with_timezone(&state.config.time_zone);
    if local.date_naive() != today || local.time() < state.config.reminder_at {
        return Ok(0);
    }
    let mut published = 0;
    loop {
        let deps = &state.deps;
        let mut tx = deps.db.begin().await?;
        let batch = candidates(&mut tx, today).await?;
        let n = batch.len();
        for c in batch {
            if remind_one(state, &mut tx, &c, now).await? {
                published += 1;
            }
        }
        deps.events.commit(tx).await?;
        if (n as i64) < BATCH {
            return Ok(published);
        }
    }
}

/// Installments of contracts taking payments that fall due in exactly two
/// days or today, whose reminder for that day is not yet claimed.
async fn candidates(tx: &mut Tx, today: NaiveDate) -> Result<Vec<Candidate>, sqlx::Error> {
    let mut out = Vec::new();
    for days in DAYS_BEFORE {
        let due = today + chrono::Duration::days(days);
        let rows = sqlx::query(&format!(
            "SELECT i.contract_id, i.number FROM installments i JOIN contracts c ON c.id = i.contract_id \
             WHERE i.due_date = $1 AND i.number > 0 AND c.status IN ('active', 'defaulted') \
             AND NOT EXISTS (SELECT 1 FROM installment_reminders r WHERE r.contract_id = i.contract_id \
             AND r.installment = i.number AND r.days_before = $2) \
             ORDER BY i.contract_id, i.number LIMIT {BATCH}"
        ))
        .bind(date_text(due))
        .bind(days)
        .fetch_all(&mut **tx)
        .await?;
        for r in rows {
            let id: String = r.try_get("contract_id")?;
            let number: i64 = r.try_get("number")?;
            out.push(Candidate {
                contract_id: Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                installment: u32::try_from(number).unwrap_or(0),
                due_date: due,
                days_before: days,
            });
        }
    }
    Ok(out)
}

/// Claims one reminder and, when something is owed, writes its event in the
/// same transaction. False when another pass claimed it first or nothing is owed.
async fn remind_one(
    state: &AppState,
    tx: &mut Tx,
    c: &Candidate,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let claimed = sqlx::query(
        "INSERT INTO installment_reminders (contract_id, installment, days_before, due_date, outcome, \
         amount_due_minor, at) VALUES ($1, $2, $3, $4, 'paid', 0, $5) \
         ON CONFLICT (contract_id, installment, days_before) DO NOTHING",
    )
    .bind(c.contract_id.to_string())
    .bind(i64::from(c.installment))
    .bind(c.days_before)
    .bind(date_text(c.due_date))
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if claimed != 1 {
        return Ok(false);
    }
    let Some(contract) = store::find_contract(tx, c.contract_id, "").await? else {
        return Ok(false);
    };
    if !matches!(
        contract.status,
        ContractStatus::Active | ContractStatus::Defaulted
    ) {
        return Ok(false);
    }
    let book = store::load_book(tx, &contract).await?;
    let line_unpaid = book
        .lines
        .iter()
        .any(|l| l.number == c.installment && l.total_outstanding() > 0);
    let owed = amount_due(&book, c.due_date);
    if !line_unpaid || owed <= 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE installment_reminders SET outcome = 'sent', amount_due_minor = $1 \
         WHERE contract_id = $2 AND installment = $3 AND days_before = $4",
    )
    .bind(owed)
    .bind(c.contract_id.to_string())
    .bind(i64::from(c.installment))
    .bind(c.days_before)
    .execute(&mut **tx)
    .await?;
    state
        .deps
        .events
        .write(
            tx,
            &ev::InstallmentDue {
                contract_id: contract.id,
                customer_id: contract.customer_id,
                installment: c.installment,
                due_date: date_text(c.due_date),
                amount_due_minor: owed,
                currency: contract.currency.code().into(),
                days_before: c.days_before,
            },
        )
        .await?;
    Ok(true)
}

//! The service's operations, each inside a transaction its caller owns (so
//! an HTTP handler can record its idempotent response, and an event consumer
//! its inbox entry, in the same commit as the effect).

use chrono::{DateTime, NaiveDate, Utc};
use miliki_events::catalogue::credit::UpgradeTerms;
use miliki_events::catalogue::payments as ev;
use miliki_platform::db::Tx;
use miliki_platform::money::Currency;
use miliki_platform::ApiError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::book::{Book, Outcome};
use crate::domain::contract::{new_account_number, ContractStatus};
use crate::domain::product::{Component, VehicleType};
use crate::domain::quote::quote;
use crate::state::AppState;
use crate::store::{self, ContractRecord, PaymentRecord};

/// What a contract is written from (an accepted application, or an admin).
#[derive(Debug, Clone)]
pub struct NewContract {
    pub application_id: Option<Uuid>,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub reservation_id: Option<Uuid>,
    pub product_id: Uuid,
    pub price_minor: i64,
    pub currency: Currency,
    pub deposit_minor: i64,
    pub term_periods: i64,
    /// The approved upgrade whose trade-in pays the deposit, if any.
    pub upgrade: Option<UpgradeTerms>,
}

fn conflict(e: String) -> ApiError {
    ApiError::Conflict(e)
}

/// Writes a contract (`pending_deposit`) with its schedule and origination posting.
pub async fn create_contract(
    state: &AppState,
    tx: &mut Tx,
    input: &NewContract,
    actor: Option<Uuid>,
) -> Result<(ContractRecord, Book), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let today = state.today();
    if let Some(app) = input.application_id {
        if store::find_contract_by_application(tx, app)
            .await?
            .is_some()
        {
            return Err(ApiError::Conflict(
                "a contract already exists for this application".into(),
            ));
        }
    }
    let product = store::find_product(tx, input.product_id)
        .await?
        .ok_or_else(|| ApiError::field("product_id", "no such product"))?;
    if product.status != "active" {
        return Err(ApiError::field(
            "product_id",
            "the product is retired and takes no new contracts",
        ));
    }
    let terms = product.terms;
    if terms.currency != input.currency {
        return Err(ApiError::field(
            "currency",
            format!("the product is priced in {}", terms.currency),
        ));
    }
    if let Some((vtype, _, _)) = store::find_vehicle(deps.db.reader(), input.vehicle_id).await? {
        if let Ok(t) = vtype.parse::<VehicleType>() {
            if !terms.vehicle_types.contains(&t) {
                return Err(ApiError::field(
                    "vehicle_id",
                    format!("the product does not finance a {t}"),
                ));
            }
        }
    }
    if store::live_contract_for_vehicle(tx, input.vehicle_id)
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(
            "the vehicle already has a live contract".into(),
        ));
    }
    if let Some(up) = &input.upgrade {
        crate::upgrade::check_trade_in(tx, input, up).await?;
    }
    let q = quote(
        &terms,
        input.price_minor,
        input.deposit_minor,
        input.term_periods,
        today,
    )?;
    let schedule = crate::domain::schedule::Schedule {
        installment_minor: q.installment_minor,
        total_interest_minor: q.total_interest_minor,
        installments: q.installments.clone(),
    };
    let (book, posting) =
        Book::originate(&schedule, q.deposit_minor, q.processing_fee_minor, today);
    let mut record = ContractRecord {
        id: miliki_platform::id::new_id(),
        account_number: String::new(),
        application_id: input.application_id,
        customer_id: input.customer_id,
        vehicle_id: input.vehicle_id,
        reservation_id: input.reservation_id,
        product_id: input.product_id,
        product: terms,
        currency: input.currency,
        price_minor: input.price_minor,
        deposit_minor: q.deposit_minor,
        principal_minor: q.principal_minor,
        processing_fee_minor: q.processing_fee_minor,
        total_interest_minor: q.total_interest_minor,
        total_payable_minor: q.total_payable_minor,
        installment_minor: q.installment_minor,
        term_periods: input.term_periods,
        status: ContractStatus::PendingDeposit,
        signed_date: today,
        start_date: None,
        credit_minor: 0,
        days_past_due: 0,
        bucket: "current".into(),
        overdue_minor: 0,
        aged_through: today,
        paused_on: None,
        pause_days: None,
        created_at: now,
        updated_at: now,
    };
    let mut inserted = false;
    for _ in 0..8 {
        record.account_number = new_account_number();
        if store::insert_contract(tx, &record, actor).await? {
            inserted = true;
            break;
        }
    }
    if !inserted {
        return Err(ApiError::internal(anyhow::anyhow!(
            "no free account number after 8 tries"
        )));
    }
    store::insert_lines(tx, record.id, &book.lines).await?;
    store::append_postings(tx, record.id, None, record.currency, &[posting], now, today).await?;
    store::record_transition(
        tx,
        record.id,
        None,
        ContractStatus::PendingDeposit,
        actor,
        if input.application_id.is_some() {
            "application accepted"
        } else {
            "created by an admin"
        },
        now,
    )
    .await?;
    deps.events
        .write(
            tx,
            &ev::ContractCreated {
                contract_id: record.id,
                customer_id: record.customer_id,
                vehicle_id: record.vehicle_id,
                application_id: record.application_id,
                product_id: record.product_id,
                account_number: record.account_number.clone(),
                currency: record.currency.code().into(),
                total_payable_minor: record.total_payable_minor,
            },
        )
        .await?;
    let mut book = book;
    if let Some(up) = &input.upgrade {
        crate::upgrade::record(tx, record.id, up).await?;
        // The trade-in may meet the deposit and fee on its own.
        settle(
            state,
            tx,
            &mut record,
            &mut book,
            Outcome::default(),
            today,
            actor,
            None,
        )
        .await?;
    }
    Ok((record, book))
}

/// Moves a contract to `to`, recording the transition.
pub(crate) async fn transition(
    tx: &mut Tx,
    c: &mut ContractRecord,
    to: ContractStatus,
    actor: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let from = c.status;
    c.status = from.transition(to).map_err(conflict)?;
    store::record_transition(tx, c.id, Some(from), to, actor, reason, now).await?;
    Ok(())
}

/// The payoff of a contract on `today`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Payoff {
    pub principal_minor: i64,
    /// Interest due by today plus, when the product waives future interest,
    /// the current period's interest accrued to today; otherwise all
    /// remaining interest.
    pub interest_minor: i64,
    pub fees_minor: i64,
    pub penalties_minor: i64,
    /// Credit already received and waiting, taken off the amount.
    pub credit_minor: i64,
    pub amount_minor: i64,
    /// Interest that paying `amount_minor` today would waive.
    pub interest_waived_minor: i64,
    #[serde(skip)]
    pub waivable: Vec<(u32, i64)>,
}

/// Works out the payoff of `book` on `today` under the contract's product.
pub fn payoff(c: &ContractRecord, book: &Book, today: NaiveDate) -> Payoff {
    let principal = book.outstanding_of(Component::Principal);
    let fees = book.outstanding_of(Component::Fees);
    let penalties = book.outstanding_of(Component::Penalties);
    let all_interest = book.outstanding_of(Component::Interest);
    let mut waivable = Vec::new();
    let interest = if c.product.payoff_waives_future_interest && c.start_date.is_some() {
        let mut kept = 0;
        let mut previous_due = c.start_date.unwrap_or(today);
        let mut current_seen = false;
        for line in book.lines.iter().filter(|l| l.number > 0) {
            let owed = line.outstanding(Component::Interest);
            if line.due_date <= today {
                kept += owed;
            } else if !current_seen {
                // The running period: its interest accrues day by day.
                current_seen = true;
                let period = (line.due_date - previous_due).num_days().max(1);
                let elapsed = (today - previous_due).num_days().clamp(0, period);
                let accrued = crate::domain::schedule::prorate(
                    line.due[Component::Interest.index()],
                    elapsed,
                    period,
                );
                let accrued = (accrued - line.paid[Component::Interest.index()]).clamp(0, owed);
                kept += accrued;
                if owed > accrued {
                    waivable.push((line.number, owed - accrued));
                }
            } else if owed > 0 {
                waivable.push((line.number, owed));
            }
            previous_due = line.due_date;
        }
        kept
    } else {
        all_interest
    };
    let gross = principal + interest + fees + penalties;
    Payoff {
        principal_minor: principal,
        interest_minor: interest,
        fees_minor: fees,
        penalties_minor: penalties,
        credit_minor: book.credit_minor,
        amount_minor: (gross - book.credit_minor).max(0),
        interest_waived_minor: all_interest - interest,
        waivable,
    }
}

/// After any change to a book: apply waiting credit, activate or pay off the
/// contract when that follows, refresh its arrears, and save it all with the
/// postings and events. `aging` is true for the daily job.
#[allow(clippy::too_many_arguments)]
pub async fn settle(
    state: &AppState,
    tx: &mut Tx,
    c: &mut ContractRecord,
    book: &mut Book,
    mut outcome: Outcome,
    today: NaiveDate,
    actor: Option<Uuid>,
    payment: Option<Uuid>,
) -> Result<(), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    if c.status == ContractStatus::PendingDeposit {
        if let Some(up) = crate::upgrade::pending(tx, c.id).await? {
            crate::upgrade::try_trade_in(state, tx, c, book, &up, today).await?;
        }
    }
    if c.status.takes_payments() {
        // A payoff on a product that waives future interest.
        if c.product.payoff_waives_future_interest
            && c.start_date.is_some()
            && book.credit_minor > 0
        {
            let p = payoff(c, book, today);
            if !p.waivable.is_empty() && book.credit_minor >= p.amount_minor + p.credit_minor {
                let waived = book.waive_interest(&p.waivable);
                outcome = crate::domain::book::merge([outcome, waived]);
            }
        }
        let order = c.product.allocation.clone();
        let allocated = book.allocate(today, c.start_date.is_some(), &order);
        outcome = crate::domain::book::merge([outcome, allocated]);
    }
    if c.status == ContractStatus::PendingDeposit && book.deposit_paid() {
        transition(
            tx,
            c,
            ContractStatus::Active,
            actor,
            "deposit and fee paid",
            now,
        )
        .await?;
        c.start_date = Some(today);
        c.aged_through = today;
        let freq = c.product.frequency;
        for line in book.lines.iter_mut().filter(|l| l.number > 0) {
            line.due_date = freq.due_date(today, line.number).ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("a due date falls outside the calendar"))
            })?;
            if !outcome.touched.contains(&line.number) {
                outcome.touched.push(line.number);
            }
        }
        deps.events
            .write(
                tx,
                &ev::ContractActivated {
                    contract_id: c.id,
                    customer_id: c.customer_id,
                    vehicle_id: c.vehicle_id,
                },
            )
            .await?;
    }
    if matches!(
        c.status,
        ContractStatus::Active | ContractStatus::Paused | ContractStatus::Defaulted
    ) && book.outstanding() == 0
    {
        transition(
            tx,
            c,
            ContractStatus::PaidOff,
            actor,
            "everything paid",
            now,
        )
        .await?;
        c.paused_on = None;
        c.pause_days = None;
        deps.events
            .write(
                tx,
                &ev::ContractPaidOff {
                    contract_id: c.id,
                    customer_id: c.customer_id,
                    vehicle_id: c.vehicle_id,
                },
            )
            .await?;
    }
    refresh_arrears(state, tx, c, book, today).await?;
    store::save_lines(tx, c.id, book, &outcome.touched).await?;
    store::append_postings(tx, c.id, payment, c.currency, &outcome.postings, now, today).await?;
    c.credit_minor = book.credit_minor;
    c.updated_at = now;
    store::update_contract(tx, c).await?;
    Ok(())
}

/// Recomputes days past due, bucket and overdue amount; publishes a bucket
/// change. A paused contract keeps the arrears it had when paused.
async fn refresh_arrears(
    state: &AppState,
    tx: &mut Tx,
    c: &mut ContractRecord,
    book: &Book,
    today: NaiveDate,
) -> Result<(), ApiError> {
    if c.status == ContractStatus::Paused {
        return Ok(());
    }
    let live = c.status.accrues_arrears();
    let dpd = if live { book.days_past_due(today) } else { 0 };
    let overdue = if live { book.overdue_minor(today) } else { 0 };
    let bucket = state.config.bucket(dpd);
    let changed = bucket != c.bucket;
    c.days_past_due = dpd;
    c.overdue_minor = overdue;
    if changed {
        c.bucket = bucket.clone();
        state
            .deps
            .events
            .write(
                tx,
                &ev::ArrearsChanged {
                    contract_id: c.id,
                    customer_id: c.customer_id,
                    vehicle_id: c.vehicle_id,
                    days_past_due: dpd,
                    bucket,
                    overdue_minor: overdue,
                },
            )
            .await?;
    }
    Ok(())
}

/// Locks and loads a contract and its book.
pub async fn load_locked(
    state: &AppState,
    tx: &mut Tx,
    id: Uuid,
) -> Result<(ContractRecord, Book), ApiError> {
    let lock = store::for_update(&state.deps.db);
    let c = store::find_contract(tx, id, lock)
        .await?
        .ok_or(ApiError::NotFound("contract"))?;
    let book = store::load_book(tx, &c).await?;
    Ok((c, book))
}

/// Takes a payment of `amount` by `method` and applies it. `payment_id` is
/// fresh for cash; for mobile money it is the money request's (or paybill
/// payment's) id, so the same money can never be credited twice.
#[allow(clippy::too_many_arguments)]
pub async fn take_payment(
    state: &AppState,
    tx: &mut Tx,
    contract_id: Uuid,
    payment_id: Uuid,
    amount_minor: i64,
    method: &str,
    by: Uuid,
) -> Result<(PaymentRecord, ContractRecord, Book), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let today = state.today();
    let (mut c, mut book) = load_locked(state, tx, contract_id).await?;
    if !c.status.takes_payments() {
        return Err(ApiError::Conflict(format!(
            "the contract is {} and takes no payments",
            c.status
        )));
    }
    let days_late = c.days_past_due;
    let payment = PaymentRecord {
        id: payment_id,
        contract_id: c.id,
        customer_id: c.customer_id,
        amount_minor,
        currency: c.currency,
        method: method.to_owned(),
        status: "received".into(),
        days_late,
        received_by: by,
        received_at: now,
        local_date: today,
        reversed_by: None,
        reversed_at: None,
        reversal_reason: None,
    };
    store::insert_payment(tx, &payment).await?;
    let received = book.receive(amount_minor, method);
    let outcome = Outcome {
        postings: vec![received],
        touched: Vec::new(),
    };
    settle(
        state,
        tx,
        &mut c,
        &mut book,
        outcome,
        today,
        Some(by),
        Some(payment.id),
    )
    .await?;
    deps.events
        .write(
            tx,
            &ev::PaymentReceived {
                payment_id: payment.id,
                contract_id: c.id,
                customer_id: c.customer_id,
                amount_minor,
                currency: c.currency.code().into(),
                method: method.to_owned(),
                days_late,
            },
        )
        .await?;
    Ok((payment, c, book))
}

/// Reverses a payment: a new transaction takes the money back out.
pub async fn reverse_payment(
    state: &AppState,
    tx: &mut Tx,
    payment_id: Uuid,
    by: Uuid,
    reason: &str,
) -> Result<(PaymentRecord, ContractRecord), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let today = state.today();
    let payment = store::find_payment(tx, payment_id)
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    let (mut c, mut book) = load_locked(state, tx, payment.contract_id).await?;
    if matches!(
        c.status,
        ContractStatus::OwnershipTransferred
            | ContractStatus::WrittenOff
            | ContractStatus::Upgraded
    ) {
        return Err(ApiError::Conflict(format!(
            "the contract is {}; its payments can no longer be reversed",
            c.status
        )));
    }
    if payment.method == crate::upgrade::TRADE_IN {
        return Err(ApiError::Conflict(
            "a trade-in is not money received and cannot be reversed".into(),
        ));
    }
    if !store::mark_reversed(tx, payment_id, by, reason, now).await? {
        return Err(ApiError::Conflict("the payment is already reversed".into()));
    }
    let order = c.product.allocation.clone();
    let outcome = book.reverse(payment.amount_minor, &payment.method, &order);
    if c.status == ContractStatus::PaidOff && book.outstanding() > 0 {
        transition(
            tx,
            &mut c,
            ContractStatus::Active,
            Some(by),
            "payment reversed",
            now,
        )
        .await?;
    }
    settle(
        state,
        tx,
        &mut c,
        &mut book,
        outcome,
        today,
        Some(by),
        Some(payment_id),
    )
    .await?;
    deps.events
        .write(
            tx,
            &ev::PaymentReversed {
                payment_id,
                contract_id: c.id,
                customer_id: c.customer_id,
                amount_minor: payment.amount_minor,
                currency: c.currency.code().into(),
                method: payment.method.clone(),
                days_late: payment.days_late,
            },
        )
        .await?;
    let mut reversed = payment;
    reversed.status = "reversed".into();
    reversed.reversed_by = Some(by);
    reversed.reversed_at = Some(now);
    reversed.reversal_reason = Some(reason.to_owned());
    Ok((reversed, c))
}

/// Pauses a contract for `days` (hardship).
pub async fn pause(
    state: &AppState,
    tx: &mut Tx,
    id: Uuid,
    days: i64,
    reason: &str,
    by: Uuid,
) -> Result<ContractRecord, ApiError> {
    let now = state.deps.clock.now();
    let today = state.today();
    let (mut c, mut book) = load_locked(state, tx, id).await?;
    transition(tx, &mut c, ContractStatus::Paused, Some(by), reason, now).await?;
    c.paused_on = Some(today);
    c.pause_days = Some(days);
    settle(
        state,
        tx,
        &mut c,
        &mut book,
        Outcome::default(),
        today,
        Some(by),
        None,
    )
    .await?;
    state
        .deps
        .events
        .write(
            tx,
            &ev::ContractPaused {
                contract_id: c.id,
                customer_id: c.customer_id,
                vehicle_id: c.vehicle_id,
                days,
                reason: reason.to_owned(),
            },
        )
        .await?;
    Ok(c)
}

/// Ends a pause: the remaining due dates move by the days it lasted (at most
/// the days granted).
pub async fn resume(
    state: &AppState,
    tx: &mut Tx,
    id: Uuid,
    by: Option<Uuid>,
    today: NaiveDate,
) -> Result<ContractRecord, ApiError> {
    let now = state.deps.clock.now();
    let (mut c, mut book) = load_locked(state, tx, id).await?;
    if c.status != ContractStatus::Paused {
        return Err(ApiError::Conflict(format!(
            "the contract is {}, not paused",
            c.status
        )));
    }
    let paused_on = c.paused_on.unwrap_or(today);
    let granted = c.pause_days.unwrap_or(0);
    let shift = (today - paused_on).num_days().clamp(0, granted);
    let touched = book.shift_due_dates(paused_on, shift as u64);
    transition(tx, &mut c, ContractStatus::Active, by, "pause ended", now).await?;
    c.paused_on = None;
    c.pause_days = None;
    let outcome = Outcome {
        postings: Vec::new(),
        touched,
    };
    settle(state, tx, &mut c, &mut book, outcome, today, by, None).await?;
    state
        .deps
        .events
        .write(
            tx,
            &ev::ContractResumed {
                contract_id: c.id,
                customer_id: c.customer_id,
                vehicle_id: c.vehicle_id,
                days_shifted: shift,
            },
        )
        .await?;
    Ok(c)
}

/// Declares a contract in default.
pub async fn default(
    state: &AppState,
    tx: &mut Tx,
    id: Uuid,
    reason: &str,
    by: Uuid,
) -> Result<ContractRecord, ApiError> {
    let now = state.deps.clock.now();
    let today = state.today();
    let (mut c, mut book) = load_locked(state, tx, id).await?;
    transition(tx, &mut c, ContractStatus::Defaulted, Some(by), reason, now).await?;
    c.paused_on = None;
    c.pause_days = None;
    settle(
        state,
        tx,
        &mut c,
        &mut book,
        Outcome::default(),
        today,
        Some(by),
        None,
    )
    .await?;
    state
        .deps
        .events
        .write(
            tx,
            &ev::ContractDefaulted {
                contract_id: c.id,
                customer_id: c.customer_id,
                vehicle_id: c.vehicle_id,
                reason: reason.to_owned(),
            },
        )
        .await?;
    Ok(c)
}

/// Writes off what a defaulted contract still owes.
pub async fn write_off(
    state: &AppState,
    tx: &mut Tx,
    id: Uuid,
    reason: &str,
    by: Uuid,
) -> Result<ContractRecord, ApiError> {
    let now = state.deps.clock.now();
    let today = state.today();
    let (mut c, mut book) = load_locked(state, tx, id).await?;
    transition(
        tx,
        &mut c,
        ContractStatus::WrittenOff,
        Some(by),
        reason,
        now,
    )
    .await?;
    let amount = book.outstanding();
    let outcome = book.write_off();
    settle(state, tx, &mut c, &mut book, outcome, today, Some(by), None).await?;
    state
        .deps
        .events
        .write(
            tx,
            &ev::ContractWrittenOff {
                contract_id: c.id,
                customer_id: c.customer_id,
                vehicle_id: c.vehicle_id,
                amount_minor: amount,
                currency: c.currency.code().into(),
                reason: reason.to_owned(),
            },
        )
        .await?;
    Ok(c)
}

/// Cancels a contract whose deposit was never paid.
pub async fn cancel(
    state: &AppState,
    tx: &mut Tx,
    id: Uuid,
    reason: &str,
    by: Uuid,
) -> Result<ContractRecord, ApiError> {
    let now = state.deps.clock.now();
    let today = state.today();
    let (mut c, mut book) = load_locked(state, tx, id).await?;
    if book.credit_minor > 0 || book.lines.iter().any(|l| l.total_paid() > 0) {
        return Err(ApiError::Conflict(
            "money has been received on this contract: reverse its payments first".into(),
        ));
    }
    transition(tx, &mut c, ContractStatus::Cancelled, Some(by), reason, now).await?;
    let outcome = book.write_off_as_cancelled();
    settle(state, tx, &mut c, &mut book, outcome, today, Some(by), None).await?;
    Ok(c)
}

/// Ages one contract through `today`, a day at a time from where it was
/// last aged, so late fees and bucket changes happen on the days they would
/// have even when the clock jumped: resumes pauses that ran out, charges
/// late fees after the grace days, applies waiting credit to what fell due.
pub async fn age(
    state: &AppState,
    tx: &mut Tx,
    mut c: ContractRecord,
    today: NaiveDate,
) -> Result<(), ApiError> {
    let mut day = c.aged_through;
    let mut book = store::load_book(tx, &c).await?;
    while day < today {
        let mut next = day.succ_opt().unwrap_or(today);
        // Days on which nothing can change are skipped: a paused contract
        // waits for its pause to end; a contract with nothing overdue waits
        // for its next unpaid due date.
        if c.status == ContractStatus::Paused {
            if let Some(end) = pause_end(&c) {
                next = next.max(end.min(today));
            }
        } else if book.oldest_overdue(next).is_none() {
            let next_due = book
                .lines
                .iter()
                .filter(|l| l.total_outstanding() > 0 && l.due_date >= next)
                .map(|l| l.due_date)
                .min();
            next = next_due.unwrap_or(today).clamp(next, today);
        }
        day = next;
        if c.status == ContractStatus::Paused && pause_end(&c).is_some_and(|e| day >= e) {
            c = resume(state, tx, c.id, None, day).await?;
            book = store::load_book(tx, &c).await?;
        }
        let outcome = if c.status.accrues_arrears() {
            book.charge_late_fees(day, &c.product.late_fee)
        } else {
            Outcome::default()
        };
        c.aged_through = day;
        settle(state, tx, &mut c, &mut book, outcome, day, None, None).await?;
    }
    Ok(())
}

/// The day a pause runs out.
fn pause_end(c: &ContractRecord) -> Option<NaiveDate> {
    c.paused_on.and_then(|p| {
        p.checked_add_days(chrono::Days::new(c.pause_days.unwrap_or(0).max(0) as u64))
    })
}

/// Runs the daily job for `today` over every contract not yet aged: in
/// batches, each claimed with row locks other replicas skip. Returns how
/// many contracts were aged.
pub async fn age_all(state: &AppState, today: NaiveDate) -> Result<usize, ApiError> {
    let deps = &state.deps;
    let mut total = 0;
    loop {
        let mut tx = deps.db.begin().await?;
        let batch =
            store::claim_unaged(&mut tx, &deps.db, today, state.config.arrears_batch).await?;
        let n = batch.len();
        for c in batch {
            age(state, &mut tx, c, today).await?;
        }
        deps.events.commit(tx).await?;
        total += n;
        if n < state.config.arrears_batch {
            return Ok(total);
        }
    }
}

/// The daily job: polls on a real-time interval, decides by the injected clock.
pub async fn run_daily(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let poll = state.config.arrears_poll;
    let mut purged_on = None;
    let mut retried_on = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        let today = state.today();
        match age_all(&state, today).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(contracts = n, %today, "contracts aged"),
            Err(e) => tracing::warn!(error = %e, "the daily arrears job failed; will retry"),
        }
        // After ageing, so credit waiting for today's installment is applied first.
        match crate::reminders::remind_due(&state, today, state.deps.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reminders = n, %today, "installment-due reminders published"),
            Err(e) => tracing::warn!(error = %e, "installment-due reminders failed; will retry"),
        }
        if retried_on != Some(today) {
            match crate::upgrade::retry_waiting(&state, today).await {
                Ok(n) => {
                    retried_on = Some(today);
                    if n > 0 {
                        tracing::info!(contracts = n, "waiting upgrades traded in");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "retrying waiting upgrades failed"),
            }
        }
        if purged_on != Some(today) {
            match miliki_platform::idempotency::purge(&state.deps.db, state.deps.clock.now()).await
            {
                Ok(_) => purged_on = Some(today),
                Err(e) => tracing::warn!(error = %e, "purging old idempotency keys failed"),
            }
        }
    }
}

//! Collecting by mobile money. A prompt (STK push, request to pay) is written
//! as a money request before it is sent, so a crash can never send it twice;
//! whatever a callback says, the rail is asked (STK query, MoMo status,
//! transaction status) before money touches the ledger; and the money
//! request's id becomes the ledger payment's id, so the same money is
//! credited once by construction. The scheduler collects what is due on the
//! injected clock, by claims in the database rather than timers in memory.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use futures::StreamExt;
use miliki_events::catalogue::payments as ev;
use miliki_mobile_money::daraja::{StkPush, StkQuery};
use miliki_mobile_money::momo::{MomoState, RequestToPay};
use miliki_mobile_money::RailError;
use miliki_platform::db::{is_unique_violation, Tx};
use miliki_platform::money::Currency;
use miliki_platform::ApiError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::contract::ContractStatus;
use crate::money::{
    self, CollectionDay, CollectionSettings, MoneyRequest, Origin, PaybillPayment, PaybillStatus,
    RequestStatus, RequestUpdate,
};
use crate::ops;
use crate::rails::Rail;
use crate::state::AppState;
use crate::store;

/// The encryption field (and blind-index namespace) of payers' phones.
pub const PHONE_FIELD: &str = "payments.payer_phone";
/// Who receives money nobody in particular took: the scheduler, the paybill.
pub const SYSTEM: Uuid = Uuid::nil();
/// Prompts per contract per collection day, at most.
pub const PROMPTS_PER_DAY: i64 = 3;
/// The collection time of day when none was chosen.
pub const DEFAULT_COLLECT_AT: &str = "07:00";

/// How long after an STK push that got a CheckoutRequestID the rail is
/// queried when no callback came (Daraja's prompt times out on the phone in
/// about a minute).
const MPESA_CHECK_AFTER: i64 = 60;
/// How often a MoMo request still pending is polled (MoMo calls back once
/// and never retries).
const MOMO_POLL_EVERY: i64 = 30;
/// How long a push that got no answer at all waits for a callback before it
/// is given up as failed (nothing can be queried without its id).
const NO_ANSWER_GIVE_UP: i64 = 2 * 3600;
/// How long a paybill payment waits for its transaction status result
/// before the query is sent again.
const PAYBILL_REQUERY_AFTER: i64 = 300;

pub fn phone_index(state: &AppState, e164: &str) -> String {
    state.deps.keyring.blind_index(PHONE_FIELD, e164)
}

/// Digits with the country code, no `+`: how both rails write a phone.
fn rail_phone(e164: &str) -> String {
    e164.trim_start_matches('+').to_owned()
}

/// Whole units for the rail (amounts are rounded up before they get here).
pub fn whole_units(amount_minor: i64, currency: Currency) -> i64 {
    amount_minor / 10_i64.pow(currency.exponent())
}

/// Which rails serve a currency: M-Pesa (Daraja) collects shillings only.
pub fn rail_takes(rail: Rail, currency: Currency) -> bool {
    match rail {
        Rail::Mpesa => currency == Currency::Kes,
        Rail::MtnMomo => true,
    }
}

/// A new prompt, written (queued) inside the caller's transaction.
pub struct NewPrompt {
    pub contract_id: Uuid,
    pub customer_id: Uuid,
    pub rail: Rail,
    /// E.164.
    pub phone: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub origin: Origin,
    pub requested_by: Option<Uuid>,
    pub collection_day: Option<NaiveDate>,
}

/// Writes a queued money request. A prompt already in flight for the
/// contract or the phone is a 409.
pub async fn queue(state: &AppState, tx: &mut Tx, p: NewPrompt) -> Result<MoneyRequest, ApiError> {
    let now = state.deps.clock.now();
    let request = MoneyRequest {
        id: miliki_platform::id::new_id(),
        contract_id: p.contract_id,
        customer_id: p.customer_id,
        rail: p.rail,
        phone: state.deps.keyring.encrypt_str(PHONE_FIELD, &p.phone),
        phone_index: phone_index(state, &p.phone),
        amount_minor: p.amount_minor,
        currency: p.currency,
        origin: p.origin,
        requested_by: p.requested_by,
        collection_day: p.collection_day,
        status: RequestStatus::Queued,
        // MoMo's reference is ours to choose (a UUID v4), and known before
        // sending, so a request cut off mid-send can still be looked up.
        provider_ref: (p.rail == Rail::MtnMomo).then(|| Uuid::new_v4().to_string()),
        merchant_ref: None,
        receipt: None,
        result_code: None,
        result_text: None,
        // If this process dies before the send is recorded, the checker
        // resolves the request from here.
        check_at: Some(now + Duration::seconds(MPESA_CHECK_AFTER)),
        checks: 0,
        created_at: now,
        updated_at: now,
    };
    match money::insert_request(tx, &request).await {
        Ok(()) => Ok(request),
        Err(e) if is_unique_violation(&e) => Err(ApiError::Conflict(
            "a payment prompt is already in flight for this contract or this phone".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// What a rail said to a prompt, before it is written down.
pub enum SendOutcome {
    /// The rail took it: a result will come (M-Pesa: with these ids).
    Taken {
        checkout: Option<String>,
        merchant: Option<String>,
        check_in: i64,
    },
    /// Nothing happened at the payer's end.
    Failed {
        code: String,
        text: String,
        uncount: bool,
    },
    /// No answer: it may have reached the payer; only a query can tell.
    Unanswered,
}

/// Sends a queued request to its rail and records what the rail said.
pub async fn send(state: &AppState, request: &MoneyRequest, phone_e164: &str, account: &str) {
    let outcome = push(state, request, phone_e164, account).await;
    record_sends(state, vec![(request.clone(), outcome)]).await;
}

/// The network half of a send: asks the rail, writes nothing.
pub async fn push(
    state: &AppState,
    request: &MoneyRequest,
    phone_e164: &str,
    account: &str,
) -> SendOutcome {
    let rails = &state.rails;
    if !rails.allows(request.rail) {
        return SendOutcome::Failed {
            code: "rail_unavailable".into(),
            text: "the rail keeps failing; its circuit is open".into(),
            uncount: true,
        };
    }
    let amount = whole_units(request.amount_minor, request.currency);
    let result = match request.rail {
        Rail::Mpesa => {
            let result = rails
                .mpesa
                .stk_push(&StkPush {
                    phone: rail_phone(phone_e164),
                    amount,
                    account_reference: account.to_owned(),
                    description: "Installment".into(),
                })
                .await;
            rails.record(Rail::Mpesa, &result);
            result.map(|a| SendOutcome::Taken {
                checkout: Some(a.checkout_request_id),
                merchant: Some(a.merchant_request_id),
                check_in: MPESA_CHECK_AFTER,
            })
        }
        Rail::MtnMomo => {
            let Some(reference) = request
                .provider_ref
                .as_deref()
                .and_then(|r| r.parse::<Uuid>().ok())
            else {
                return SendOutcome::Failed {
                    code: "internal".into(),
                    text: "no reference".into(),
                    uncount: true,
                };
            };
            let result = rails
                .momo
                .request_to_pay(
                    reference,
                    &RequestToPay {
                        amount,
                        currency: request.currency.code().to_owned(),
                        phone: rail_phone(phone_e164),
                        external_id: request.id.to_string(),
                        payer_message: format!("Miliki {account}"),
                        payee_note: account.to_owned(),
                    },
                )
                .await;
            rails.record(Rail::MtnMomo, &result);
            result.map(|()| SendOutcome::Taken {
                checkout: None,
                merchant: None,
                check_in: MOMO_POLL_EVERY,
            })
        }
    };
    match result {
        Ok(taken) => taken,
        Err(RailError::Refused { code, message }) => SendOutcome::Failed {
            code,
            text: message,
            uncount: false,
        },
        Err(RailError::Unavailable(m)) => SendOutcome::Failed {
            code: "unavailable".into(),
            text: m,
            uncount: true,
        },
        Err(RailError::NoAnswer(m)) => {
            tracing::warn!(request = %request.id, "the rail did not answer a prompt: {m}");
            SendOutcome::Unanswered
        }
    }
}

/// Writes what the rails said to many prompts: the ones taken or unanswered
/// in one transaction (a commit per prompt would bound collection by the
/// disk), failures one by one since each moves its collection day on.
pub async fn record_sends(state: &AppState, sends: Vec<(MoneyRequest, SendOutcome)>) {
    let now = state.deps.clock.now();
    let mut failures = Vec::new();
    let written = async {
        let mut tx = state.deps.db.begin().await?;
        for (request, outcome) in &sends {
            let update = match outcome {
                SendOutcome::Taken {
                    checkout,
                    merchant,
                    check_in,
                } => RequestUpdate {
                    status: Some(RequestStatus::Sent),
                    provider_ref: checkout.as_deref(),
                    merchant_ref: merchant.as_deref(),
                    check_at: Some(Some(now + Duration::seconds(*check_in))),
                    ..Default::default()
                },
                SendOutcome::Unanswered => RequestUpdate {
                    status: Some(RequestStatus::Unknown),
                    result_text: Some(
                        "no answer from the rail; waiting for its callback or a query",
                    ),
                    check_at: Some(Some(now + Duration::seconds(MPESA_CHECK_AFTER))),
                    ..Default::default()
                },
                SendOutcome::Failed { .. } => continue,
            };
            money::update_request(&mut tx, request.id, &update, now).await?;
        }
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    if let Err(e) = written {
        // The requests stay queued with their check time: the checker
        // resolves them by query, so nothing is sent twice or lost.
        tracing::warn!("recording what the rail said failed: {e}");
    }
    for (request, outcome) in sends {
        if let SendOutcome::Failed {
            code,
            text,
            uncount,
        } = outcome
        {
            failures.push(async move {
                if let Err(e) = fail(state, &request, &code, &text, uncount).await {
                    tracing::warn!(request = %request.id, "recording a failed prompt failed: {e}");
                }
            });
        }
    }
    futures::future::join_all(failures).await;
}

async fn update(state: &AppState, id: Uuid, u: RequestUpdate<'_>) -> Result<bool, ApiError> {
    let mut conn = state.deps.db.writer().acquire().await?;
    Ok(money::update_request(&mut conn, id, &u, state.deps.clock.now()).await?)
}

/// Asks the rail how an in-flight request went and acts on the answer. Every
/// path that credits money goes through here. `receipt` is what a callback
/// said, kept only if the rail confirms the payment.
pub async fn check(state: &AppState, id: Uuid, receipt: Option<String>) -> Result<(), ApiError> {
    let request = {
        let mut conn = state.deps.db.reader().acquire().await?;
        match money::find_request(&mut conn, id, "").await? {
            Some(r) if r.status.in_flight() => r,
            _ => return Ok(()),
        }
    };
    let now = state.deps.clock.now();
    let rails = &state.rails;
    let later = |secs: i64| RequestUpdate {
        check_at: Some(Some(now + Duration::seconds(secs))),
        count_check: true,
        ..Default::default()
    };
    if !rails.allows(request.rail) {
        update(state, id, later(MPESA_CHECK_AFTER)).await?;
        return Ok(());
    }
    match (request.rail, request.provider_ref.clone()) {
        (Rail::Mpesa, None) => {
            // The push never got a CheckoutRequestID: nothing to query. A
            // callback may still adopt it (by phone and amount).
            if now - request.created_at >= Duration::seconds(NO_ANSWER_GIVE_UP) {
                fail(
                    state,
                    &request,
                    "no_answer",
                    "the rail never answered the prompt",
                    false,
                )
                .await?;
            } else {
                update(
                    state,
                    id,
                    RequestUpdate {
                        status: Some(RequestStatus::Unknown),
                        check_at: Some(Some(
                            request.created_at + Duration::seconds(NO_ANSWER_GIVE_UP),
                        )),
                        count_check: true,
                        ..Default::default()
                    },
                )
                .await?;
            }
        }
        (Rail::Mpesa, Some(checkout)) => {
            let answer = rails.mpesa.stk_query(&checkout).await;
            rails.record(Rail::Mpesa, &answer);
            match answer {
                Ok(StkQuery::Pending) => {
                    update(state, id, later(MPESA_CHECK_AFTER)).await?;
                }
                Ok(StkQuery::Done {
                    result_code,
                    result_desc,
                }) if result_code == "0" => {
                    let receipt = receipt.or_else(|| request.receipt.clone());
                    credit(state, request, receipt, result_desc).await;
                }
                Ok(StkQuery::Done {
                    result_code,
                    result_desc,
                }) => {
                    fail(state, &request, &result_code, &result_desc, false).await?;
                }
                Err(RailError::Refused { code, message }) if request.checks >= 5 => {
                    fail(state, &request, &code, &message, false).await?;
                }
                Err(_) => {
                    update(state, id, later(MPESA_CHECK_AFTER)).await?;
                }
            }
        }
        (Rail::MtnMomo, reference) => {
            let Some(reference) = reference.and_then(|r| r.parse::<Uuid>().ok()) else {
                fail(state, &request, "internal", "no reference", true).await?;
                return Ok(());
            };
            let answer = rails.momo.status(reference).await;
            rails.record(Rail::MtnMomo, &answer);
            match answer {
                Ok(s) => match s.status {
                    MomoState::Pending => {
                        update(state, id, later(MOMO_POLL_EVERY)).await?;
                    }
                    MomoState::Successful => {
                        let paid = s.amount_minor(request.currency.exponent());
                        if paid != Some(request.amount_minor) {
                            review(
                                state,
                                request.rail,
                                "status",
                                Some(&reference.to_string()),
                                "the rail reports a different amount than was requested",
                                &serde_json::to_string(&s).unwrap_or_default(),
                            )
                            .await;
                            fail(
                                state,
                                &request,
                                "amount_mismatch",
                                "the rail reports a different amount; kept for review",
                                false,
                            )
                            .await?;
                        } else {
                            credit(
                                state,
                                request,
                                s.financial_transaction_id.clone(),
                                "SUCCESSFUL".into(),
                            )
                            .await;
                        }
                    }
                    MomoState::Failed => {
                        let (code, text) = match &s.reason {
                            Some(r) => (r.code.clone(), r.message.clone().unwrap_or_default()),
                            None => ("FAILED".to_owned(), String::new()),
                        };
                        fail(state, &request, &code, &text, false).await?;
                    }
                },
                Err(RailError::Refused { code, .. })
                    if code == "RESOURCE_NOT_FOUND" && request.status != RequestStatus::Sent =>
                {
                    // Cut off before the rail took it: nobody was asked to pay.
                    fail(
                        state,
                        &request,
                        "not_sent",
                        "the prompt never reached the rail",
                        true,
                    )
                    .await?;
                }
                Err(_) => {
                    update(state, id, later(MOMO_POLL_EVERY)).await?;
                }
            }
        }
    }
    Ok(())
}

/// Money the rail confirmed, on its way to the ledger.
pub struct Confirmed {
    request: MoneyRequest,
    receipt: Option<String>,
    text: String,
}

/// Hands confirmed money to the credit writer, which commits many at once;
/// when it is busy or gone, credits here and now.
async fn credit(state: &AppState, request: MoneyRequest, receipt: Option<String>, text: String) {
    let confirmed = Confirmed {
        request,
        receipt,
        text,
    };
    if let Err(e) = state.credits.try_send(confirmed) {
        let confirmed = match e {
            tokio::sync::mpsc::error::TrySendError::Full(c)
            | tokio::sync::mpsc::error::TrySendError::Closed(c) => c,
        };
        credit_one(state, &confirmed).await;
    }
}

async fn credit_one(state: &AppState, c: &Confirmed) {
    if let Err(e) = credit_batch(state, std::slice::from_ref(c)).await {
        // Still in flight with its check time: credited on a later check.
        tracing::warn!(request = %c.request.id, "crediting confirmed money failed: {e}");
    }
}

/// Credits confirmed money in one transaction, contracts in id order (so
/// replicas crediting at once lock them in the same order).
async fn credit_batch(state: &AppState, batch: &[Confirmed]) -> Result<(), ApiError> {
    let mut order: Vec<&Confirmed> = batch.iter().collect();
    order.sort_by_key(|c| (c.request.contract_id, c.request.id));
    let mut tx = state.deps.db.begin().await?;
    for c in order {
        credit_in(state, &mut tx, c).await?;
    }
    state.deps.events.commit(tx).await?;
    Ok(())
}

/// The credit writer: a background job taking confirmed money off the queue
/// in batches of up to [`CREDIT_BATCH`]. A batch that fails is retried one
/// by one, so one bad credit cannot hold the others back. Anything still
/// queued at shutdown is in flight in the database and is found again by
/// the checker.
pub async fn run_credits(
    state: AppState,
    mut queue: tokio::sync::mpsc::Receiver<Confirmed>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = queue.recv() => match next {
                Some(c) => c,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < CREDIT_BATCH {
            match queue.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if let Err(e) = credit_batch(&state, &batch).await {
            tracing::warn!(
                size = batch.len(),
                "a credit batch failed, crediting one by one: {e}"
            );
            for c in &batch {
                credit_one(&state, c).await;
            }
        }
    }
}

/// Credits per transaction, at most.
const CREDIT_BATCH: usize = 256;

/// The rail confirmed the money: the request succeeds and the ledger takes
/// a payment with the request's id, in one transaction.
async fn credit_in(state: &AppState, tx: &mut Tx, c: &Confirmed) -> Result<(), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let request = &c.request;
    let receipt = c.receipt.as_deref();
    let text = c.text.as_str();
    let moved = money::update_request(
        tx,
        request.id,
        &RequestUpdate {
            status: Some(RequestStatus::Succeeded),
            receipt,
            result_code: Some("0"),
            result_text: Some(text),
            check_at: Some(None),
            ..Default::default()
        },
        now,
    )
    .await?;
    if !moved {
        return Ok(()); // settled by someone else first
    }
    let by = request.requested_by.unwrap_or(SYSTEM);
    match ops::take_payment(
        state,
        tx,
        request.contract_id,
        request.id,
        request.amount_minor,
        request.rail.as_str(),
        by,
    )
    .await
    {
        Ok(_) => {}
        Err(ApiError::Conflict(why)) => {
            // The contract stopped taking payments while the prompt was out
            // (cancelled, paid off): the money is real, so it waits in
            // suspense for an admin rather than being lost.
            money::insert_paybill(
                tx,
                &PaybillPayment {
                    id: request.id,
                    trans_id: receipt
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("request-{}", request.id)),
                    bill_ref: String::new(),
                    amount_minor: request.amount_minor,
                    currency: request.currency,
                    msisdn: request.phone.clone(),
                    contract_id: None,
                    status: PaybillStatus::Suspense,
                    note: Some(why),
                    received_at: now,
                    updated_at: now,
                    assigned_by: None,
                },
            )
            .await?;
        }
        Err(e) => return Err(e),
    }
    if request.origin == Origin::Request {
        // The first mobile-money payment of a contract chooses how it is
        // collected from then on, unless someone already chose.
        money::put_settings(
            tx,
            &CollectionSettings {
                contract_id: request.contract_id,
                rail: request.rail,
                phone: request.phone.clone(),
                phone_index: request.phone_index.clone(),
                collect_at: DEFAULT_COLLECT_AT.into(),
                updated_by: request.requested_by,
                updated_at: now,
            },
            true,
        )
        .await?;
    }
    if let Some(day) = request.collection_day {
        money::schedule_day(tx, request.contract_id, day, None, "paid", false, now).await?;
    }
    Ok(())
}

/// The request failed: recorded with the rail's code and text, and the
/// collection day (if any) retried by the failure's rule. `uncount`: nothing
/// reached the payer, so it does not count against the day's prompts.
async fn fail(
    state: &AppState,
    request: &MoneyRequest,
    code: &str,
    text: &str,
    uncount: bool,
) -> Result<(), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let moved = money::update_request(
        &mut tx,
        request.id,
        &RequestUpdate {
            status: Some(RequestStatus::Failed),
            result_code: Some(code),
            result_text: Some(text),
            check_at: Some(None),
            ..Default::default()
        },
        now,
    )
    .await?;
    if !moved {
        return Ok(());
    }
    if let Some(day) = request.collection_day {
        let prompts =
            money::day_prompts(&mut tx, request.contract_id, day).await? - i64::from(uncount);
        let next = retry_at(
            request.rail,
            code,
            now,
            state.config.time_zone,
            day,
            prompts,
        );
        money::schedule_day(&mut tx, request.contract_id, day, next, code, uncount, now).await?;
        if next.is_none() {
            deps.events
                .write(
                    &mut tx,
                    &ev::CollectionFailed {
                        contract_id: request.contract_id,
                        customer_id: request.customer_id,
                        day: store::date_text(day),
                        amount_minor: request.amount_minor,
                        currency: request.currency.code().into(),
                        rail: request.rail.as_str().into(),
                        reason_code: code.into(),
                        prompts,
                    },
                )
                .await?;
        }
    }
    deps.events.commit(tx).await?;
    Ok(())
}

/// How a failure is retried on the same collection day, or `None` when the
/// day is over (tomorrow opens a new one while anything is still due).
pub fn retry_at(
    rail: Rail,
    code: &str,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    day: NaiveDate,
    prompts: i64,
) -> Option<DateTime<Utc>> {
    if prompts >= PROMPTS_PER_DAY {
        return None;
    }
    let local = now.with_timezone(&tz);
    let at_local = |h: u32| {
        tz.from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(h, 0, 0)?))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    let next = match retry_rule(rail, code) {
        Retry::AtNoonThenEvening => {
            if local.date_naive() == day && local.hour() < 12 {
                at_local(12)
            } else if local.date_naive() == day && local.hour() < 17 {
                at_local(17)
            } else {
                None
            }
        }
        Retry::NextDay => None,
        Retry::After(wait) => Some(now + wait),
    }?;
    (next.with_timezone(&tz).date_naive() == day).then_some(next)
}

enum Retry {
    /// Insufficient funds: at noon, then at five, then tomorrow.
    AtNoonThenEvening,
    /// The payer said no (cancelled, wrong PIN): tomorrow.
    NextDay,
    After(Duration),
}

fn retry_rule(rail: Rail, code: &str) -> Retry {
    match (rail, code) {
        (Rail::Mpesa, "1") => Retry::AtNoonThenEvening,
        (Rail::MtnMomo, "NOT_ENOUGH_FUNDS" | "PAYER_LIMIT_REACHED") => Retry::AtNoonThenEvening,
        (Rail::Mpesa, "1032" | "2001") => Retry::NextDay,
        (Rail::MtnMomo, "APPROVAL_REJECTED" | "REJECTED" | "PAYER_NOT_FOUND") => Retry::NextDay,
        // Unreachable, timed out, no answer: two hours.
        (Rail::Mpesa, "1037" | "1019" | "no_answer") => Retry::After(Duration::hours(2)),
        (Rail::MtnMomo, "EXPIRED" | "TRANSACTION_TIMEOUT" | "TIMEOUT" | "no_answer") => {
            Retry::After(Duration::hours(2))
        }
        // Subscriber locked, rule-limited, the rail down: at least two minutes.
        (_, "500.001.1001" | "17" | "unavailable" | "rail_unavailable" | "not_sent") => {
            Retry::After(Duration::minutes(2))
        }
        _ => Retry::NextDay,
    }
}

/// Keeps a callback that credited nothing, for review.
pub async fn review(
    state: &AppState,
    rail: Rail,
    kind: &str,
    reference: Option<&str>,
    reason: &str,
    body: &str,
) {
    tracing::warn!(rail = %rail, kind, reference, "callback kept for review: {reason}");
    let result = async {
        let mut conn = state.deps.db.writer().acquire().await?;
        money::record_review(
            &mut conn,
            rail,
            kind,
            reference,
            reason,
            body,
            state.deps.clock.now(),
        )
        .await
    }
    .await;
    if let Err(e) = result {
        tracing::error!("could not keep a callback for review: {e}");
    }
}

// ------------------------------------------------------------ paybill (C2B)

/// Asks the rail about a paybill payment; the answer arrives at the status
/// result callback ([`paybill_result`]).
pub async fn confirm_paybill(state: &AppState, p: &PaybillPayment) {
    let result = state
        .rails
        .mpesa
        .transaction_status(&p.trans_id, &p.id.to_string())
        .await;
    state.rails.record(Rail::Mpesa, &result);
    if let Err(e) = result {
        tracing::warn!(paybill = %p.id, "transaction status query not sent: {e}");
    }
    if let Ok(mut conn) = state.deps.db.writer().acquire().await {
        let _ = money::touch_paybill(&mut conn, p.id, state.deps.clock.now()).await;
    }
}

/// The rail's answer about a paybill payment: credited to the contract with
/// that account number, to suspense when none has it, rejected (and kept
/// for review) when the rail's facts differ from the confirmation's.
pub async fn paybill_result(
    state: &AppState,
    id: Uuid,
    confirmed: bool,
    receipt: Option<&str>,
    amount_minor: Option<i64>,
    body: &str,
) -> Result<(), ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let lock = store::for_update(&deps.db);
    let Some(p) = money::find_paybill(&mut tx, id, lock).await? else {
        drop(tx);
        review(
            state,
            Rail::Mpesa,
            "status_result",
            Some(&id.to_string()),
            "no such paybill payment",
            body,
        )
        .await;
        return Ok(());
    };
    if p.status != PaybillStatus::Confirming {
        return Ok(()); // answered already
    }
    let agrees =
        confirmed && receipt == Some(p.trans_id.as_str()) && amount_minor == Some(p.amount_minor);
    if !agrees {
        money::settle_paybill(
            &mut tx,
            p.id,
            PaybillStatus::Confirming,
            PaybillStatus::Rejected,
            None,
            Some("the rail did not confirm this payment as reported"),
            None,
            now,
        )
        .await?;
        tx.commit().await?;
        review(
            state,
            Rail::Mpesa,
            "c2b",
            Some(&p.trans_id),
            "the transaction status query did not confirm the confirmation",
            body,
        )
        .await;
        return Ok(());
    }
    let contract = store::find_contract_by_account(&mut tx, &p.bill_ref).await?;
    let target = contract.filter(|c| c.status.takes_payments() && c.currency == p.currency);
    match target {
        Some(c) => {
            ops::take_payment(
                state,
                &mut tx,
                c.id,
                p.id,
                p.amount_minor,
                "mpesa_paybill",
                SYSTEM,
            )
            .await?;
            money::settle_paybill(
                &mut tx,
                p.id,
                PaybillStatus::Confirming,
                PaybillStatus::Credited,
                Some(c.id),
                None,
                None,
                now,
            )
            .await?;
        }
        None => {
            money::settle_paybill(
                &mut tx,
                p.id,
                PaybillStatus::Confirming,
                PaybillStatus::Suspense,
                None,
                Some("no contract takes payments under this account number"),
                None,
                now,
            )
            .await?;
        }
    }
    deps.events.commit(tx).await?;
    Ok(())
}

/// Moves a suspense payment onto a contract (admins), inside the caller's
/// transaction.
pub async fn assign(
    state: &AppState,
    tx: &mut Tx,
    id: Uuid,
    contract_id: Uuid,
    by: Uuid,
) -> Result<(PaybillPayment, store::PaymentRecord), ApiError> {
    let now = state.deps.clock.now();
    let lock = store::for_update(&state.deps.db);
    let mut p = money::find_paybill(tx, id, lock)
        .await?
        .ok_or(ApiError::NotFound("payment"))?;
    if p.status != PaybillStatus::Suspense {
        return Err(ApiError::Conflict(format!(
            "the payment is {}, not in suspense",
            p.status
        )));
    }
    let (c, _) = ops::load_locked(state, tx, contract_id).await?;
    if c.currency != p.currency {
        return Err(ApiError::field(
            "contract_id",
            format!(
                "the contract is in {}, the payment in {}",
                c.currency, p.currency
            ),
        ));
    }
    let (payment, _, _) = ops::take_payment(
        state,
        tx,
        contract_id,
        p.id,
        p.amount_minor,
        "mpesa_paybill",
        by,
    )
    .await?;
    money::settle_paybill(
        tx,
        p.id,
        PaybillStatus::Suspense,
        PaybillStatus::Assigned,
        Some(contract_id),
        None,
        Some(by),
        now,
    )
    .await?;
    p.status = PaybillStatus::Assigned;
    p.contract_id = Some(contract_id);
    p.assigned_by = Some(by);
    Ok((p, payment))
}

// ------------------------------------------------------------- scheduling

/// The local time of day as `HH:MM`.
fn local_hhmm(now: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    now.with_timezone(&tz).format("%H:%M").to_string()
}

/// One pass of the collector: resolve requests whose check is due, re-ask
/// about paybill payments nobody answered, open today's collection days and
/// take the attempts that are due. Returns how many prompts it sent.
pub async fn tick(state: &AppState) -> Result<usize, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let today = state.today();
    let concurrency = state.config.collect_concurrency;

    let due = {
        let mut conn = deps.db.reader().acquire().await?;
        money::due_checks(&mut conn, now, 2_000).await?
    };
    futures::stream::iter(due)
        .for_each_concurrent(concurrency, |id| async move {
            if let Err(e) = check(state, id, None).await {
                tracing::warn!(request = %id, "checking a money request failed: {e}");
            }
        })
        .await;

    let stale = {
        let mut conn = deps.db.reader().acquire().await?;
        money::stale_confirming(
            &mut conn,
            now - Duration::seconds(PAYBILL_REQUERY_AFTER),
            200,
        )
        .await?
    };
    for p in &stale {
        confirm_paybill(state, p).await;
    }

    {
        let mut conn = deps.db.writer().acquire().await?;
        money::open_days(
            &mut conn,
            today,
            &local_hhmm(now, state.config.time_zone),
            now,
        )
        .await?;
    }
    let mut sent = 0;
    loop {
        let days = {
            let mut conn = deps.db.reader().acquire().await?;
            money::due_days(&mut conn, now, 1_000).await?
        };
        if days.is_empty() {
            break;
        }
        let n = days.len();
        for chunk in days.chunks(concurrency) {
            sent += attempts(state, chunk, today).await;
        }
        if n < 1_000 {
            break;
        }
    }
    Ok(sent)
}

/// A prompt queued by an attempt, to be sent once its transaction commits.
struct Queued {
    request: MoneyRequest,
    phone: String,
    account: String,
}

/// Takes due attempts of several collection days: claims them and queues
/// their prompts in one transaction, then sends the prompts together and
/// records the rails' answers together. If the batch cannot commit (another
/// replica raced it, say) each day is taken on its own instead.
async fn attempts(state: &AppState, days: &[CollectionDay], today: NaiveDate) -> usize {
    let batch = async {
        let mut tx = state.deps.db.begin().await?;
        let mut queued = Vec::new();
        for d in days {
            if let Some(q) = attempt_in(state, &mut tx, d, today).await? {
                queued.push(q);
            }
        }
        tx.commit().await?;
        Ok::<_, ApiError>(queued)
    }
    .await;
    let queued = match batch {
        Ok(q) => q,
        Err(e) => {
            tracing::debug!("a batch of collection attempts fell back to one by one: {e}");
            let mut queued = Vec::new();
            for d in days {
                let one = async {
                    let mut tx = state.deps.db.begin().await?;
                    let q = attempt_in(state, &mut tx, d, today).await?;
                    tx.commit().await?;
                    Ok::<_, ApiError>(q)
                }
                .await;
                match one {
                    Ok(Some(q)) => queued.push(q),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(contract = %d.contract_id, "a collection attempt failed: {e}")
                    }
                }
            }
            queued
        }
    };
    let sent = queued.len();
    let outcomes = futures::future::join_all(queued.into_iter().map(|q| async move {
        let outcome = push(state, &q.request, &q.phone, &q.account).await;
        (q.request, outcome)
    }))
    .await;
    record_sends(state, outcomes).await;
    sent
}

/// One due attempt inside the caller's transaction: claims it, works out
/// what is owed and queues the prompt, or moves the day on without one.
async fn attempt_in(
    state: &AppState,
    tx: &mut Tx,
    d: &CollectionDay,
    today: NaiveDate,
) -> Result<Option<Queued>, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    if !money::claim_attempt(tx, d, now).await? {
        return Ok(None);
    }
    let closed = 'decide: {
        if d.day != today || d.prompts >= PROMPTS_PER_DAY {
            break 'decide "over";
        }
        let Some(c) = store::find_contract(tx, d.contract_id, "").await? else {
            break 'decide "no_contract";
        };
        if c.status != ContractStatus::Active {
            break 'decide "not_active";
        }
        let Some(settings) = money::find_settings(tx, c.id).await? else {
            break 'decide "no_settings";
        };
        let book = store::load_book(tx, &c).await?;
        let owed: i64 = book
            .lines
            .iter()
            .filter(|l| l.number > 0 && l.due_date <= today)
            .map(|l| l.total_outstanding())
            .sum::<i64>()
            - book.credit_minor;
        if owed <= 0 {
            break 'decide "paid";
        }
        if !rail_takes(settings.rail, c.currency) {
            break 'decide "rail_refuses_currency";
        }
        if !store::phone_may_be_prompted(tx, c.customer_id).await? {
            // The code may be entered any minute: look again later today.
            money::schedule_day(
                tx,
                d.contract_id,
                d.day,
                Some(now + Duration::minutes(30)),
                "phone_unverified",
                true,
                now,
            )
            .await?;
            return Ok(None);
        }
        let phone = match deps.keyring.decrypt_string(PHONE_FIELD, &settings.phone) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(contract = %c.id, "the payer's phone does not decrypt: {e}");
                break 'decide "phone_unreadable";
            }
        };
        if money::in_flight(tx, c.id, &settings.phone_index).await? {
            // Another prompt is out for this contract or phone: wait for it.
            money::schedule_day(
                tx,
                d.contract_id,
                d.day,
                Some(now + Duration::minutes(2)),
                "in_flight",
                true,
                now,
            )
            .await?;
            return Ok(None);
        }
        let request = queue(
            state,
            tx,
            NewPrompt {
                contract_id: c.id,
                customer_id: c.customer_id,
                rail: settings.rail,
                phone: phone.clone(),
                amount_minor: settings.rail.round_up(owed, c.currency),
                currency: c.currency,
                origin: Origin::Schedule,
                requested_by: None,
                collection_day: Some(d.day),
            },
        )
        .await?;
        return Ok(Some(Queued {
            request,
            phone,
            account: c.account_number,
        }));
    };
    // Closed without a prompt: the attempt just claimed is given back.
    money::schedule_day(tx, d.contract_id, d.day, None, closed, true, now).await?;
    Ok(None)
}

/// The collector as a background job: a pass every `collect_poll` of real
/// time; what is due comes from the injected clock.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    register_c2b(&state, &shutdown).await;
    let every: StdDuration = state.config.collect_poll;
    loop {
        if let Err(e) = tick(&state).await {
            tracing::warn!("collection pass failed: {e}");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Registers the paybill's validation and confirmation URLs with Daraja,
/// retrying until it takes (the embedded sandbox answers once the server is up).
async fn register_c2b(state: &AppState, shutdown: &CancellationToken) {
    let mut wait = StdDuration::from_millis(100);
    for _ in 0..20 {
        match state.rails.mpesa.register_urls().await {
            Ok(()) => return,
            Err(e) => tracing::debug!("C2B URL registration not done yet: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(StdDuration::from_secs(30));
    }
    tracing::warn!(
        "the paybill URLs could not be registered with M-Pesa; paybill payments will not be seen"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        chrono_tz::Africa::Nairobi
            .with_ymd_and_hms(2026, 3, 9, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 9).unwrap()
    }

    #[test]
    fn insufficient_funds_retries_at_noon_then_five_then_tomorrow() {
        let tz = chrono_tz::Africa::Nairobi;
        assert_eq!(
            retry_at(Rail::Mpesa, "1", at(7, 0), tz, day(), 1),
            Some(at(12, 0))
        );
        assert_eq!(
            retry_at(Rail::Mpesa, "1", at(12, 0), tz, day(), 2),
            Some(at(17, 0))
        );
        assert_eq!(retry_at(Rail::Mpesa, "1", at(17, 0), tz, day(), 2), None);
        assert_eq!(
            retry_at(Rail::Mpesa, "1", at(12, 0), tz, day(), 3),
            None,
            "three a day"
        );
    }

    #[test]
    fn refusals_wait_for_tomorrow_and_silence_for_two_hours() {
        let tz = chrono_tz::Africa::Nairobi;
        assert_eq!(retry_at(Rail::Mpesa, "1032", at(7, 0), tz, day(), 1), None);
        assert_eq!(retry_at(Rail::Mpesa, "2001", at(7, 0), tz, day(), 1), None);
        assert_eq!(
            retry_at(Rail::Mpesa, "1037", at(7, 0), tz, day(), 1),
            Some(at(9, 0))
        );
        assert_eq!(
            retry_at(Rail::Mpesa, "1037", at(23, 0), tz, day(), 1),
            None,
            "not past midnight"
        );
        assert_eq!(
            retry_at(Rail::Mpesa, "500.001.1001", at(7, 0), tz, day(), 1),
            Some(at(7, 2))
        );
        assert_eq!(
            retry_at(Rail::MtnMomo, "NOT_ENOUGH_FUNDS", at(7, 0), tz, day(), 1),
            Some(at(12, 0))
        );
    }
}

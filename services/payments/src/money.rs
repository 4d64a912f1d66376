//! SQL for the mobile-money side: prompts sent to a rail (money requests),
//! how each contract is collected, collection days, paybill payments and the
//! callbacks kept for review. Phones are stored encrypted, found by their
//! blind index.

use chrono::{DateTime, NaiveDate, Utc};
use miliki_platform::clock::to_micros;
use miliki_platform::db::RowExt;
use miliki_platform::money::Currency;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::rails::Rail;
use crate::store::{date_text, parse_date};

miliki_platform::string_enum!(
    /// Where a money request stands. `queued`: claimed, being sent; `sent`:
    /// the rail took it, an outcome is awaited; `unknown`: it may have
    /// reached the rail but no answer came; then `succeeded` or `failed`.
    RequestStatus {
        Queued => "queued",
        Sent => "sent",
        Unknown => "unknown",
        Succeeded => "succeeded",
        Failed => "failed",
    }
);

impl RequestStatus {
    pub fn in_flight(self) -> bool {
        matches!(self, Self::Queued | Self::Sent | Self::Unknown)
    }
}

miliki_platform::string_enum!(
    /// Who asked for a prompt: a person through the API, or the scheduler.
    Origin {
        Request => "request",
        Schedule => "schedule",
    }
);

#[derive(Debug, Clone)]
pub struct MoneyRequest {
    pub id: Uuid,
    pub contract_id: Uuid,
    pub customer_id: Uuid,
    pub rail: Rail,
    /// The payer's phone, encrypted.
    pub phone: Vec<u8>,
    pub phone_index: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub origin: Origin,
    pub requested_by: Option<Uuid>,
    pub collection_day: Option<NaiveDate>,
    pub status: RequestStatus,
    /// CheckoutRequestID (M-Pesa) or X-Reference-Id (MoMo).
    pub provider_ref: Option<String>,
    pub merchant_ref: Option<String>,
    /// MpesaReceiptNumber or MoMo's financialTransactionId.
    pub receipt: Option<String>,
    pub result_code: Option<String>,
    pub result_text: Option<String>,
    /// When the rail is next asked how the request went.
    pub check_at: Option<DateTime<Utc>>,
    pub checks: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn request_from(row: &AnyRow) -> Result<MoneyRequest, sqlx::Error> {
    Ok(MoneyRequest {
        id: row.uuid("id")?,
        contract_id: row.uuid("contract_id")?,
        customer_id: row.uuid("customer_id")?,
        rail: row.parsed("rail")?,
        phone: row.try_get("phone")?,
        phone_index: row.try_get("phone_index")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.parsed("currency")?,
        origin: row.parsed("origin")?,
        requested_by: row.opt_uuid("requested_by")?,
        collection_day: row
            .try_get::<Option<String>, _>("collection_day")?
            .map(|d| parse_date(&d))
            .transpose()?,
        status: row.parsed("status")?,
        provider_ref: row.try_get("provider_ref")?,
        merchant_ref: row.try_get("merchant_ref")?,
        receipt: row.try_get("receipt")?,
        result_code: row.try_get("result_code")?,
        result_text: row.try_get("result_text")?,
        check_at: row.opt_time("check_at")?,
        checks: row.try_get("checks")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// Inserts a queued request. A unique violation means another prompt is in
/// flight for the contract or the phone (or the reference was reused).
pub async fn insert_request(conn: &mut AnyConnection, r: &MoneyRequest) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO money_requests (id, contract_id, customer_id, rail, phone, phone_index, amount_minor, \
         currency, origin, requested_by, collection_day, status, provider_ref, check_at, checks, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, $15, $15)",
    )
    .bind(r.id.to_string())
    .bind(r.contract_id.to_string())
    .bind(r.customer_id.to_string())
    .bind(r.rail.as_str())
    .bind(r.phone.clone())
    .bind(&r.phone_index)
    .bind(r.amount_minor)
    .bind(r.currency.code())
    .bind(r.origin.as_str())
    .bind(r.requested_by.map(|u| u.to_string()))
    .bind(r.collection_day.map(date_text))
    .bind(r.status.as_str())
    .bind(r.provider_ref.clone())
    .bind(r.check_at.map(to_micros))
    .bind(to_micros(r.created_at))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_request(
    conn: &mut AnyConnection,
    id: Uuid,
    lock: &str,
) -> Result<Option<MoneyRequest>, sqlx::Error> {
    sqlx::query(&format!("SELECT * FROM money_requests WHERE id = $1{lock}"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| request_from(&r))
        .transpose()
}

pub async fn find_by_provider_ref(
    conn: &mut AnyConnection,
    rail: Rail,
    provider_ref: &str,
) -> Result<Option<MoneyRequest>, sqlx::Error> {
    sqlx::query("SELECT * FROM money_requests WHERE rail = $1 AND provider_ref = $2")
        .bind(rail.as_str())
        .bind(provider_ref)
        .fetch_optional(conn)
        .await?
        .map(|r| request_from(&r))
        .transpose()
}

/// An M-Pesa request whose push got no answer, to the same phone for the
/// same amount: the one a callback with an unknown CheckoutRequestID may be for.
pub async fn find_unanswered(
    conn: &mut AnyConnection,
    rail: Rail,
    phone_index: &str,
    amount_minor: i64,
) -> Result<Option<MoneyRequest>, sqlx::Error> {
    sqlx::query(
        "SELECT * FROM money_requests WHERE rail = $1 AND phone_index = $2 AND amount_minor = $3 \
         AND status IN ('queued', 'unknown') AND provider_ref IS NULL ORDER BY id LIMIT 1",
    )
    .bind(rail.as_str())
    .bind(phone_index)
    .bind(amount_minor)
    .fetch_optional(conn)
    .await?
    .map(|r| request_from(&r))
    .transpose()
}

/// Whether a prompt is in flight for the contract or to the phone.
pub async fn in_flight(
    conn: &mut AnyConnection,
    contract_id: Uuid,
    phone_index: &str,
) -> Result<bool, sqlx::Error> {
    // Two lookups, each on its partial unique index.
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM money_requests WHERE contract_id = $1 \
           AND status IN ('queued', 'sent', 'unknown')) \
         + (SELECT COUNT(*) FROM money_requests WHERE phone_index = $2 \
           AND status IN ('queued', 'sent', 'unknown'))",
    )
    .bind(contract_id.to_string())
    .bind(phone_index)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

pub async fn requests_of_contract(
    conn: &mut AnyConnection,
    contract_id: Uuid,
    limit: i64,
) -> Result<Vec<MoneyRequest>, sqlx::Error> {
    sqlx::query("SELECT * FROM money_requests WHERE contract_id = $1 ORDER BY id DESC LIMIT $2")
        .bind(contract_id.to_string())
        .bind(limit)
        .fetch_all(conn)
        .await?
        .iter()
        .map(request_from)
        .collect()
}

/// In-flight requests whose check time has come, oldest first.
pub async fn due_checks(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query(
        "SELECT id FROM money_requests WHERE status IN ('queued', 'sent', 'unknown') \
         AND check_at <= $1 ORDER BY check_at, id LIMIT $2",
    )
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| r.uuid("id"))
    .collect()
}

/// What is learned about a request; only an in-flight request changes.
/// Returns whether it did (false: someone else settled it first).
#[derive(Debug, Default)]
pub struct RequestUpdate<'a> {
    pub status: Option<RequestStatus>,
    pub provider_ref: Option<&'a str>,
    pub merchant_ref: Option<&'a str>,
    pub receipt: Option<&'a str>,
    pub result_code: Option<&'a str>,
    pub result_text: Option<&'a str>,
    /// `Some(None)` clears the check time.
    pub check_at: Option<Option<DateTime<Utc>>>,
    pub count_check: bool,
}

pub async fn update_request(
    conn: &mut AnyConnection,
    id: Uuid,
    u: &RequestUpdate<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE money_requests SET \
           status = COALESCE($1, status), \
           provider_ref = COALESCE($2, provider_ref), \
           merchant_ref = COALESCE($3, merchant_ref), \
           receipt = COALESCE($4, receipt), \
           result_code = COALESCE($5, result_code), \
           result_text = COALESCE($6, result_text), \
           check_at = CASE WHEN $7 = 1 THEN $8 ELSE check_at END, \
           checks = checks + $9, \
           updated_at = $10 \
         WHERE id = $11 AND status IN ('queued', 'sent', 'unknown')",
    )
    .bind(u.status.map(|s| s.as_str()))
    .bind(u.provider_ref)
    .bind(u.merchant_ref)
    .bind(u.receipt)
    .bind(u.result_code)
    .bind(u.result_text)
    .bind(i64::from(u.check_at.is_some()))
    .bind(u.check_at.flatten().map(to_micros))
    .bind(i64::from(u.count_check))
    .bind(to_micros(now))
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

// ------------------------------------------------------ collection settings

#[derive(Debug, Clone)]
pub struct CollectionSettings {
    pub contract_id: Uuid,
    pub rail: Rail,
    pub phone: Vec<u8>,
    pub phone_index: String,
    /// Local time of day, `HH:MM`.
    pub collect_at: String,
    pub updated_by: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
}

fn settings_from(row: &AnyRow) -> Result<CollectionSettings, sqlx::Error> {
    Ok(CollectionSettings {
        contract_id: row.uuid("contract_id")?,
        rail: row.parsed("rail")?,
        phone: row.try_get("phone")?,
        phone_index: row.try_get("phone_index")?,
        collect_at: row.try_get("collect_at")?,
        updated_by: row.opt_uuid("updated_by").ok().flatten(),
        updated_at: row.time("updated_at")?,
    })
}

pub async fn find_settings(
    conn: &mut AnyConnection,
    contract_id: Uuid,
) -> Result<Option<CollectionSettings>, sqlx::Error> {
    sqlx::query("SELECT * FROM collection_settings WHERE contract_id = $1")
        .bind(contract_id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| settings_from(&r))
        .transpose()
}

/// Sets how a contract is collected. With `only_if_absent`, an existing
/// choice is kept (a successful prompt suggests one; a person decides).
pub async fn put_settings(
    conn: &mut AnyConnection,
    s: &CollectionSettings,
    only_if_absent: bool,
) -> Result<(), sqlx::Error> {
    let on_conflict = if only_if_absent {
        "DO NOTHING"
    } else {
        "DO UPDATE SET rail = excluded.rail, phone = excluded.phone, phone_index = excluded.phone_index, \
         collect_at = excluded.collect_at, updated_by = excluded.updated_by, updated_at = excluded.updated_at"
    };
    sqlx::query(&format!(
        "INSERT INTO collection_settings (contract_id, rail, phone, phone_index, collect_at, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (contract_id) {on_conflict}"
    ))
    .bind(s.contract_id.to_string())
    .bind(s.rail.as_str())
    .bind(s.phone.clone())
    .bind(&s.phone_index)
    .bind(&s.collect_at)
    .bind(
        s.updated_by
            .map(|u| u.to_string())
            .unwrap_or_else(|| "system".into()),
    )
    .bind(to_micros(s.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}

// --------------------------------------------------------- collection days

#[derive(Debug, Clone)]
pub struct CollectionDay {
    pub contract_id: Uuid,
    pub day: NaiveDate,
    pub prompts: i64,
    pub next_at: Option<DateTime<Utc>>,
}

/// Opens today's collection day for every contract collected automatically
/// that is active, has something due or overdue by `today`, reached its
/// collection time (`local_time`, `HH:MM`), and has no day yet. The primary
/// key makes this a claim: replicas and restarts open each day once.
pub async fn open_days(
    conn: &mut AnyConnection,
    today: NaiveDate,
    local_time: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO collection_days (contract_id, day, status, prompts, next_at, updated_at) \
         SELECT c.id, $1, 'open', 0, $2, $2 FROM contracts c \
         JOIN collection_settings s ON s.contract_id = c.id \
         WHERE c.status = 'active' AND s.collect_at <= $3 \
         AND EXISTS (SELECT 1 FROM installments i WHERE i.contract_id = c.id AND i.due_date <= $1 \
             AND i.penalties_due + i.fees_due + i.interest_due + i.principal_due > \
                 i.penalties_paid + i.fees_paid + i.interest_paid + i.principal_paid \
               + i.penalties_waived + i.fees_waived + i.interest_waived + i.principal_waived) \
         AND NOT EXISTS (SELECT 1 FROM collection_days d WHERE d.contract_id = c.id AND d.day = $1) \
         ON CONFLICT (contract_id, day) DO NOTHING",
    )
    .bind(date_text(today))
    .bind(to_micros(now))
    .bind(local_time)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Open days whose next attempt is due.
pub async fn due_days(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<CollectionDay>, sqlx::Error> {
    sqlx::query(
        "SELECT contract_id, day, prompts, next_at FROM collection_days \
         WHERE status = 'open' AND next_at <= $1 ORDER BY next_at, contract_id LIMIT $2",
    )
    .bind(to_micros(now))
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(CollectionDay {
            contract_id: r.uuid("contract_id")?,
            day: parse_date(&r.try_get::<String, _>("day")?)?,
            prompts: r.try_get("prompts")?,
            next_at: r.opt_time("next_at")?,
        })
    })
    .collect()
}

/// Takes the next attempt of a day: counts a prompt and clears its time,
/// only if nobody else took it first.
pub async fn claim_attempt(
    conn: &mut AnyConnection,
    d: &CollectionDay,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE collection_days SET prompts = prompts + 1, next_at = NULL, updated_at = $1 \
         WHERE contract_id = $2 AND day = $3 AND status = 'open' AND prompts = $4 AND next_at = $5",
    )
    .bind(to_micros(now))
    .bind(d.contract_id.to_string())
    .bind(date_text(d.day))
    .bind(d.prompts)
    .bind(d.next_at.map(to_micros))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What happens next on a day: `Some(at)` tries again then, `None` closes it
/// with `outcome`. `uncount` gives back a prompt that never reached anyone.
pub async fn schedule_day(
    conn: &mut AnyConnection,
    contract_id: Uuid,
    day: NaiveDate,
    next_at: Option<DateTime<Utc>>,
    outcome: &str,
    uncount: bool,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE collection_days SET status = $1, next_at = $2, outcome = $3, \
         prompts = prompts - $4, updated_at = $5 WHERE contract_id = $6 AND day = $7 AND status = 'open'",
    )
    .bind(if next_at.is_some() { "open" } else { "done" })
    .bind(next_at.map(to_micros))
    .bind(outcome)
    .bind(i64::from(uncount))
    .bind(to_micros(now))
    .bind(contract_id.to_string())
    .bind(date_text(day))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn day_prompts(
    conn: &mut AnyConnection,
    contract_id: Uuid,
    day: NaiveDate,
) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query("SELECT prompts FROM collection_days WHERE contract_id = $1 AND day = $2")
            .bind(contract_id.to_string())
            .bind(date_text(day))
            .fetch_optional(conn)
            .await?
            .map(|r| r.try_get::<i64, _>("prompts"))
            .transpose()?
            .unwrap_or(0),
    )
}

// ---------------------------------------------------------- paybill (C2B)

miliki_platform::string_enum!(
    /// Where a paybill payment stands: `confirming` (the transaction status
    /// query is out), `credited` to the contract whose account number it
    /// named, `suspense` (no contract has that number), `assigned` by an
    /// admin from suspense, `rejected` (the rail did not confirm it).
    PaybillStatus {
        Confirming => "confirming",
        Credited => "credited",
        Suspense => "suspense",
        Assigned => "assigned",
        Rejected => "rejected",
    }
);

#[derive(Debug, Clone)]
pub struct PaybillPayment {
    pub id: Uuid,
    pub trans_id: String,
    pub bill_ref: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub msisdn: Vec<u8>,
    pub contract_id: Option<Uuid>,
    pub status: PaybillStatus,
    pub note: Option<String>,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub assigned_by: Option<Uuid>,
}

fn paybill_from(row: &AnyRow) -> Result<PaybillPayment, sqlx::Error> {
    Ok(PaybillPayment {
        id: row.uuid("id")?,
        trans_id: row.try_get("trans_id")?,
        bill_ref: row.try_get("bill_ref")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.parsed("currency")?,
        msisdn: row.try_get("msisdn")?,
        contract_id: row.opt_uuid("contract_id")?,
        status: row.parsed("status")?,
        note: row.try_get("note")?,
        received_at: row.time("received_at")?,
        updated_at: row.time("updated_at")?,
        assigned_by: row.opt_uuid("assigned_by")?,
    })
}

/// Records a confirmation; `false` when that TransID was already recorded.
pub async fn insert_paybill(
    conn: &mut AnyConnection,
    p: &PaybillPayment,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO paybill_payments (id, trans_id, bill_ref, amount_minor, currency, msisdn, status, \
         received_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (trans_id) DO NOTHING",
    )
    .bind(p.id.to_string())
    .bind(&p.trans_id)
    .bind(&p.bill_ref)
    .bind(p.amount_minor)
    .bind(p.currency.code())
    .bind(p.msisdn.clone())
    .bind(p.status.as_str())
    .bind(to_micros(p.received_at))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find_paybill(
    conn: &mut AnyConnection,
    id: Uuid,
    lock: &str,
) -> Result<Option<PaybillPayment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT * FROM paybill_payments WHERE id = $1{lock}"
    ))
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?
    .map(|r| paybill_from(&r))
    .transpose()
}

pub async fn list_paybill(
    conn: &mut AnyConnection,
    status: PaybillStatus,
    limit: i64,
) -> Result<Vec<PaybillPayment>, sqlx::Error> {
    sqlx::query("SELECT * FROM paybill_payments WHERE status = $1 ORDER BY id LIMIT $2")
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(conn)
        .await?
        .iter()
        .map(paybill_from)
        .collect()
}

/// Paybill payments still being confirmed, received before `before`.
pub async fn stale_confirming(
    conn: &mut AnyConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<PaybillPayment>, sqlx::Error> {
    sqlx::query(
        "SELECT * FROM paybill_payments WHERE status = 'confirming' AND updated_at < $1 ORDER BY id LIMIT $2",
    )
    .bind(to_micros(before))
    .bind(limit)
    .fetch_all(conn)
    .await?
    .iter()
    .map(paybill_from)
    .collect()
}

/// Moves a paybill payment on from `from`; `false` when it was not there.
#[allow(clippy::too_many_arguments)]
pub async fn settle_paybill(
    conn: &mut AnyConnection,
    id: Uuid,
    from: PaybillStatus,
    to: PaybillStatus,
    contract_id: Option<Uuid>,
    note: Option<&str>,
    by: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE paybill_payments SET status = $1, contract_id = COALESCE($2, contract_id), \
         note = COALESCE($3, note), assigned_by = COALESCE($4, assigned_by), updated_at = $5 \
         WHERE id = $6 AND status = $7",
    )
    .bind(to.as_str())
    .bind(contract_id.map(|c| c.to_string()))
    .bind(note)
    .bind(by.map(|b| b.to_string()))
    .bind(to_micros(now))
    .bind(id.to_string())
    .bind(from.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Touches a confirming payment so the next re-query waits a while.
pub async fn touch_paybill(
    conn: &mut AnyConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE paybill_payments SET updated_at = $1 WHERE id = $2")
        .bind(to_micros(now))
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

// ------------------------------------------------------------ for review

/// Keeps a callback that credited nothing, with why.
pub async fn record_review(
    conn: &mut AnyConnection,
    rail: Rail,
    kind: &str,
    reference: Option<&str>,
    reason: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO callback_reviews (id, rail, kind, reference, reason, body, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(miliki_platform::id::new_id().to_string())
    .bind(rail.as_str())
    .bind(kind)
    .bind(reference)
    .bind(reason)
    .bind(body)
    .bind(to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Review {
    pub id: Uuid,
    pub rail: String,
    pub kind: String,
    pub reference: Option<String>,
    pub reason: String,
    pub received_at: DateTime<Utc>,
}

pub async fn list_reviews(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<Review>, sqlx::Error> {
    sqlx::query("SELECT id, rail, kind, reference, reason, received_at FROM callback_reviews ORDER BY id DESC LIMIT $1")
        .bind(limit)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok(Review {
                id: r.uuid("id")?,
                rail: r.try_get("rail")?,
                kind: r.try_get("kind")?,
                reference: r.try_get("reference")?,
                reason: r.try_get("reason")?,
                received_at: r.time("received_at")?,
            })
        })
        .collect()
}

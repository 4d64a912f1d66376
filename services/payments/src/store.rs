//! SQL: portable statements for SQLite and PostgreSQL. Dates are stored as
//! `YYYY-MM-DD` text (sortable), instants as microseconds.

use chrono::{DateTime, NaiveDate, Utc};
use miliki_platform::clock::to_micros;
use miliki_platform::db::{Backend, Db, RowExt, Tx};
use miliki_platform::money::Currency;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::domain::book::{Book, Line, Posting};
use crate::domain::contract::ContractStatus;
use crate::domain::product::ProductTerms;

pub fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

pub fn parse_date(s: &str) -> Result<NaiveDate, sqlx::Error> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| sqlx::Error::Decode(format!("date {s:?}: {e}").into()))
}

fn date_col(row: &AnyRow, column: &str) -> Result<NaiveDate, sqlx::Error> {
    parse_date(&row.try_get::<String, _>(column)?)
}

fn opt_date_col(row: &AnyRow, column: &str) -> Result<Option<NaiveDate>, sqlx::Error> {
    row.try_get::<Option<String>, _>(column)?
        .map(|s| parse_date(&s))
        .transpose()
}

/// ` FOR UPDATE` on PostgreSQL; SQLite's single writer already serialises.
pub fn for_update(db: &Db) -> &'static str {
    match db.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

// ---------------------------------------------------------------- products

#[derive(Debug, Clone)]
pub struct ProductRecord {
    pub id: Uuid,
    pub terms: ProductTerms,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

fn product_from(row: &AnyRow) -> Result<ProductRecord, sqlx::Error> {
    let terms: String = row.try_get("terms")?;
    Ok(ProductRecord {
        id: row.uuid("id")?,
        terms: serde_json::from_str(&terms)
            .map_err(|e| sqlx::Error::Decode(format!("product terms: {e}").into()))?,
        status: row.try_get("status")?,
        created_at: row.time("created_at")?,
        retired_at: row.opt_time("retired_at")?,
    })
}

pub async fn insert_product(
    conn: &mut AnyConnection,
    id: Uuid,
    terms: &ProductTerms,
    by: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO products (id, name, currency, terms, status, created_by, created_at) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6)",
    )
    .bind(id.to_string())
    .bind(&terms.name)
    .bind(terms.currency.code())
    .bind(serde_json::to_string(terms).unwrap_or_default())
    .bind(by.to_string())
    .bind(to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_product(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<ProductRecord>, sqlx::Error> {
    sqlx::query("SELECT * FROM products WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| product_from(&r))
        .transpose()
}

pub async fn list_products(
    pool: &sqlx::AnyPool,
    status: Option<&str>,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<ProductRecord>, sqlx::Error> {
    let mut q = miliki_platform::db::FilteredQuery::new("SELECT * FROM products");
    if let Some(s) = status {
        q.and("status = ?", s);
    }
    if let Some(a) = after {
        q.and("id > ?", a.to_string());
    }
    q.push(&format!(" ORDER BY id LIMIT {}", limit + 1));
    q.fetch_all(pool).await?.iter().map(product_from).collect()
}

pub async fn retire_product(
    conn: &mut AnyConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE products SET status = 'retired', retired_at = $1 WHERE id = $2 AND status = 'active'",
    )
    .bind(to_micros(now))
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------- projections

pub async fn upsert_vehicle(
    conn: &mut AnyConnection,
    vehicle_id: Uuid,
    vehicle_type: &str,
    price_minor: i64,
    currency: &str,
    as_of: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vehicles_seen (vehicle_id, vehicle_type, price_minor, currency, as_of) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (vehicle_id) DO UPDATE SET \
         vehicle_type = excluded.vehicle_type, price_minor = excluded.price_minor, \
         currency = excluded.currency, as_of = excluded.as_of \
         WHERE vehicles_seen.as_of <= excluded.as_of",
    )
    .bind(vehicle_id.to_string())
    .bind(vehicle_type)
    .bind(price_minor)
    .bind(currency)
    .bind(to_micros(as_of))
    .execute(conn)
    .await?;
    Ok(())
}

/// A vehicle's type, price and currency, as last announced.
pub async fn find_vehicle(
    pool: &sqlx::AnyPool,
    vehicle_id: Uuid,
) -> Result<Option<(String, i64, String)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT vehicle_type, price_minor, currency FROM vehicles_seen WHERE vehicle_id = $1",
    )
    .bind(vehicle_id.to_string())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok((
            r.try_get("vehicle_type")?,
            r.try_get("price_minor")?,
            r.try_get("currency")?,
        ))
    })
    .transpose()
}

pub async fn upsert_customer(
    conn: &mut AnyConnection,
    user_id: Uuid,
    onboarded_by: Option<Uuid>,
    as_of: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customers_seen (user_id, onboarded_by, as_of) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET onboarded_by = excluded.onboarded_by, as_of = excluded.as_of \
         WHERE customers_seen.as_of <= excluded.as_of",
    )
    .bind(user_id.to_string())
    .bind(onboarded_by.map(|u| u.to_string()))
    .bind(to_micros(as_of))
    .execute(conn)
    .await?;
    Ok(())
}

/// Records whether `customer`'s phone is verified, unless a later fact is known.
pub async fn set_phone_verified(
    conn: &mut AnyConnection,
    customer: Uuid,
    verified: bool,
    as_of: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO phone_standing (customer_id, verified, as_of) VALUES ($1, $2, $3) \
         ON CONFLICT (customer_id) DO UPDATE SET verified = excluded.verified, as_of = excluded.as_of \
         WHERE phone_standing.as_of <= excluded.as_of",
    )
    .bind(customer.to_string())
    .bind(i64::from(verified))
    .bind(to_micros(as_of))
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a money prompt may go to `customer`: not while the users service
/// has said their phone awaits its code. Accounts it said nothing of (created
/// before phone codes existed) may.
pub async fn phone_may_be_prompted(
    conn: &mut AnyConnection,
    customer: Uuid,
) -> Result<bool, sqlx::Error> {
    let verified: Option<i64> =
        sqlx::query_scalar("SELECT verified FROM phone_standing WHERE customer_id = $1")
            .bind(customer.to_string())
            .fetch_optional(conn)
            .await?;
    Ok(verified != Some(0))
}

/// The agent who onboarded `customer`, if this service has heard of one.
pub async fn onboarded_by(
    pool: &sqlx::AnyPool,
    customer: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let row = sqlx::query("SELECT onboarded_by FROM customers_seen WHERE user_id = $1")
        .bind(customer.to_string())
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(r) => r.opt_uuid("onboarded_by")?,
        None => None,
    })
}

// ------------------------------------------------------------- contracts

#[derive(Debug, Clone)]
pub struct ContractRecord {
    pub id: Uuid,
    pub account_number: String,
    pub application_id: Option<Uuid>,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub reservation_id: Option<Uuid>,
    pub product_id: Uuid,
    pub product: ProductTerms,
    pub currency: Currency,
    pub price_minor: i64,
    pub deposit_minor: i64,
    pub principal_minor: i64,
    pub processing_fee_minor: i64,
    pub total_interest_minor: i64,
    pub total_payable_minor: i64,
    pub installment_minor: i64,
    pub term_periods: i64,
    pub status: ContractStatus,
    pub signed_date: NaiveDate,
    pub start_date: Option<NaiveDate>,
    pub credit_minor: i64,
    pub days_past_due: i64,
    pub bucket: String,
    pub overdue_minor: i64,
    pub aged_through: NaiveDate,
    pub paused_on: Option<NaiveDate>,
    pub pause_days: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn contract_from(row: &AnyRow) -> Result<ContractRecord, sqlx::Error> {
    let product: String = row.try_get("product")?;
    Ok(ContractRecord {
        id: row.uuid("id")?,
        account_number: row.try_get("account_number")?,
        application_id: row.opt_uuid("application_id")?,
        customer_id: row.uuid("customer_id")?,
        vehicle_id: row.uuid("vehicle_id")?,
        reservation_id: row.opt_uuid("reservation_id")?,
        product_id: row.uuid("product_id")?,
        product: serde_json::from_str(&product)
            .map_err(|e| sqlx::Error::Decode(format!("product snapshot: {e}").into()))?,
        currency: row.parsed("currency")?,
        price_minor: row.try_get("price_minor")?,
        deposit_minor: row.try_get("deposit_minor")?,
        principal_minor: row.try_get("principal_minor")?,
        processing_fee_minor: row.try_get("processing_fee_minor")?,
        total_interest_minor: row.try_get("total_interest_minor")?,
        total_payable_minor: row.try_get("total_payable_minor")?,
        installment_minor: row.try_get("installment_minor")?,
        term_periods: row.try_get("term_periods")?,
        status: row.parsed("status")?,
        signed_date: date_col(row, "signed_date")?,
        start_date: opt_date_col(row, "start_date")?,
        credit_minor: row.try_get("credit_minor")?,
        days_past_due: row.try_get("days_past_due")?,
        bucket: row.try_get("bucket")?,
        overdue_minor: row.try_get("overdue_minor")?,
        aged_through: date_col(row, "aged_through")?,
        paused_on: opt_date_col(row, "paused_on")?,
        pause_days: row.try_get("pause_days")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// Inserts a contract; `false` when its account number is taken (pick another).
pub async fn insert_contract(
    conn: &mut AnyConnection,
    c: &ContractRecord,
    created_by: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO contracts (id, account_number, application_id, customer_id, vehicle_id, \
         reservation_id, product_id, product, currency, price_minor, deposit_minor, principal_minor, \
         processing_fee_minor, total_interest_minor, total_payable_minor, installment_minor, \
         term_periods, status, signed_date, start_date, credit_minor, days_past_due, bucket, \
         overdue_minor, aged_through, created_by, created_at, updated_at) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20, $21, $22, $23, $24, $25, $26, $27, $28) ON CONFLICT (account_number) DO NOTHING",
    )
    .bind(c.id.to_string())
    .bind(&c.account_number)
    .bind(c.application_id.map(|u| u.to_string()))
    .bind(c.customer_id.to_string())
    .bind(c.vehicle_id.to_string())
    .bind(c.reservation_id.map(|u| u.to_string()))
    .bind(c.product_id.to_string())
    .bind(serde_json::to_string(&c.product).unwrap_or_default())
    .bind(c.currency.code())
    .bind(c.price_minor)
    .bind(c.deposit_minor)
    .bind(c.principal_minor)
    .bind(c.processing_fee_minor)
    .bind(c.total_interest_minor)
    .bind(c.total_payable_minor)
    .bind(c.installment_minor)
    .bind(c.term_periods)
    .bind(c.status.as_str())
    .bind(date_text(c.signed_date))
    .bind(c.start_date.map(date_text))
    .bind(c.credit_minor)
    .bind(c.days_past_due)
    .bind(&c.bucket)
    .bind(c.overdue_minor)
    .bind(date_text(c.aged_through))
    .bind(created_by.map(|u| u.to_string()))
    .bind(to_micros(c.created_at))
    .bind(to_micros(c.updated_at))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn find_contract(
    conn: &mut AnyConnection,
    id: Uuid,
    lock: &str,
) -> Result<Option<ContractRecord>, sqlx::Error> {
    sqlx::query(&format!("SELECT * FROM contracts WHERE id = $1{lock}"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| contract_from(&r))
        .transpose()
}

pub async fn find_contract_by_application(
    conn: &mut AnyConnection,
    application_id: Uuid,
) -> Result<Option<ContractRecord>, sqlx::Error> {
    sqlx::query("SELECT * FROM contracts WHERE application_id = $1")
        .bind(application_id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| contract_from(&r))
        .transpose()
}

/// The contract with an account number, as a payer typed it (case-blind,
/// spaces ignored).
pub async fn find_contract_by_account(
    conn: &mut AnyConnection,
    account: &str,
) -> Result<Option<ContractRecord>, sqlx::Error> {
    let account: String = account
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    sqlx::query("SELECT * FROM contracts WHERE account_number = $1")
        .bind(account)
        .fetch_optional(conn)
        .await?
        .map(|r| contract_from(&r))
        .transpose()
}

/// A contract of `customer` on `vehicle` that is not yet over, if any.
pub async fn live_contract_for_vehicle(
    conn: &mut AnyConnection,
    vehicle: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id FROM contracts WHERE vehicle_id = $1 AND status NOT IN \
         ('cancelled', 'written_off', 'ownership_transferred', 'paid_off', 'upgraded') LIMIT 1",
    )
    .bind(vehicle.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.uuid("id")).transpose()
}

/// Filters of the contract list.
#[derive(Debug, Default, Clone)]
pub struct ContractFilter {
    pub status: Option<String>,
    pub bucket: Option<String>,
    pub customer_id: Option<Uuid>,
    /// Only customers this agent onboarded.
    pub agent: Option<Uuid>,
    pub after: Option<Uuid>,
}

pub async fn list_contracts(
    pool: &sqlx::AnyPool,
    f: &ContractFilter,
    limit: u32,
) -> Result<Vec<ContractRecord>, sqlx::Error> {
    let mut q = miliki_platform::db::FilteredQuery::new("SELECT * FROM contracts");
    if let Some(s) = &f.status {
        q.and("status = ?", s.clone());
    }
    if let Some(b) = &f.bucket {
        q.and("bucket = ?", b.clone());
    }
    if let Some(c) = f.customer_id {
        q.and("customer_id = ?", c.to_string());
    }
    if let Some(a) = f.agent {
        q.and(
            "customer_id IN (SELECT user_id FROM customers_seen WHERE onboarded_by = ?)",
            a.to_string(),
        );
    }
    if let Some(a) = f.after {
        q.and("id > ?", a.to_string());
    }
    q.push(&format!(" ORDER BY id LIMIT {}", limit + 1));
    q.fetch_all(pool).await?.iter().map(contract_from).collect()
}

/// Saves the fields of a contract that change after signing.
pub async fn update_contract(
    conn: &mut AnyConnection,
    c: &ContractRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE contracts SET status = $1, start_date = $2, credit_minor = $3, days_past_due = $4, \
         bucket = $5, overdue_minor = $6, aged_through = $7, paused_on = $8, pause_days = $9, \
         updated_at = $10 WHERE id = $11",
    )
    .bind(c.status.as_str())
    .bind(c.start_date.map(date_text))
    .bind(c.credit_minor)
    .bind(c.days_past_due)
    .bind(&c.bucket)
    .bind(c.overdue_minor)
    .bind(date_text(c.aged_through))
    .bind(c.paused_on.map(date_text))
    .bind(c.pause_days)
    .bind(to_micros(c.updated_at))
    .bind(c.id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn record_transition(
    conn: &mut AnyConnection,
    contract: Uuid,
    from: Option<ContractStatus>,
    to: ContractStatus,
    actor: Option<Uuid>,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contract_transitions (id, contract_id, from_status, to_status, actor_id, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(miliki_platform::id::new_id().to_string())
    .bind(contract.to_string())
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(actor.map(|u| u.to_string()))
    .bind(reason)
    .bind(to_micros(at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Contracts not yet aged for `today`, claimed for this transaction; other
/// replicas skip the rows this one holds.
pub async fn claim_unaged(
    tx: &mut Tx,
    db: &Db,
    today: NaiveDate,
    limit: usize,
) -> Result<Vec<ContractRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT * FROM contracts WHERE aged_through < $1 AND status IN ('active', 'paused', 'defaulted') \
         ORDER BY aged_through, id LIMIT {limit}{}",
        db.skip_locked()
    );
    sqlx::query(&sql)
        .bind(date_text(today))
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(contract_from)
        .collect()
}

// ----------------------------------------------------------------- books

const LINE_COLUMNS: &str =
    "number, due_date, penalties_due, fees_due, interest_due, principal_due, \
    penalties_paid, fees_paid, interest_paid, principal_paid, penalties_waived, fees_waived, \
    interest_waived, principal_waived, late_fee_charged";

fn line_from(row: &AnyRow) -> Result<Line, sqlx::Error> {
    let g = |c: &str| row.try_get::<i64, _>(c);
    Ok(Line {
        number: u32::try_from(g("number")?).unwrap_or(0),
        due_date: date_col(row, "due_date")?,
        due: [
            g("penalties_due")?,
            g("fees_due")?,
            g("interest_due")?,
            g("principal_due")?,
        ],
        paid: [
            g("penalties_paid")?,
            g("fees_paid")?,
            g("interest_paid")?,
            g("principal_paid")?,
        ],
        waived: [
            g("penalties_waived")?,
            g("fees_waived")?,
            g("interest_waived")?,
            g("principal_waived")?,
        ],
        late_fee_charged: g("late_fee_charged")? != 0,
    })
}

/// The book of a contract (its credit comes from the contract row).
pub async fn load_book(
    conn: &mut AnyConnection,
    contract: &ContractRecord,
) -> Result<Book, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM installments WHERE contract_id = $1 ORDER BY number"
    ))
    .bind(contract.id.to_string())
    .fetch_all(conn)
    .await?;
    Ok(Book {
        lines: rows.iter().map(line_from).collect::<Result<_, _>>()?,
        credit_minor: contract.credit_minor,
    })
}

pub async fn insert_lines(
    conn: &mut AnyConnection,
    contract: Uuid,
    lines: &[Line],
) -> Result<(), sqlx::Error> {
    // Multi-row inserts keep signing a long daily schedule to a few statements.
    for chunk in lines.chunks(50) {
        let mut sql = format!("INSERT INTO installments (contract_id, {LINE_COLUMNS}) VALUES ");
        let per = 16;
        for (i, _) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let base = i * per;
            let params: Vec<String> = (1..=per).map(|k| format!("${}", base + k)).collect();
            sql.push('(');
            sql.push_str(&params.join(", "));
            sql.push(')');
        }
        let mut q = sqlx::query(&sql);
        for l in chunk {
            q = q
                .bind(contract.to_string())
                .bind(i64::from(l.number))
                .bind(date_text(l.due_date));
            for a in [l.due, l.paid, l.waived] {
                for v in a {
                    q = q.bind(v);
                }
            }
            q = q.bind(i64::from(l.late_fee_charged));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Saves installments `numbers` of `book`.
pub async fn save_lines(
    conn: &mut AnyConnection,
    contract: Uuid,
    book: &Book,
    numbers: &[u32],
) -> Result<(), sqlx::Error> {
    for line in book.lines.iter().filter(|l| numbers.contains(&l.number)) {
        let mut q = sqlx::query(
            "UPDATE installments SET due_date = $1, penalties_due = $2, fees_due = $3, \
             interest_due = $4, principal_due = $5, penalties_paid = $6, fees_paid = $7, \
             interest_paid = $8, principal_paid = $9, penalties_waived = $10, fees_waived = $11, \
             interest_waived = $12, principal_waived = $13, late_fee_charged = $14 \
             WHERE contract_id = $15 AND number = $16",
        )
        .bind(date_text(line.due_date));
        for a in [line.due, line.paid, line.waived] {
            for v in a {
                q = q.bind(v);
            }
        }
        q.bind(i64::from(line.late_fee_charged))
            .bind(contract.to_string())
            .bind(i64::from(line.number))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Appends postings to the journal.
pub async fn append_postings(
    conn: &mut AnyConnection,
    contract: Uuid,
    payment: Option<Uuid>,
    currency: Currency,
    postings: &[Posting],
    now: DateTime<Utc>,
    today: NaiveDate,
) -> Result<(), sqlx::Error> {
    for p in postings {
        if p.imbalance() != 0 {
            // Never reached: every posting the book makes balances. Refuse
            // rather than write an unbalanced transaction.
            return Err(sqlx::Error::Protocol(format!(
                "refusing an unbalanced {} posting ({})",
                p.kind,
                p.imbalance()
            )));
        }
        let txn = miliki_platform::id::new_id().to_string();
        sqlx::query(
            "INSERT INTO journal_transactions (id, contract_id, payment_id, kind, memo, currency, posted_at, local_date) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&txn)
        .bind(contract.to_string())
        .bind(payment.map(|u| u.to_string()))
        .bind(p.kind.as_str())
        .bind(&p.memo)
        .bind(currency.code())
        .bind(to_micros(now))
        .bind(date_text(today))
        .execute(&mut *conn)
        .await?;
        for chunk in p.entries.chunks(100).enumerate() {
            let (c, entries) = chunk;
            let mut sql = String::from(
                "INSERT INTO journal_entries (transaction_id, line, account, contract_id, installment, amount_minor) VALUES ",
            );
            for i in 0..entries.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let b = i * 6;
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                ));
            }
            let mut q = sqlx::query(&sql);
            for (i, e) in entries.iter().enumerate() {
                q = q
                    .bind(&txn)
                    .bind((c * 100 + i) as i64)
                    .bind(e.account.code())
                    .bind(contract.to_string())
                    .bind(e.installment.map(i64::from))
                    .bind(e.amount_minor);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

// --------------------------------------------------------------- payments

#[derive(Debug, Clone)]
pub struct PaymentRecord {
    pub id: Uuid,
    pub contract_id: Uuid,
    pub customer_id: Uuid,
    pub amount_minor: i64,
    pub currency: Currency,
    pub method: String,
    pub status: String,
    pub days_late: i64,
    pub received_by: Uuid,
    pub received_at: DateTime<Utc>,
    pub local_date: NaiveDate,
    pub reversed_by: Option<Uuid>,
    pub reversed_at: Option<DateTime<Utc>>,
    pub reversal_reason: Option<String>,
}

fn payment_from(row: &AnyRow) -> Result<PaymentRecord, sqlx::Error> {
    Ok(PaymentRecord {
        id: row.uuid("id")?,
        contract_id: row.uuid("contract_id")?,
        customer_id: row.uuid("customer_id")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.parsed("currency")?,
        method: row.try_get("method")?,
        status: row.try_get("status")?,
        days_late: row.try_get("days_late")?,
        received_by: row.uuid("received_by")?,
        received_at: row.time("received_at")?,
        local_date: date_col(row, "local_date")?,
        reversed_by: row.opt_uuid("reversed_by")?,
        reversed_at: row.opt_time("reversed_at")?,
        reversal_reason: row.try_get("reversal_reason")?,
    })
}

pub async fn insert_payment(
    conn: &mut AnyConnection,
    p: &PaymentRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments (id, contract_id, customer_id, amount_minor, currency, method, status, \
         days_late, received_by, received_at, local_date) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(p.id.to_string())
    .bind(p.contract_id.to_string())
    .bind(p.customer_id.to_string())
    .bind(p.amount_minor)
    .bind(p.currency.code())
    .bind(&p.method)
    .bind(&p.status)
    .bind(p.days_late)
    .bind(p.received_by.to_string())
    .bind(to_micros(p.received_at))
    .bind(date_text(p.local_date))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_payment(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<PaymentRecord>, sqlx::Error> {
    sqlx::query("SELECT * FROM payments WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| payment_from(&r))
        .transpose()
}

/// Marks a received payment reversed; `false` when it already was.
pub async fn mark_reversed(
    conn: &mut AnyConnection,
    id: Uuid,
    by: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payments SET status = 'reversed', reversed_by = $1, reversed_at = $2, reversal_reason = $3 \
         WHERE id = $4 AND status = 'received'",
    )
    .bind(by.to_string())
    .bind(to_micros(at))
    .bind(reason)
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

// --------------------------------------------------------------- journal

/// One journal entry with its transaction's facts, for statements and checks.
#[derive(Debug, Clone)]
pub struct JournalLine {
    pub transaction_id: String,
    pub kind: String,
    pub memo: String,
    pub payment_id: Option<Uuid>,
    pub posted_at: DateTime<Utc>,
    pub local_date: NaiveDate,
    pub account: String,
    pub installment: Option<i64>,
    pub amount_minor: i64,
}

pub async fn journal_of(
    pool: &sqlx::AnyPool,
    contract: Uuid,
) -> Result<Vec<JournalLine>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT t.id AS transaction_id, t.kind, t.memo, t.payment_id, t.posted_at, t.local_date, \
         e.account, e.installment, e.amount_minor FROM journal_transactions t \
         JOIN journal_entries e ON e.transaction_id = t.id WHERE t.contract_id = $1 \
         ORDER BY t.id, e.line",
    )
    .bind(contract.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(JournalLine {
                transaction_id: r.try_get("transaction_id")?,
                kind: r.try_get("kind")?,
                memo: r.try_get("memo")?,
                payment_id: r.opt_uuid("payment_id")?,
                posted_at: r.time("posted_at")?,
                local_date: date_col(r, "local_date")?,
                account: r.try_get("account")?,
                installment: r.try_get("installment")?,
                amount_minor: r.try_get("amount_minor")?,
            })
        })
        .collect()
}

// ------------------------------------------------------------- ownership

/// A handover step done: (step, reference, done_by, done_at).
pub type StepRecord = (String, Option<String>, Option<Uuid>, DateTime<Utc>);

pub async fn ownership_steps(
    conn: &mut AnyConnection,
    contract: Uuid,
) -> Result<Vec<StepRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT step, reference, done_by, done_at FROM ownership_steps WHERE contract_id = $1",
    )
    .bind(contract.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("step")?,
                r.try_get("reference")?,
                r.opt_uuid("done_by")?,
                r.time("done_at")?,
            ))
        })
        .collect()
}

/// Records a step; `false` when it was already done.
pub async fn record_step(
    conn: &mut AnyConnection,
    contract: Uuid,
    step: &str,
    reference: Option<&str>,
    by: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO ownership_steps (contract_id, step, reference, done_by, done_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (contract_id, step) DO NOTHING",
    )
    .bind(contract.to_string())
    .bind(step)
    .bind(reference)
    .bind(by.map(|u| u.to_string()))
    .bind(to_micros(at))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

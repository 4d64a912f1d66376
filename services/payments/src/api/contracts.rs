//! Contracts: created by admins (or from an accepted application), read by
//! their customer, the customer's agent and admins, and moved along their
//! lifecycle by admins.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::idempotency::{self, Idempotent, Outcome};
use miliki_platform::money::Currency;
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{reason, visible_contract, ContractDetail, ContractSummary};
use crate::domain::contract::ContractStatus;
use crate::ops::{self, NewContract, Payoff};
use crate::state::{AppState, Caller};
use crate::store::{self, ContractFilter};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContract {
    pub application_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub vehicle_id: Option<Uuid>,
    pub reservation_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub deposit_minor: Option<i64>,
    pub term_periods: Option<i64>,
}

impl CreateContract {
    fn parse(&self) -> Result<NewContract, ApiError> {
        let mut v = Validator::new();
        let mut need = |field: &str, present: bool| {
            if !present {
                v.error(field, "is required");
            }
        };
        need("customer_id", self.customer_id.is_some());
        need("vehicle_id", self.vehicle_id.is_some());
        need("product_id", self.product_id.is_some());
        need("price_minor", self.price_minor.is_some());
        need("deposit_minor", self.deposit_minor.is_some());
        need("term_periods", self.term_periods.is_some());
        let currency = v
            .required("currency", &self.currency)
            .and_then(|c| v.check("currency", c.parse::<Currency>()));
        v.finish()?;
        match (
            self.customer_id,
            self.vehicle_id,
            self.product_id,
            self.price_minor,
            currency,
            self.deposit_minor,
            self.term_periods,
        ) {
            (
                Some(customer_id),
                Some(vehicle_id),
                Some(product_id),
                Some(price_minor),
                Some(currency),
                Some(deposit_minor),
                Some(term_periods),
            ) => Ok(NewContract {
                application_id: self.application_id,
                customer_id,
                vehicle_id,
                reservation_id: self.reservation_id,
                product_id,
                price_minor,
                currency,
                deposit_minor,
                term_periods,
                upgrade: None,
            }),
            _ => Err(ApiError::field("body", "is incomplete")),
        }
    }
}

fn created(detail: &ContractDetail) -> Response {
    miliki_platform::http::created(&format!("/api/v1/contracts/{}", detail.contract.id), detail)
}

/// Create a contract (admins: migrating loans, or testing before credit exists).
/// Requires `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/contracts", tag = "contracts", security(("bearer" = [])),
    request_body = CreateContract,
    params(("Idempotency-Key" = String, Header)),
    responses(
        (status = 201, body = ContractDetail),
        (status = 400, description = "No Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A retry while the first is in flight, or the vehicle is under contract", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or the key reused with another body", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    request: Idempotent<CreateContract>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let input = request.body.parse()?;
    let deps = &state.deps;
    let claim =
        match idempotency::claim(&deps.db, &caller.id.to_string(), &request, deps.clock.now())
            .await?
        {
            Outcome::Replay(response) => return Ok(response),
            Outcome::Fresh(claim) => claim,
        };
    let result = async {
        let mut tx = deps.db.begin().await?;
        let (c, book) = ops::create_contract(&state, &mut tx, &input, Some(caller.id)).await?;
        let detail = ContractDetail::new(&c, &book, state.today());
        claim
            .complete(&mut tx, StatusCode::CREATED, &detail)
            .await?;
        deps.events.commit(tx).await?;
        Ok::<_, ApiError>(detail)
    }
    .await;
    match result {
        Ok(detail) => Ok(created(&detail)),
        Err(e) => {
            claim.release(&deps.db).await;
            Err(e)
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    pub status: Option<String>,
    pub bucket: Option<String>,
    pub customer_id: Option<Uuid>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// List contracts: customers see their own, agents their customers', admins all.
#[utoipa::path(get, path = "/api/v1/contracts", tag = "contracts", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = Page<ContractSummary>), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<ContractSummary>>, ApiError> {
    let mut v = Validator::new();
    let status = params
        .status
        .as_deref()
        .and_then(|s| v.check("status", s.parse::<ContractStatus>()));
    if let Some(b) = &params.bucket {
        if !state.config.buckets().contains(b) {
            v.error(
                "bucket",
                format!("must be one of {}", state.config.buckets().join(", ")),
            );
        }
    }
    let (limit, after) =
        pagination::parse_page_params::<Uuid>(&mut v, params.limit, params.cursor.as_deref());
    v.finish()?;
    let mut filter = ContractFilter {
        status: status.map(|s| s.as_str().to_owned()),
        bucket: params.bucket.clone(),
        customer_id: params.customer_id,
        agent: None,
        after,
    };
    match caller.role {
        Role::Customer => {
            if params.customer_id.is_some_and(|c| c != caller.id) {
                return Err(ApiError::Forbidden(
                    "customers see only their own contracts".into(),
                ));
            }
            filter.customer_id = Some(caller.id);
        }
        Role::Agent => filter.agent = Some(caller.id),
        Role::Admin => {}
    }
    let rows = store::list_contracts(state.deps.db.reader(), &filter, limit).await?;
    let page = pagination::page_from(rows, limit, |c| c.id);
    Ok(Json(Page {
        items: page.items.iter().map(ContractSummary::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A contract with its product snapshot, schedule (with what each
/// installment has been paid and its state) and balances.
#[utoipa::path(get, path = "/api/v1/contracts/{id}", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ContractDetail), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ContractDetail>, ApiError> {
    let c = visible_contract(&state, &caller, id).await?;
    let mut conn = state.deps.db.reader().acquire().await?;
    let book = store::load_book(&mut conn, &c).await?;
    Ok(Json(ContractDetail::new(&c, &book, state.today())))
}

/// One line of a statement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatementLine {
    pub transaction_id: String,
    pub date: NaiveDate,
    pub posted_at: DateTime<Utc>,
    pub kind: String,
    pub description: String,
    pub payment_id: Option<Uuid>,
    /// What the line added to what the customer owes (charges).
    pub debit_minor: i64,
    /// What it took off (payments).
    pub credit_minor: i64,
    /// What the customer owes after the line: receivables less waiting credit.
    pub balance_minor: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Statement {
    pub contract_id: Uuid,
    pub account_number: String,
    pub currency: Currency,
    pub lines: Vec<StatementLine>,
    pub balance_minor: i64,
}

/// Whether a ledger account is one the customer's balance is made of.
fn is_customer_account(account: &str) -> bool {
    account.starts_with("receivable:") || account == "customer_credit"
}

/// Builds the statement from the journal: one line per transaction that
/// changed what the customer owes (applying credit to installments does not).
pub async fn statement_of(
    state: &AppState,
    c: &store::ContractRecord,
) -> Result<Statement, ApiError> {
    let journal = store::journal_of(state.deps.db.reader(), c.id).await?;
    let mut lines: Vec<StatementLine> = Vec::new();
    let mut balance = 0i64;
    let mut current: Option<(String, i64, store::JournalLine)> = None;
    let flush = |entry: Option<(String, i64, store::JournalLine)>,
                 balance: &mut i64,
                 lines: &mut Vec<StatementLine>| {
        if let Some((id, net, first)) = entry {
            if net != 0 {
                *balance += net;
                lines.push(StatementLine {
                    transaction_id: id,
                    date: first.local_date,
                    posted_at: first.posted_at,
                    kind: first.kind.clone(),
                    description: first.memo.clone(),
                    payment_id: first.payment_id,
                    debit_minor: net.max(0),
                    credit_minor: (-net).max(0),
                    balance_minor: *balance,
                });
            }
        }
    };
    for line in journal {
        let same = current
            .as_ref()
            .is_some_and(|(id, _, _)| *id == line.transaction_id);
        if !same {
            flush(current.take(), &mut balance, &mut lines);
            current = Some((line.transaction_id.clone(), 0, line.clone()));
        }
        if is_customer_account(&line.account) {
            if let Some((_, net, _)) = current.as_mut() {
                *net += line.amount_minor;
            }
        }
    }
    flush(current.take(), &mut balance, &mut lines);
    Ok(Statement {
        contract_id: c.id,
        account_number: c.account_number.clone(),
        currency: c.currency,
        lines,
        balance_minor: balance,
    })
}

/// A spreadsheet cell that cannot be read as a formula.
fn safe_cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|m| m.trim().starts_with("text/csv")))
}

/// The contract's statement: ledger lines with a running balance; CSV with `Accept: text/csv`.
#[utoipa::path(get, path = "/api/v1/contracts/{id}/statement", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Statement, content_type = "application/json"),
        (status = 200, description = "The same lines as CSV", content_type = "text/csv"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn statement(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let c = visible_contract(&state, &caller, id).await?;
    let s = statement_of(&state, &c).await?;
    if !wants_csv(&headers) {
        return Ok(Json(s).into_response());
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let header_row = [
        "date",
        "posted_at",
        "kind",
        "description",
        "payment_id",
        "debit_minor",
        "credit_minor",
        "balance_minor",
        "currency",
    ];
    w.write_record(header_row).map_err(ApiError::internal)?;
    for l in &s.lines {
        w.write_record([
            l.date.to_string(),
            l.posted_at.to_rfc3339(),
            safe_cell(&l.kind),
            safe_cell(&l.description),
            l.payment_id.map(|p| p.to_string()).unwrap_or_default(),
            l.debit_minor.to_string(),
            l.credit_minor.to_string(),
            l.balance_minor.to_string(),
            s.currency.code().to_owned(),
        ])
        .map_err(ApiError::internal)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"statement-{}.csv\"",
                    c.account_number
                ),
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PayoffQuote {
    pub contract_id: Uuid,
    pub currency: Currency,
    pub amount_minor: i64,
    /// The end of today in the operator's time zone.
    pub valid_until: DateTime<Utc>,
    pub breakdown: Payoff,
}

/// What paying the contract off today takes.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/payoff-quote", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PayoffQuote), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn payoff_quote(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<PayoffQuote>, ApiError> {
    let c = visible_contract(&state, &caller, id).await?;
    if !c.status.takes_payments() {
        return Err(ApiError::Conflict(format!(
            "the contract is {}; there is nothing to pay off",
            c.status
        )));
    }
    let mut conn = state.deps.db.reader().acquire().await?;
    let book = store::load_book(&mut conn, &c).await?;
    let today = state.today();
    let breakdown = ops::payoff(&c, &book, today);
    let tz = state.config.time_zone;
    let valid_until = today
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_local_timezone(tz).earliest())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| state.deps.clock.now());
    Ok(Json(PayoffQuote {
        contract_id: c.id,
        currency: c.currency,
        amount_minor: breakdown.amount_minor,
        valid_until,
        breakdown,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    pub days: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    pub reason: Option<String>,
}

/// The longest hardship pause granted at once.
pub const MAX_PAUSE_DAYS: i64 = 180;

async fn detail_after(
    state: &AppState,
    c: &store::ContractRecord,
) -> Result<Json<ContractDetail>, ApiError> {
    let mut conn = state.deps.db.reader().acquire().await?;
    let book = store::load_book(&mut conn, c).await?;
    Ok(Json(ContractDetail::new(c, &book, state.today())))
}

/// Pause a contract for hardship (admins): no late fees, collection or enforcement.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/pause", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = PauseRequest,
    responses((status = 200, body = ContractDetail), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<PauseRequest>,
) -> Result<Json<ContractDetail>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let days = match req.days {
        Some(d) if (1..=MAX_PAUSE_DAYS).contains(&d) => d,
        Some(_) => {
            v.error("days", format!("must be between 1 and {MAX_PAUSE_DAYS}"));
            0
        }
        None => {
            v.error("days", "is required");
            0
        }
    };
    let why = reason(&mut v, &req.reason);
    v.finish()?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let c = ops::pause(&state, &mut tx, id, days, &why, caller.id).await?;
    deps.events.commit(tx).await?;
    detail_after(&state, &c).await
}

/// End a pause (admins); the remaining due dates move by the days it lasted.
#[utoipa::path(post, path = "/api/v1/contracts/{id}/resume", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ContractDetail), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ContractDetail>, ApiError> {
    caller.require(&[Role::Admin])?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let c = ops::resume(&state, &mut tx, id, Some(caller.id), state.today()).await?;
    deps.events.commit(tx).await?;
    detail_after(&state, &c).await
}

/// Declare a contract in default (admins).
#[utoipa::path(post, path = "/api/v1/contracts/{id}/default", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ReasonRequest,
    responses((status = 200, body = ContractDetail), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn default(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<ReasonRequest>,
) -> Result<Json<ContractDetail>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let why = reason(&mut v, &req.reason);
    v.finish()?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let c = ops::default(&state, &mut tx, id, &why, caller.id).await?;
    deps.events.commit(tx).await?;
    detail_after(&state, &c).await
}

/// Write off what a defaulted contract still owes (admins).
#[utoipa::path(post, path = "/api/v1/contracts/{id}/write-off", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ReasonRequest,
    responses((status = 200, body = ContractDetail), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn write_off(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<ReasonRequest>,
) -> Result<Json<ContractDetail>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let why = reason(&mut v, &req.reason);
    v.finish()?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let c = ops::write_off(&state, &mut tx, id, &why, caller.id).await?;
    deps.events.commit(tx).await?;
    detail_after(&state, &c).await
}

/// Cancel a contract whose deposit was never paid (admins).
#[utoipa::path(post, path = "/api/v1/contracts/{id}/cancel", tag = "contracts", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ReasonRequest,
    responses((status = 200, body = ContractDetail), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<ReasonRequest>,
) -> Result<Json<ContractDetail>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let why = reason(&mut v, &req.reason);
    v.finish()?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    let c = ops::cancel(&state, &mut tx, id, &why, caller.id).await?;
    deps.events.commit(tx).await?;
    detail_after(&state, &c).await
}

#[cfg(test)]
mod tests {
    use super::safe_cell;

    #[test]
    fn csv_cells_cannot_start_a_formula() {
        for evil in ["=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(safe_cell(evil).starts_with('\''), "{evil}");
        }
        assert_eq!(safe_cell("cash payment received"), "cash payment received");
        assert_eq!(safe_cell(""), "");
    }
}

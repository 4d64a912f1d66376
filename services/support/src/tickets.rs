//! Support tickets: who may open and see them, their status machine, comments
//! (internal notes are staff-only), assignment, attachments, service levels
//! per priority with breach events, and a satisfaction rating.

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use miliki_events::catalogue::support::{
    TicketCreated, TicketReplied, TicketSlaBreached, TicketStatusChanged,
};
use miliki_events::standing;
use miliki_platform::auth::Role;
use miliki_platform::clock::to_micros;
use miliki_platform::db::{like_escape, FilteredQuery, RowExt, Tx};
use miliki_platform::http::{created, Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::string_enum;
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::state::{AppState, Caller};

string_enum!(
    /// What a ticket is about.
    Category {
        Payment => "payment",
        Vehicle => "vehicle",
        Breakdown => "breakdown",
        Accident => "accident",
        Account => "account",
        Other => "other",
    }
);

string_enum!(
    /// How fast a ticket must be answered and solved.
    Priority { Low => "low", Normal => "normal", High => "high", Urgent => "urgent" }
);

string_enum!(
    /// Where a ticket is.
    Status {
        Open => "open",
        InProgress => "in_progress",
        WaitingOnCustomer => "waiting_on_customer",
        Resolved => "resolved",
        Closed => "closed",
    }
);

impl Status {
    fn is_done(self) -> bool {
        matches!(self, Status::Resolved | Status::Closed)
    }
}

/// Whether `role` may move a ticket from `from` to `to` (the reopen window is checked apart).
pub fn transition_allowed(role: Role, from: Status, to: Status) -> bool {
    use Status::*;
    let staff = matches!(role, Role::Admin | Role::Agent);
    match (from, to) {
        (Open, InProgress) | (InProgress, WaitingOnCustomer) | (WaitingOnCustomer, InProgress) => {
            staff
        }
        (Open | InProgress | WaitingOnCustomer, Resolved) => staff,
        // Reopening, and closing a resolved ticket, are the customer's too.
        (Resolved, InProgress) | (Resolved, Closed) => true,
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct TicketRecord {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub subject: String,
    pub body: String,
    pub category: Category,
    pub priority: Priority,
    pub status: Status,
    pub contract_id: Option<Uuid>,
    pub vehicle_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub response_breached_at: Option<DateTime<Utc>>,
    pub resolution_breached_at: Option<DateTime<Utc>>,
    pub rating: Option<i64>,
    pub rating_comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, customer_id, created_by, subject, body, category, priority, status, \
    contract_id, vehicle_id, assignee_id, first_response_due, resolution_due, first_response_at, \
    resolved_at, closed_at, response_breached_at, resolution_breached_at, rating, rating_comment, \
    created_at, updated_at";

impl TicketRecord {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: r.uuid("id")?,
            customer_id: r.opt_uuid("customer_id")?,
            created_by: r.opt_uuid("created_by")?,
            subject: r.try_get("subject")?,
            body: r.try_get("body")?,
            category: r.parsed("category")?,
            priority: r.parsed("priority")?,
            status: r.parsed("status")?,
            contract_id: r.opt_uuid("contract_id")?,
            vehicle_id: r.opt_uuid("vehicle_id")?,
            assignee_id: r.opt_uuid("assignee_id")?,
            first_response_due: r.time("first_response_due")?,
            resolution_due: r.time("resolution_due")?,
            first_response_at: r.opt_time("first_response_at")?,
            resolved_at: r.opt_time("resolved_at")?,
            closed_at: r.opt_time("closed_at")?,
            response_breached_at: r.opt_time("response_breached_at")?,
            resolution_breached_at: r.opt_time("resolution_breached_at")?,
            rating: r.try_get("rating")?,
            rating_comment: r.try_get("rating_comment")?,
            created_at: r.time("created_at")?,
            updated_at: r.time("updated_at")?,
        })
    }

    /// Past a service-level target that is still open at `now`.
    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        !self.status.is_done()
            && ((self.first_response_at.is_none() && self.first_response_due < now)
                || (self.resolved_at.is_none() && self.resolution_due < now))
    }
}

/// A ticket as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TicketView {
    pub id: Uuid,
    pub customer_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub subject: String,
    pub body: String,
    pub category: Category,
    pub priority: Priority,
    pub status: Status,
    pub contract_id: Option<Uuid>,
    pub vehicle_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub response_breached: bool,
    pub resolution_breached: bool,
    pub overdue: bool,
    pub rating: Option<i64>,
    pub rating_comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// On a single ticket: its comments (customers never see internal notes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments: Option<Vec<CommentView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<AttachmentView>>,
}

impl TicketView {
    fn new(t: &TicketRecord, now: DateTime<Utc>) -> Self {
        Self {
            id: t.id,
            customer_id: t.customer_id,
            created_by: t.created_by,
            subject: t.subject.clone(),
            body: t.body.clone(),
            category: t.category,
            priority: t.priority,
            status: t.status,
            contract_id: t.contract_id,
            vehicle_id: t.vehicle_id,
            assignee_id: t.assignee_id,
            first_response_due: t.first_response_due,
            resolution_due: t.resolution_due,
            first_response_at: t.first_response_at,
            resolved_at: t.resolved_at,
            closed_at: t.closed_at,
            response_breached: t.response_breached_at.is_some(),
            resolution_breached: t.resolution_breached_at.is_some(),
            overdue: t.overdue(now),
            rating: t.rating,
            rating_comment: t.rating_comment.clone(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            comments: None,
            attachments: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommentView {
    pub id: Uuid,
    pub author_id: Option<Uuid>,
    pub author_role: String,
    pub body: String,
    pub internal: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttachmentView {
    pub id: Uuid,
    pub content_type: String,
    pub size_bytes: i64,
    pub url: String,
}

// ---------------------------------------------------------------- store

pub async fn find<'e, E>(
    executor: E,
    id: Uuid,
    lock: &str,
) -> Result<Option<TicketRecord>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tickets WHERE id = $1{lock}"
    ))
    .bind(id.to_string())
    .fetch_optional(executor)
    .await?
    .map(|r| TicketRecord::from_row(&r))
    .transpose()
}

/// Inserts a ticket; false if one was already opened by the same source event.
pub async fn insert(
    tx: &mut Tx,
    t: &TicketRecord,
    source_event: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let search = format!("{} {}", t.subject, t.body).to_lowercase();
    let r = sqlx::query(
        "INSERT INTO tickets (id, customer_id, created_by, subject, body, search_text, category, \
         priority, status, contract_id, vehicle_id, source_event_id, first_response_due, \
         resolution_due, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
    )
    .bind(t.id.to_string())
    .bind(t.customer_id.map(|u| u.to_string()))
    .bind(t.created_by.map(|u| u.to_string()))
    .bind(&t.subject)
    .bind(&t.body)
    .bind(search)
    .bind(t.category.as_str())
    .bind(t.priority.as_str())
    .bind(t.status.as_str())
    .bind(t.contract_id.map(|u| u.to_string()))
    .bind(t.vehicle_id.map(|u| u.to_string()))
    .bind(source_event.map(|u| u.to_string()))
    .bind(to_micros(t.first_response_due))
    .bind(to_micros(t.resolution_due))
    .bind(to_micros(t.created_at))
    .execute(&mut **tx)
    .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if miliki_platform::db::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn record_history(
    tx: &mut Tx,
    ticket: Uuid,
    from: Option<Status>,
    to: Status,
    actor: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ticket_history (id, ticket_id, from_status, to_status, actor_id, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(miliki_platform::id::new_id().to_string())
    .bind(ticket.to_string())
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(actor.map(|a| a.to_string()))
    .bind(reason)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn comments(
    db: &sqlx::AnyPool,
    ticket: Uuid,
    internal: bool,
) -> Result<Vec<CommentView>, sqlx::Error> {
    let sql = if internal {
        "SELECT id, author_id, author_role, body, internal, created_at FROM ticket_comments \
         WHERE ticket_id = $1 ORDER BY id"
    } else {
        "SELECT id, author_id, author_role, body, internal, created_at FROM ticket_comments \
         WHERE ticket_id = $1 AND internal = 0 ORDER BY id"
    };
    sqlx::query(sql)
        .bind(ticket.to_string())
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| {
            Ok(CommentView {
                id: r.uuid("id")?,
                author_id: r.opt_uuid("author_id")?,
                author_role: r.try_get("author_role")?,
                body: r.try_get("body")?,
                internal: r.try_get::<i64, _>("internal")? != 0,
                created_at: r.time("created_at")?,
            })
        })
        .collect()
}

async fn attachments(db: &sqlx::AnyPool, ticket: Uuid) -> Result<Vec<AttachmentView>, sqlx::Error> {
    sqlx::query(
        "SELECT id, content_type, size_bytes FROM ticket_attachments WHERE ticket_id = $1 ORDER BY id",
    )
    .bind(ticket.to_string())
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| {
        let id = r.uuid("id")?;
        Ok(AttachmentView {
            id,
            content_type: r.try_get("content_type")?,
            size_bytes: r.try_get("size_bytes")?,
            url: format!("/api/v1/tickets/{ticket}/attachments/{id}"),
        })
    })
    .collect()
}

/// Opens a ticket with its service-level targets, in `tx`, writing its event.
/// False when `source_event` already opened one.
pub async fn open(
    state: &AppState,
    tx: &mut Tx,
    t: &TicketRecord,
    source_event: Option<Uuid>,
) -> Result<bool, ApiError> {
    if !insert(tx, t, source_event).await? {
        return Ok(false);
    }
    record_history(
        tx,
        t.id,
        None,
        Status::Open,
        t.created_by,
        "opened",
        t.created_at,
    )
    .await?;
    state
        .deps
        .events
        .write(
            tx,
            &TicketCreated {
                ticket_id: t.id,
                customer_id: t.customer_id,
                category: t.category.as_str().into(),
                priority: t.priority.as_str().into(),
                first_response_due: t.first_response_due,
                resolution_due: t.resolution_due,
            },
        )
        .await?;
    Ok(true)
}

/// What a new ticket says.
pub struct NewTicket {
    pub customer: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub subject: String,
    pub body: String,
    pub category: Category,
    pub priority: Priority,
    pub contract: Option<Uuid>,
    pub vehicle: Option<Uuid>,
}

/// A new ticket record, its targets from the configured service level.
pub fn new_record(state: &AppState, n: NewTicket) -> TicketRecord {
    let now = state.deps.clock.now();
    let level = state.config.level(n.priority);
    TicketRecord {
        id: miliki_platform::id::new_id(),
        customer_id: n.customer,
        created_by: n.created_by,
        subject: n.subject,
        body: n.body,
        category: n.category,
        priority: n.priority,
        status: Status::Open,
        contract_id: n.contract,
        vehicle_id: n.vehicle,
        assignee_id: None,
        first_response_due: now + level.first_response,
        resolution_due: now + level.resolution,
        first_response_at: None,
        resolved_at: None,
        closed_at: None,
        response_breached_at: None,
        resolution_breached_at: None,
        rating: None,
        rating_comment: None,
        created_at: now,
        updated_at: now,
    }
}

// ---------------------------------------------------------------- access

/// `FOR UPDATE` where the engine has row locks; SQLite's single writer needs none.
pub fn for_update(db: &miliki_platform::db::Db) -> &'static str {
    match db.backend() {
        miliki_platform::db::Backend::Postgres => " FOR UPDATE",
        _ => "",
    }
}

/// Whether `caller` may see `t`: customers their own, agents their book's, admins all.
async fn may_see(state: &AppState, caller: &Caller, t: &TicketRecord) -> Result<bool, ApiError> {
    Ok(match caller.role {
        Role::Admin => true,
        Role::Customer => t.customer_id == Some(caller.id),
        Role::Agent => match t.customer_id {
            Some(c) => {
                standing::onboarded_by(&state.deps.db, c).await? == Some(caller.id)
                    || t.assignee_id == Some(caller.id)
            }
            // A ticket with no known customer (a crash of an unheld vehicle) is for all staff.
            None => true,
        },
    })
}

async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> Result<TicketRecord, ApiError> {
    let t = find(state.deps.db.reader(), id, "")
        .await?
        .ok_or(ApiError::NotFound("ticket"))?;
    if may_see(state, caller, &t).await? {
        Ok(t)
    } else {
        Err(ApiError::NotFound("ticket"))
    }
}

async fn view(state: &AppState, caller: &Caller, t: &TicketRecord) -> Result<TicketView, ApiError> {
    let db = state.deps.db.reader();
    let mut v = TicketView::new(t, state.deps.clock.now());
    v.comments = Some(comments(db, t.id, caller.is_staff()).await?);
    v.attachments = Some(attachments(db, t.id).await?);
    Ok(v)
}

// ---------------------------------------------------------------- handlers

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicket {
    pub subject: Option<String>,
    pub body: Option<String>,
    pub category: Option<String>,
    pub priority: Option<String>,
    pub contract_id: Option<Uuid>,
    pub vehicle_id: Option<Uuid>,
    /// Staff only: the customer the ticket is for (an agent's must be in their book).
    pub customer_id: Option<Uuid>,
}

fn text(v: &mut Validator, field: &str, value: &Option<String>, max: usize) -> String {
    match value.as_deref().map(str::trim) {
        None | Some("") => {
            v.error(field, "is required");
            String::new()
        }
        Some(s) if s.chars().count() > max => {
            v.error(field, format!("must be at most {max} characters"));
            String::new()
        }
        Some(s) => s.to_owned(),
    }
}

/// Open a ticket: customers for themselves, agents for a customer in their book, admins for anyone.
#[utoipa::path(post, path = "/api/v1/tickets", tag = "tickets", security(("bearer" = [])),
    request_body = CreateTicket,
    responses(
        (status = 201, body = TicketView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<CreateTicket>,
) -> Result<Response, ApiError> {
    let mut v = Validator::new();
    let subject = text(&mut v, "subject", &req.subject, 200);
    let body = text(&mut v, "body", &req.body, 10_000);
    let category = match req.category.as_deref() {
        None => {
            v.error("category", "is required");
            None
        }
        Some(c) => v.check("category", c.parse::<Category>()),
    };
    let priority = match req.priority.as_deref() {
        None => Some(Priority::Normal),
        Some(p) => v.check("priority", p.parse::<Priority>()),
    };
    v.finish()?;
    let (Some(category), Some(priority)) = (category, priority) else {
        return Err(ApiError::BadRequest("invalid ticket".into()));
    };
    let customer = match caller.role {
        Role::Customer => {
            if req.customer_id.is_some_and(|c| c != caller.id) {
                return Err(ApiError::Forbidden(
                    "customers open tickets for themselves only".into(),
                ));
            }
            caller.id
        }
        Role::Agent => {
            let c = req
                .customer_id
                .ok_or_else(|| ApiError::field("customer_id", "is required for agents"))?;
            if standing::onboarded_by(&state.deps.db, c).await? != Some(caller.id) {
                return Err(ApiError::Forbidden(
                    "the customer is not in your book".into(),
                ));
            }
            c
        }
        Role::Admin => req
            .customer_id
            .ok_or_else(|| ApiError::field("customer_id", "is required for staff"))?,
    };
    let t = new_record(
        &state,
        NewTicket {
            customer: Some(customer),
            created_by: Some(caller.id),
            subject,
            body,
            category,
            priority,
            contract: req.contract_id,
            vehicle: req.vehicle_id,
        },
    );
    let mut tx = state.deps.db.begin().await?;
    open(&state, &mut tx, &t, None).await?;
    state.deps.events.commit(tx).await?;
    Ok(created(
        &format!("/api/v1/tickets/{}", t.id),
        view(&state, &caller, &t).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub status: Option<String>,
    pub category: Option<String>,
    pub priority: Option<String>,
    pub assignee: Option<Uuid>,
    /// Words of the subject or body.
    pub q: Option<String>,
    /// Only tickets past a service-level target.
    pub overdue: Option<bool>,
    pub cursor: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<u32>,
}

/// Tickets, newest first: a customer's own, an agent's book, or all for admins.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, body = Page<TicketView>),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> Result<Json<Page<TicketView>>, ApiError> {
    let mut v = Validator::new();
    let (limit, before) =
        pagination::parse_page_params::<Uuid>(&mut v, p.limit, p.cursor.as_deref());
    let status = p
        .status
        .as_deref()
        .and_then(|s| v.check("status", s.parse::<Status>()));
    let category = p
        .category
        .as_deref()
        .and_then(|s| v.check("category", s.parse::<Category>()));
    let priority = p
        .priority
        .as_deref()
        .and_then(|s| v.check("priority", s.parse::<Priority>()));
    if p.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        v.error("q", "must be at most 200 characters");
    }
    v.finish()?;
    let now = state.deps.clock.now();
    let mut q = FilteredQuery::new(&format!("SELECT {COLUMNS} FROM tickets"));
    match caller.role {
        Role::Admin => {}
        Role::Customer => {
            q.and("customer_id = ?", caller.id.to_string());
        }
        Role::Agent => {
            let me = caller.id.to_string();
            q.and(
                "(customer_id IN (SELECT user_id FROM user_standing WHERE onboarded_by = ?) \
                 OR customer_id IS NULL OR assignee_id = ?)",
                me,
            );
        }
    }
    if let Some(s) = status {
        q.and("status = ?", s.as_str());
    }
    if let Some(c) = category {
        q.and("category = ?", c.as_str());
    }
    if let Some(pr) = priority {
        q.and("priority = ?", pr.as_str());
    }
    if let Some(a) = p.assignee {
        q.and("assignee_id = ?", a.to_string());
    }
    if let Some(words) = p.q.as_deref() {
        for word in words.split_whitespace().take(8) {
            q.and(
                "search_text LIKE ? ESCAPE '\\'",
                format!("%{}%", like_escape(&word.to_lowercase())),
            );
        }
    }
    if p.overdue == Some(true) {
        q.and(
            "status NOT IN ('resolved', 'closed') AND \
             ((first_response_at IS NULL AND first_response_due < CAST(? AS BIGINT)) \
              OR (resolved_at IS NULL AND resolution_due < CAST(? AS BIGINT)))",
            to_micros(now).to_string(),
        );
    }
    if let Some(b) = before {
        q.and("id < ?", b.to_string());
    }
    q.push(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let rows = q.fetch_all(state.deps.db.reader()).await?;
    let items = rows
        .iter()
        .map(TicketRecord::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let page = pagination::page_from(items, limit, |t| t.id);
    Ok(Json(Page {
        items: page.items.iter().map(|t| TicketView::new(t, now)).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "tickets", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = TicketView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<TicketView>, ApiError> {
    let t = visible(&state, &caller, id).await?;
    Ok(Json(view(&state, &caller, &t).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateComment {
    pub body: Option<String>,
    /// Staff only: a note customers never see.
    #[serde(default)]
    pub internal: bool,
}

/// Comment on a ticket. A staff reply that is not internal is the first response.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/comments", tag = "tickets", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = CreateComment,
    responses(
        (status = 201, body = TicketView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The ticket is closed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn comment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<CreateComment>,
) -> Result<Response, ApiError> {
    let mut v = Validator::new();
    let body = text(&mut v, "body", &req.body, 10_000);
    v.finish()?;
    visible(&state, &caller, id).await?;
    if req.internal && !caller.is_staff() {
        return Err(ApiError::Forbidden("internal notes are for staff".into()));
    }
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let t = find(&mut *tx, id, for_update(&deps.db))
        .await?
        .ok_or(ApiError::NotFound("ticket"))?;
    if t.status == Status::Closed {
        return Err(ApiError::Conflict("the ticket is closed".into()));
    }
    let comment_id = miliki_platform::id::new_id();
    sqlx::query(
        "INSERT INTO ticket_comments (id, ticket_id, author_id, author_role, body, internal, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(comment_id.to_string())
    .bind(id.to_string())
    .bind(caller.id.to_string())
    .bind(caller.role.as_str())
    .bind(&body)
    .bind(i64::from(req.internal))
    .bind(to_micros(now))
    .execute(&mut *tx)
    .await?;
    let mut new_status = None;
    if caller.is_staff() && !req.internal {
        sqlx::query(
            "UPDATE tickets SET first_response_at = COALESCE(first_response_at, $1), updated_at = $1 WHERE id = $2",
        )
        .bind(to_micros(now))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(customer) = t.customer_id {
            deps.events
                .write(
                    &mut tx,
                    &TicketReplied {
                        ticket_id: id,
                        comment_id,
                        customer_id: customer,
                        subject: t.subject.clone(),
                    },
                )
                .await?;
        }
    } else if !caller.is_staff() && t.status == Status::WaitingOnCustomer {
        // The customer answered: back to the team.
        new_status = Some(Status::InProgress);
    }
    if let Some(to) = new_status {
        set_status(
            &state,
            &mut tx,
            &t,
            to,
            Some(caller.id),
            "the customer replied",
            now,
        )
        .await?;
    } else {
        sqlx::query("UPDATE tickets SET updated_at = $1 WHERE id = $2")
            .bind(to_micros(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    deps.events.commit(tx).await?;
    let t = visible(&state, &caller, id).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &caller, &t).await?)).into_response())
}

async fn set_status(
    state: &AppState,
    tx: &mut Tx,
    t: &TicketRecord,
    to: Status,
    actor: Option<Uuid>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let micros = to_micros(now);
    let (resolved, closed): (Option<i64>, Option<i64>) = match to {
        Status::Resolved => (Some(micros), None),
        Status::Closed => (t.resolved_at.map(to_micros), Some(micros)),
        _ => (None, None),
    };
    let changed = sqlx::query(
        "UPDATE tickets SET status = $1, resolved_at = $2, closed_at = $3, updated_at = $4 \
         WHERE id = $5 AND status = $6",
    )
    .bind(to.as_str())
    .bind(resolved)
    .bind(closed)
    .bind(micros)
    .bind(t.id.to_string())
    .bind(t.status.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed != 1 {
        return Err(ApiError::Conflict(
            "the ticket changed meanwhile; retry".into(),
        ));
    }
    record_history(tx, t.id, Some(t.status), to, actor, reason, now).await?;
    state
        .deps
        .events
        .write(
            tx,
            &TicketStatusChanged {
                ticket_id: t.id,
                customer_id: t.customer_id,
                from: t.status.as_str().into(),
                to: to.as_str().into(),
                actor_id: actor,
                reason: reason.to_owned(),
            },
        )
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeStatus {
    pub status: Option<String>,
    pub reason: Option<String>,
}

/// Move a ticket: `open → in_progress → waiting_on_customer → resolved → closed`;
/// a resolved ticket may be reopened (to `in_progress`) within the reopen window.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/status", tag = "tickets", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = ChangeStatus,
    responses(
        (status = 200, body = TicketView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a move from the current status, or the reopen window passed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<ChangeStatus>,
) -> Result<Json<TicketView>, ApiError> {
    let mut v = Validator::new();
    let to = match req.status.as_deref() {
        None => {
            v.error("status", "is required");
            None
        }
        Some(s) => v.check("status", s.parse::<Status>()),
    };
    if req
        .reason
        .as_deref()
        .is_some_and(|r| r.chars().count() > 1000)
    {
        v.error("reason", "must be at most 1000 characters");
    }
    v.finish()?;
    let Some(to) = to else {
        return Err(ApiError::BadRequest("invalid status".into()));
    };
    visible(&state, &caller, id).await?;
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let t = find(&mut *tx, id, for_update(&deps.db))
        .await?
        .ok_or(ApiError::NotFound("ticket"))?;
    if !transition_allowed(caller.role, t.status, to) {
        let staff_move = transition_allowed(Role::Admin, t.status, to);
        return Err(if staff_move {
            ApiError::Forbidden(format!(
                "only staff move a ticket from {} to {to}",
                t.status
            ))
        } else {
            ApiError::Conflict(format!("a ticket cannot move from {} to {to}", t.status))
        });
    }
    if t.status == Status::Resolved && to == Status::InProgress {
        let resolved = t.resolved_at.unwrap_or(t.updated_at);
        if now > resolved + state.config.reopen_window {
            return Err(ApiError::Conflict(
                "the reopen window has passed; open a new ticket".into(),
            ));
        }
    }
    let reason = req.reason.unwrap_or_else(|| format!("moved to {to}"));
    set_status(&state, &mut tx, &t, to, Some(caller.id), &reason, now).await?;
    deps.events.commit(tx).await?;
    let t = visible(&state, &caller, id).await?;
    Ok(Json(view(&state, &caller, &t).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    /// Who handles it; agents may only take tickets themselves.
    pub assignee_id: Option<Uuid>,
}

/// Assign a ticket (staff). An open ticket goes to `in_progress`.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/assign", tag = "tickets", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = Assign,
    responses(
        (status = 200, body = TicketView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<Assign>,
) -> Result<Json<TicketView>, ApiError> {
    caller.require(&[Role::Admin, Role::Agent])?;
    let assignee = req
        .assignee_id
        .ok_or_else(|| ApiError::field("assignee_id", "is required"))?;
    if caller.role == Role::Agent && assignee != caller.id {
        return Err(ApiError::Forbidden(
            "agents may only assign tickets to themselves".into(),
        ));
    }
    visible(&state, &caller, id).await?;
    let deps = &state.deps;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let t = find(&mut *tx, id, for_update(&deps.db))
        .await?
        .ok_or(ApiError::NotFound("ticket"))?;
    if t.status == Status::Closed {
        return Err(ApiError::Conflict("the ticket is closed".into()));
    }
    sqlx::query("UPDATE tickets SET assignee_id = $1, updated_at = $2 WHERE id = $3")
        .bind(assignee.to_string())
        .bind(to_micros(now))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    if t.status == Status::Open {
        set_status(
            &state,
            &mut tx,
            &t,
            Status::InProgress,
            Some(caller.id),
            "assigned",
            now,
        )
        .await?;
    }
    deps.events.commit(tx).await?;
    let t = visible(&state, &caller, id).await?;
    Ok(Json(view(&state, &caller, &t).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// 1 (poor) to 5 (excellent).
    pub score: Option<i64>,
    pub comment: Option<String>,
}

/// The customer rates a resolved or closed ticket, once.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/rating", tag = "tickets", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = Rate,
    responses(
        (status = 200, body = TicketView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not resolved yet, or already rated", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<Rate>,
) -> Result<Json<TicketView>, ApiError> {
    let mut v = Validator::new();
    match req.score {
        None => v.error("score", "is required"),
        Some(s) if !(1..=5).contains(&s) => v.error("score", "must be between 1 and 5"),
        _ => {}
    }
    if req
        .comment
        .as_deref()
        .is_some_and(|c| c.chars().count() > 2000)
    {
        v.error("comment", "must be at most 2000 characters");
    }
    v.finish()?;
    caller.require(&[Role::Customer])?;
    let t = visible(&state, &caller, id).await?;
    if !t.status.is_done() {
        return Err(ApiError::Conflict(
            "only a resolved ticket can be rated".into(),
        ));
    }
    let changed = sqlx::query(
        "UPDATE tickets SET rating = $1, rating_comment = $2, updated_at = $3 \
         WHERE id = $4 AND rating IS NULL",
    )
    .bind(req.score)
    .bind(req.comment.as_deref().map(str::trim))
    .bind(to_micros(state.deps.clock.now()))
    .bind(id.to_string())
    .execute(state.deps.db.writer())
    .await?
    .rows_affected();
    if changed != 1 {
        return Err(ApiError::Conflict("the ticket is already rated".into()));
    }
    let t = visible(&state, &caller, id).await?;
    Ok(Json(view(&state, &caller, &t).await?))
}

/// The multipart form of an attachment upload.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct AttachmentForm {
    /// JPEG, PNG or PDF; the type is read from the bytes.
    #[schema(format = Binary, value_type = String)]
    file: Vec<u8>,
}

/// Attach a photo or document to a ticket (multipart field `file`).
#[utoipa::path(post, path = "/api/v1/tickets/{id}/attachments", tag = "tickets", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body(content = AttachmentForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = AttachmentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let t = visible(&state, &caller, id).await?;
    if t.status == Status::Closed {
        return Err(ApiError::Conflict("the ticket is closed".into()));
    }
    let cap = state.config.max_attachment_bytes;
    let mut file = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?
    {
        if field.name() != Some("file") {
            return Err(ApiError::field(
                field.name().unwrap_or("?").to_owned(),
                "is not a field of this form",
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?
        {
            if bytes.len() + chunk.len() > cap {
                return Err(ApiError::PayloadTooLarge(format!(
                    "an attachment may be at most {cap} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        file = Some(bytes);
    }
    let bytes = file.ok_or_else(|| ApiError::field("file", "is required"))?;
    let content_type = match infer::get(&bytes).map(|k| k.mime_type()) {
        Some(m @ ("image/jpeg" | "image/png" | "application/pdf")) => m,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "attachments must be JPEG, PNG or PDF{}",
                other.map(|m| format!(", not {m}")).unwrap_or_default()
            )))
        }
    };
    let attachment = miliki_platform::id::new_id();
    sqlx::query(
        "INSERT INTO ticket_attachments (id, ticket_id, uploaded_by, content_type, size_bytes, data, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(attachment.to_string())
    .bind(id.to_string())
    .bind(caller.id.to_string())
    .bind(content_type)
    .bind(bytes.len() as i64)
    .bind(bytes.clone())
    .bind(to_micros(state.deps.clock.now()))
    .execute(state.deps.db.writer())
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AttachmentView {
            id: attachment,
            content_type: content_type.to_owned(),
            size_bytes: bytes.len() as i64,
            url: format!("/api/v1/tickets/{id}/attachments/{attachment}"),
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/tickets/{id}/attachments/{attachment}", tag = "tickets", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("attachment" = Uuid, Path)),
    responses(
        (status = 200, description = "The bytes, with their sniffed type"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, attachment)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    visible(&state, &caller, id).await?;
    let row = sqlx::query(
        "SELECT content_type, data FROM ticket_attachments WHERE id = $1 AND ticket_id = $2",
    )
    .bind(attachment.to_string())
    .bind(id.to_string())
    .fetch_optional(state.deps.db.reader())
    .await?
    .ok_or(ApiError::NotFound("attachment"))?;
    let content_type: String = row.try_get("content_type")?;
    let data: Vec<u8> = row.try_get("data")?;
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::from(data))
        .map_err(ApiError::internal)
}

// ---------------------------------------------------------------- service levels

/// Marks the targets passed at `now` as breached, once each, with an event. Returns how many.
pub async fn breach_due(state: &AppState) -> Result<usize, ApiError> {
    let deps = &state.deps;
    let now = deps.clock.now();
    let micros = to_micros(now);
    let mut n = 0;
    for (kind, due, done, mark) in [
        (
            "first_response",
            "first_response_due",
            "first_response_at",
            "response_breached_at",
        ),
        (
            "resolution",
            "resolution_due",
            "resolved_at",
            "resolution_breached_at",
        ),
    ] {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tickets WHERE {done} IS NULL AND {mark} IS NULL AND {due} < $1 \
             AND status NOT IN ('resolved', 'closed') ORDER BY {due} LIMIT 200"
        ))
        .bind(micros)
        .fetch_all(deps.db.reader())
        .await?;
        for row in rows {
            let t = TicketRecord::from_row(&row)?;
            let mut tx = deps.db.begin().await?;
            let marked = sqlx::query(&format!(
                "UPDATE tickets SET {mark} = $1 WHERE id = $2 AND {mark} IS NULL AND {done} IS NULL"
            ))
            .bind(micros)
            .bind(t.id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked != 1 {
                continue;
            }
            deps.events
                .write(
                    &mut tx,
                    &TicketSlaBreached {
                        ticket_id: t.id,
                        customer_id: t.customer_id,
                        priority: t.priority.as_str().into(),
                        target: kind.into(),
                        due: if kind == "first_response" {
                            t.first_response_due
                        } else {
                            t.resolution_due
                        },
                        assignee_id: t.assignee_id,
                    },
                )
                .await?;
            deps.events.commit(tx).await?;
            n += 1;
        }
    }
    Ok(n)
}

pub async fn run_sla(state: AppState, shutdown: CancellationToken) {
    let poll = state.config.sla_poll;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        match breach_due(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(breached = n, "ticket service levels breached"),
            Err(e) => tracing::warn!(error = %e, "service-level check failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_only_reopen_or_close_resolved_tickets() {
        for from in Status::ALL {
            for to in Status::ALL {
                if transition_allowed(Role::Customer, *from, *to) {
                    assert_eq!(*from, Status::Resolved);
                    assert!(matches!(to, Status::InProgress | Status::Closed));
                }
            }
        }
        assert!(!transition_allowed(
            Role::Admin,
            Status::Closed,
            Status::InProgress
        ));
        assert!(transition_allowed(
            Role::Agent,
            Status::Open,
            Status::Resolved
        ));
    }
}

//! Applications: submit (JSON, or multipart with an M-Pesa statement), list,
//! read, accept the offer, and the reviewers' decisions.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use miliki_events::catalogue::credit::{ApplicationAccepted, ApplicationSubmitted};
use miliki_events::standing;
use miliki_platform::auth::Role;
use miliki_platform::contact::PhoneNumber;
use miliki_platform::http::{parse_json, Json, Path, Query};
use miliki_platform::idempotency::{self, Idempotent, Outcome};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{seal_guarantor, ApplicationView};
use crate::domain::{
    AcceptedTerms, ApplicationStatus, Condition, ConditionKind, Guarantor, IncomeFrequency,
    Occupation, Offer,
};
use crate::living;
use crate::ops::{self, Plan};
use crate::quotes;
use crate::state::{may_see_customer, AppState, Caller};
use crate::statement;
use crate::store::{self, ApplicationRecord};
use crate::upgrades;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomeInput {
    pub declared_minor: Option<i64>,
    /// `daily`, `weekly` or `monthly`.
    pub frequency: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuarantorInput {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub national_id: Option<String>,
}

/// An application. As multipart, send it as the part `application` (JSON)
/// with the optional part `statement` (the M-Pesa statement CSV).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRequest {
    /// For agents: the customer in their book. Customers apply for themselves.
    pub customer_id: Option<Uuid>,
    pub vehicle_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub deposit_minor: Option<i64>,
    pub term_periods: Option<i64>,
    /// boda_rider, taxi_driver, delivery_rider, trader, transport_business, salaried, other
    pub occupation: Option<String>,
    pub income: Option<IncomeInput>,
    pub guarantor: Option<GuarantorInput>,
    /// An approved upgrade request for this vehicle: its equity pays the
    /// deposit (which defaults to that equity), and accepting trades the old
    /// contract's vehicle in.
    pub upgrade_request_id: Option<Uuid>,
}

const MAX_MINOR: i64 = 10_000_000_000_000;

fn guarantor(v: &mut Validator, g: &GuarantorInput, prefix: &str) -> Option<Guarantor> {
    let name = v
        .required(&format!("{prefix}.name"), &g.name)
        .map(str::to_owned);
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        v.error(&format!("{prefix}.name"), "must be at most 200 characters");
    }
    let phone = v
        .required(&format!("{prefix}.phone"), &g.phone)
        .and_then(|p| v.check(&format!("{prefix}.phone"), PhoneNumber::parse(p, "KE")));
    let id = v
        .required(&format!("{prefix}.national_id"), &g.national_id)
        .map(str::to_owned);
    if let Some(id) = &id {
        if !(4..=20).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            v.error(
                &format!("{prefix}.national_id"),
                "must be 4 to 20 letters and digits",
            );
        }
    }
    Some(Guarantor {
        name: name?,
        phone: phone?.as_str().to_owned(),
        national_id: id?,
    })
}

struct Parsed {
    customer_id: Option<Uuid>,
    vehicle_id: Uuid,
    product_id: Uuid,
    deposit_minor: i64,
    term_periods: i64,
    occupation: Occupation,
    declared_minor: i64,
    frequency: IncomeFrequency,
    guarantor: Option<Guarantor>,
}

fn parse_request(r: &ApplicationRequest) -> Result<Parsed, ApiError> {
    let mut v = Validator::new();
    if r.vehicle_id.is_none() {
        v.error("vehicle_id", "is required");
    }
    if r.product_id.is_none() {
        v.error("product_id", "is required");
    }
    match r.deposit_minor {
        None => v.error("deposit_minor", "is required"),
        Some(d) if !(0..=MAX_MINOR).contains(&d) => v.error(
            "deposit_minor",
            "must be a non-negative amount in minor units",
        ),
        _ => {}
    }
    match r.term_periods {
        None => v.error("term_periods", "is required"),
        Some(t) if !(1..=10_000).contains(&t) => {
            v.error("term_periods", "must be between 1 and 10000")
        }
        _ => {}
    }
    let occupation = v
        .required("occupation", &r.occupation)
        .and_then(|o| v.check("occupation", o.parse::<Occupation>()));
    let (declared, frequency) = match &r.income {
        None => {
            v.error("income", "is required");
            (None, None)
        }
        Some(i) => {
            let d = match i.declared_minor {
                None => {
                    v.error("income.declared_minor", "is required");
                    None
                }
                Some(d) if !(1..=MAX_MINOR).contains(&d) => {
                    v.error(
                        "income.declared_minor",
                        "must be a positive amount in minor units",
                    );
                    None
                }
                Some(d) => Some(d),
            };
            let f = v
                .required("income.frequency", &i.frequency)
                .and_then(|f| v.check("income.frequency", f.parse::<IncomeFrequency>()));
            (d, f)
        }
    };
    let g = r
        .guarantor
        .as_ref()
        .map(|g| guarantor(&mut v, g, "guarantor"));
    v.finish()?;
    let incomplete = || ApiError::field("body", "is incomplete");
    Ok(Parsed {
        customer_id: r.customer_id,
        vehicle_id: r.vehicle_id.ok_or_else(incomplete)?,
        product_id: r.product_id.ok_or_else(incomplete)?,
        deposit_minor: r.deposit_minor.ok_or_else(incomplete)?,
        term_periods: r.term_periods.ok_or_else(incomplete)?,
        occupation: occupation.ok_or_else(incomplete)?,
        declared_minor: declared.ok_or_else(incomplete)?,
        frequency: frequency.ok_or_else(incomplete)?,
        guarantor: g.flatten(),
    })
}

/// Reads the body: JSON, or multipart with `application` and an optional `statement`.
async fn read_body(
    state: &AppState,
    req: Request,
) -> Result<(ApplicationRequest, Option<Vec<u8>>), ApiError> {
    let mime = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if mime == "multipart/form-data" {
        let mut form = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let mut application = None;
        let mut statement = None;
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(ApiError::PayloadTooLarge(
                        "the upload is larger than allowed".into(),
                    ))
                }
                Err(e) => return Err(ApiError::BadRequest(e.body_text())),
            };
            let name = field.name().unwrap_or_default().to_owned();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::BadRequest(e.body_text()))?;
            match name.as_str() {
                "application" if application.is_none() => {
                    application = Some(parse_json::<ApplicationRequest>(&bytes)?)
                }
                "statement" if statement.is_none() => {
                    if bytes.len() > statement::MAX_BYTES {
                        return Err(ApiError::PayloadTooLarge(
                            "the statement is larger than 2 MB".into(),
                        ));
                    }
                    statement = Some(bytes.to_vec())
                }
                "application" | "statement" => {
                    return Err(ApiError::field(&name, "is given more than once"))
                }
                other => {
                    return Err(ApiError::field(
                        other,
                        "is not a part of an application (application, statement)",
                    ))
                }
            }
        }
        let application = application
            .ok_or_else(|| ApiError::field("application", "the JSON part is required"))?;
        return Ok((application, statement));
    }
    let Json(body) = Json::<ApplicationRequest>::from_request(req, state).await?;
    Ok((body, None))
}

/// Apply for a payment plan on a reserved vehicle (customers for themselves,
/// agents for a customer in their book). The application is scored and
/// decided at once.
#[utoipa::path(post, path = "/api/v1/applications", tag = "applications", security(("bearer" = [])),
    request_body(content(
        (ApplicationRequest = "application/json"),
        (ApplicationRequest = "multipart/form-data"),
    )),
    responses(
        (status = 201, body = ApplicationView),
        (status = 403, description = "Wrong role, not in the agent's book, KYC not approved, or suspended", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No active reservation of the vehicle, or an application already open on it", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named; a malformed statement with its line and column", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Customer, Role::Agent])?;
    let (mut body, statement_bytes) = read_body(&state, req).await?;
    let deps = &state.deps;
    // An upgrade's deposit is its equity unless the applicant says otherwise.
    let grant = match body.upgrade_request_id {
        Some(id) => {
            let mut conn = deps.db.reader().acquire().await?;
            let grant = upgrades::find(&mut conn, id, "")
                .await?
                .ok_or_else(upgrades::not_found)?;
            body.deposit_minor.get_or_insert(grant.equity_minor.max(0));
            Some(grant)
        }
        None => None,
    };
    let input = parse_request(&body)?;
    let customer = match caller.role {
        Role::Customer => match input.customer_id {
            Some(c) if c != caller.id => {
                return Err(ApiError::Forbidden(
                    "customers apply for themselves only".into(),
                ))
            }
            _ => caller.id,
        },
        _ => {
            let c = input
                .customer_id
                .ok_or_else(|| ApiError::field("customer_id", "is required for agents"))?;
            if standing::onboarded_by(&deps.db, c).await? != Some(caller.id) {
                return Err(ApiError::Forbidden(
                    "the customer is not in your book".into(),
                ));
            }
            c
        }
    };
    let summary = match statement_bytes {
        Some(bytes) => {
            let parsed = tokio::task::spawn_blocking(move || statement::parse(&bytes))
                .await
                .map_err(ApiError::internal)??;
            statement::summarize(&parsed)
        }
        None => None,
    };
    let standing = standing::standing(&deps.db, customer).await?;
    if standing.suspended {
        return Err(ApiError::Forbidden(
            "the customer's account is suspended".into(),
        ));
    }
    if !standing.kyc_approved {
        return Err(ApiError::Forbidden(
            "the customer's identity (KYC) must be approved before applying".into(),
        ));
    }
    let now = deps.clock.now();
    let reservation = store::active_reservation(&deps.db, customer, input.vehicle_id, now)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(
                "the customer holds no active reservation of this vehicle: reserve it first".into(),
            )
        })?;
    let (_, price, currency) = store::find_vehicle(&deps.db, input.vehicle_id)
        .await?
        .ok_or_else(|| ApiError::field("vehicle_id", "no such vehicle is listed"))?;
    {
        let mut conn = deps.db.reader().acquire().await?;
        if !store::open_on_reservation(&mut conn, reservation, "")
            .await?
            .is_empty()
        {
            return Err(ApiError::Conflict(
                "an application is already open for this reservation".into(),
            ));
        }
    }
    if let Some(g) = &grant {
        let mut conn = deps.db.reader().acquire().await?;
        upgrades::check_usable(&mut conn, g, customer, input.vehicle_id, now).await?;
    }
    let declared_monthly = input.frequency.monthly(input.declared_minor);
    let assessment = ops::assess(
        &state,
        &caller.token,
        &Plan {
            customer_id: customer,
            product_id: input.product_id,
            currency: &currency,
            price_minor: price,
            deposit_minor: input.deposit_minor,
            term_periods: input.term_periods,
            declared_monthly,
            statement: summary.as_ref(),
            has_guarantor: input.guarantor.is_some(),
        },
    )
    .await?;
    let now = deps.clock.now();
    let a = ApplicationRecord {
        id: miliki_platform::id::new_id(),
        customer_id: customer,
        submitted_by: caller.id,
        vehicle_id: input.vehicle_id,
        reservation_id: reservation,
        product_id: input.product_id,
        currency,
        price_minor: price,
        deposit_minor: input.deposit_minor,
        term_periods: input.term_periods,
        occupation: input.occupation.as_str().to_owned(),
        income_declared_minor: input.declared_minor,
        income_frequency: input.frequency.as_str().to_owned(),
        guarantor_sealed: input.guarantor.as_ref().map(|g| seal_guarantor(&state, g)),
        statement: summary,
        status: assessment.status,
        features: assessment.features,
        score: Some(assessment.score),
        offer: assessment.offer,
        accepted: None,
        created_at: now,
        updated_at: now,
    };
    let mut tx = deps.db.begin().await?;
    if let Err(e) = store::insert_application(&mut tx, &a).await {
        if miliki_platform::db::is_unique_violation(&e) {
            return Err(ApiError::Conflict(
                "an application is already open for this reservation".into(),
            ));
        }
        return Err(e.into());
    }
    ops::transition(&mut tx, &a, None, Some(caller.id), &assessment.reason, now).await?;
    if let Some(g) = &grant {
        upgrades::bind(&mut tx, g.upgrade_request_id, a.id).await?;
    }
    deps.events
        .write(
            &mut tx,
            &ApplicationSubmitted {
                application_id: a.id,
                customer_id: a.customer_id,
                submitted_by: caller.id,
                vehicle_id: a.vehicle_id,
                reservation_id: a.reservation_id,
                product_id: a.product_id,
            },
        )
        .await?;
    deps.events
        .write(&mut tx, &ops::decided_event(&a, None))
        .await?;
    living::recompute(&state, &mut tx, customer, "application", None)
        .await
        .map_err(ApiError::internal)?;
    deps.events.commit(tx).await?;
    let mut conn = deps.db.reader().acquire().await?;
    let history = store::transitions(&mut conn, a.id).await?;
    let mut view = ApplicationView::new(&state, &a, Some(history));
    view.upgrade = grant;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/applications/{}", a.id))],
        Json(view),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub status: Option<String>,
    pub customer_id: Option<Uuid>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// List applications, newest first: customers their own, agents their
/// book's, admins all (`status=manual_review` is the review queue).
#[utoipa::path(get, path = "/api/v1/applications", tag = "applications", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = Page<ApplicationView>), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<ApplicationView>>, ApiError> {
    let mut v = Validator::new();
    let status = params
        .status
        .as_deref()
        .and_then(|s| v.check("status", s.parse::<ApplicationStatus>()));
    let (limit, cursor) =
        pagination::parse_page_params::<Uuid>(&mut v, params.limit, params.cursor.as_deref());
    v.finish()?;
    let (customer, agent) = match caller.role {
        Role::Customer => (Some(caller.id), None),
        Role::Agent => (params.customer_id, Some(caller.id)),
        Role::Admin => (params.customer_id, None),
    };
    if caller.role == Role::Customer && params.customer_id.is_some_and(|c| c != caller.id) {
        return Err(ApiError::Forbidden(
            "customers see their own applications only".into(),
        ));
    }
    let rows =
        store::list_applications(&state.deps.db, customer, agent, status, cursor, limit).await?;
    let page = pagination::page_from(rows, limit, |a| a.id);
    Ok(Json(Page {
        items: page
            .items
            .iter()
            .map(|a| ApplicationView::new(&state, a, None))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

async fn visible(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<ApplicationRecord, ApiError> {
    let mut conn = state.deps.db.reader().acquire().await?;
    let a = store::find_application(&mut conn, id, "")
        .await?
        .ok_or(ApiError::NotFound("application"))?;
    if may_see_customer(state, caller, a.customer_id).await? {
        Ok(a)
    } else {
        Err(ApiError::NotFound("application"))
    }
}

/// An application with its score, offer and history of state changes.
#[utoipa::path(get, path = "/api/v1/applications/{id}", tag = "applications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ApplicationView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ApplicationView>, ApiError> {
    let a = visible(&state, &caller, id).await?;
    let mut conn = state.deps.db.reader().acquire().await?;
    let history = store::transitions(&mut conn, a.id).await?;
    let mut view = ApplicationView::new(&state, &a, Some(history));
    view.upgrade = upgrades::of_application(&mut conn, a.id).await?;
    Ok(Json(view))
}

/// Taking the offer: as given, or with one of its conditions met.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The deposit to pay: at least the offer's (or the condition's).
    pub deposit_minor: Option<i64>,
    /// The term: the offer's, or a `longer_term` condition's.
    pub term_periods: Option<i64>,
    /// Meets a `guarantor` condition.
    pub guarantor: Option<GuarantorInput>,
}

/// Accept the offer (the customer, or the agent for them). Send an
/// `Idempotency-Key`: this writes the contract (in the payments service).
#[utoipa::path(post, path = "/api/v1/applications/{id}/accept", tag = "applications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = AcceptRequest,
    responses(
        (status = 200, body = ApplicationView),
        (status = 409, description = "No standing offer, or the reservation lapsed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The conditions are not met", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payments cannot quote right now; nothing changed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    request: Idempotent<AcceptRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Customer, Role::Agent])?;
    let a = visible(&state, &caller, id).await?;
    let deps = &state.deps;
    let claim =
        match idempotency::claim(&deps.db, &caller.id.to_string(), &request, deps.clock.now())
            .await?
        {
            Outcome::Replay(response) => return Ok(response),
            Outcome::Fresh(claim) => claim,
        };
    let result = accept_inner(&state, &caller, a, &request.body, &claim).await;
    match result {
        Ok(view) => Ok(Json(view).into_response()),
        Err(e) => {
            claim.release(&deps.db).await;
            Err(e)
        }
    }
}

/// Which condition (if any) the request meets, and the terms it sets.
fn terms_for(
    a: &ApplicationRecord,
    offer: &Offer,
    req: &AcceptRequest,
    guarantor_given: bool,
) -> Result<(i64, i64, Option<ConditionKind>), ApiError> {
    let deposit = req.deposit_minor.unwrap_or(offer.deposit_minor);
    let term = req.term_periods.unwrap_or(offer.term_periods);
    if deposit >= a.price_minor {
        return Err(ApiError::field(
            "deposit_minor",
            "must be less than the price: nothing would be financed",
        ));
    }
    if deposit < offer.deposit_minor {
        return Err(ApiError::field(
            "deposit_minor",
            format!("must be at least the offer's {}", offer.deposit_minor),
        ));
    }
    if a.status == ApplicationStatus::Approved {
        if term != offer.term_periods {
            return Err(ApiError::field(
                "term_periods",
                format!("the offer is for {} periods", offer.term_periods),
            ));
        }
        return Ok((deposit, term, None));
    }
    let met = offer.conditions.iter().find(|c: &&Condition| match c.kind {
        ConditionKind::HigherDeposit => {
            c.deposit_minor.is_some_and(|d| deposit >= d) && term == offer.term_periods
        }
        ConditionKind::LongerTerm => c.term_periods == Some(term),
        ConditionKind::Guarantor => guarantor_given && term == offer.term_periods,
    });
    match met {
        Some(c) => Ok((deposit, term, Some(c.kind))),
        None => Err(ApiError::field(
            "conditions",
            format!(
                "meet one of the offer's conditions: {}",
                offer
                    .conditions
                    .iter()
                    .map(|c| c.description.clone())
                    .collect::<Vec<_>>()
                    .join("; or ")
            ),
        )),
    }
}

async fn accept_inner(
    state: &AppState,
    caller: &Caller,
    a: ApplicationRecord,
    req: &AcceptRequest,
    claim: &idempotency::Claim,
) -> Result<ApplicationView, ApiError> {
    let deps = &state.deps;
    if !a.status.has_offer() {
        return Err(ApiError::Conflict(format!(
            "the application is {}: there is no offer to accept",
            a.status
        )));
    }
    let offer = a
        .offer
        .clone()
        .ok_or_else(|| ApiError::Conflict("the application has no offer".into()))?;
    let mut v = Validator::new();
    let g = req
        .guarantor
        .as_ref()
        .map(|g| guarantor(&mut v, g, "guarantor"));
    v.finish()?;
    let g = g.flatten();
    let (deposit, term, condition) = terms_for(&a, &offer, req, g.is_some())?;
    if !store::reservation_active(&deps.db, a.reservation_id, deps.clock.now()).await? {
        return Err(ApiError::Conflict(
            "the reservation is no longer active: the offer has lapsed".into(),
        ));
    }
    // The contract's figures, by payments' rules, before anything is promised.
    let quote = quotes::quote(
        state,
        &caller.token,
        a.product_id,
        a.price_minor,
        &a.currency,
        deposit,
        term,
    )
    .await
    .map_err(quotes::QuoteError::into_api)?;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let lock = store::for_update(&deps.db);
    let mut current = store::find_application(&mut tx, a.id, lock)
        .await?
        .ok_or(ApiError::NotFound("application"))?;
    if current.status != a.status {
        return Err(ApiError::Conflict(format!(
            "the application became {} meanwhile",
            current.status
        )));
    }
    let from = current.status;
    current.status = ApplicationStatus::Accepted;
    current.deposit_minor = deposit;
    current.term_periods = term;
    if let Some(g) = &g {
        current.guarantor_sealed = Some(seal_guarantor(state, g));
    }
    current.accepted = Some(AcceptedTerms {
        deposit_minor: deposit,
        term_periods: term,
        quote: quote.clone(),
        condition_met: condition,
        accepted_by: caller.id,
        accepted_at: now,
    });
    current.updated_at = now;
    store::update_application(&mut tx, &current).await?;
    let why = match condition {
        Some(c) => format!("offer accepted with the {c} condition met"),
        None => "offer accepted as given".to_owned(),
    };
    ops::transition(&mut tx, &current, Some(from), Some(caller.id), &why, now).await?;
    let grant = upgrades::of_application(&mut tx, current.id).await?;
    deps.events
        .write(
            &mut tx,
            &ApplicationAccepted {
                application_id: current.id,
                customer_id: current.customer_id,
                vehicle_id: current.vehicle_id,
                reservation_id: Some(current.reservation_id),
                product_id: current.product_id,
                price_minor: current.price_minor,
                currency: current.currency.clone(),
                deposit_minor: deposit,
                term_periods: term,
                upgrade: grant.as_ref().map(upgrades::UpgradeGrant::terms),
            },
        )
        .await?;
    let history = store::transitions(&mut tx, current.id).await?;
    let mut view = ApplicationView::new(state, &current, Some(history));
    view.upgrade = grant;
    claim.complete(&mut tx, StatusCode::OK, &view).await?;
    deps.events.commit(tx).await?;
    Ok(view)
}

/// A reviewer's decision on an application in manual review.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = ApplicationDecisionRequest)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `approved`, `conditionally_approved` or `declined`.
    pub decision: Option<String>,
    /// For `conditionally_approved`: the conditions, any one of which will do.
    pub conditions: Option<Vec<Condition>>,
    pub reason: Option<String>,
}

/// Decide an application in manual review (admins).
#[utoipa::path(post, path = "/api/v1/applications/{id}/decision", tag = "applications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = DecisionRequest,
    responses(
        (status = 200, body = ApplicationView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not in manual review", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payments cannot quote an approval right now; nothing changed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(req): Json<DecisionRequest>,
) -> Result<Json<ApplicationView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let deps = &state.deps;
    let mut v = Validator::new();
    let decision = v
        .required("decision", &req.decision)
        .and_then(|d| v.check("decision", d.parse::<ApplicationStatus>()));
    if let Some(d) = decision {
        if !matches!(
            d,
            ApplicationStatus::Approved
                | ApplicationStatus::ConditionallyApproved
                | ApplicationStatus::Declined
        ) {
            v.error(
                "decision",
                "must be one of approved, conditionally_approved, declined",
            );
        }
    }
    let reason = match v.required("reason", &req.reason) {
        Some(r) if r.chars().count() > 500 => {
            v.error("reason", "must be at most 500 characters");
            String::new()
        }
        Some(r) => r.to_owned(),
        None => String::new(),
    };
    v.finish()?;
    let Some(decision) = decision else {
        return Err(ApiError::field("decision", "is required"));
    };
    let mut conn = deps.db.reader().acquire().await?;
    let a = store::find_application(&mut conn, id, "")
        .await?
        .ok_or(ApiError::NotFound("application"))?;
    drop(conn);
    if a.status != ApplicationStatus::ManualReview {
        return Err(ApiError::Conflict(format!(
            "the application is {}, not in manual review",
            a.status
        )));
    }
    let conditions = req.conditions.clone().unwrap_or_default();
    match decision {
        ApplicationStatus::ConditionallyApproved => ops::check_conditions(&a, &conditions)?,
        _ if !conditions.is_empty() => {
            return Err(ApiError::field(
                "conditions",
                "only a conditional approval has conditions",
            ))
        }
        _ => {}
    }
    // An offer needs payments' quote; re-ask if it was missing.
    let mut offer = a.offer.clone();
    if decision != ApplicationStatus::Declined {
        let quote = match offer.as_ref().and_then(|o| o.quote.clone()) {
            Some(q) => q,
            None => quotes::quote(
                &state,
                &caller.token,
                a.product_id,
                a.price_minor,
                &a.currency,
                a.deposit_minor,
                a.term_periods,
            )
            .await
            .map_err(quotes::QuoteError::into_api)?,
        };
        offer = Some(Offer {
            product_id: a.product_id,
            currency: a.currency.clone(),
            price_minor: a.price_minor,
            deposit_minor: a.deposit_minor,
            term_periods: a.term_periods,
            quote: Some(quote),
            conditions: conditions.clone(),
        });
    } else {
        offer = offer.filter(|_| false);
    }
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    let lock = store::for_update(&deps.db);
    let mut current = store::find_application(&mut tx, id, lock)
        .await?
        .ok_or(ApiError::NotFound("application"))?;
    if current.status != ApplicationStatus::ManualReview {
        return Err(ApiError::Conflict(format!(
            "the application became {} meanwhile",
            current.status
        )));
    }
    current.status = decision;
    current.offer = offer;
    current.updated_at = now;
    store::update_application(&mut tx, &current).await?;
    ops::transition(
        &mut tx,
        &current,
        Some(ApplicationStatus::ManualReview),
        Some(caller.id),
        &reason,
        now,
    )
    .await?;
    deps.events
        .write(&mut tx, &ops::decided_event(&current, Some(caller.id)))
        .await?;
    let history = store::transitions(&mut tx, current.id).await?;
    deps.events.commit(tx).await?;
    Ok(Json(ApplicationView::new(&state, &current, Some(history))))
}

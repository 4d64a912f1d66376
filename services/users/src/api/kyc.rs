//! `/api/v1/kyc`: identity documents, submitted by a customer or their agent
//! and reviewed by an admin. Images are sniffed from their bytes, capped in
//! size, stored encrypted and served back only to those who may see them.

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use miliki_events::catalogue::users::{
    KycApproved, KycRejected, KycResubmissionRequested, KycSubmitted,
};
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::users::may_see;
use crate::domain::{self, DocumentSide, DocumentType, KycDecision, KycStatus};
use crate::state::{AppState, Caller};
use crate::store::{self, NewDocument, NewSubmission, SubmissionFilter, SubmissionRecord};

/// A document image as listed on its submission.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocumentView {
    pub side: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// Where the image itself can be fetched.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    pub status: String,
    pub actor_id: Uuid,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmissionView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub submitted_by: Uuid,
    pub document_type: DocumentType,
    /// Shown in full to admins, masked to everyone else.
    pub document_number: String,
    pub status: KycStatus,
    pub reason: Option<String>,
    pub reviewed_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub documents: Vec<DocumentView>,
    pub history: Vec<HistoryView>,
}

async fn view(
    state: &AppState,
    caller: &Caller,
    s: &SubmissionRecord,
) -> Result<SubmissionView, ApiError> {
    let db = &state.deps.db;
    let documents = store::document_list(db, s.id)
        .await?
        .into_iter()
        .map(|(side, content_type, size_bytes)| DocumentView {
            url: format!("/api/v1/kyc/submissions/{}/documents/{side}", s.id),
            side,
            content_type,
            size_bytes,
        })
        .collect();
    let history = store::history(db, s.id)
        .await?
        .into_iter()
        .map(|h| HistoryView {
            status: h.status,
            actor_id: h.actor_id,
            reason: h.reason,
            at: h.at,
        })
        .collect();
    Ok(SubmissionView {
        id: s.id,
        user_id: s.user_id,
        submitted_by: s.submitted_by,
        document_type: s.document_type,
        document_number: if caller.role == Role::Admin {
            s.document_number.clone()
        } else {
            domain::mask_document_number(&s.document_number)
        },
        status: s.status,
        reason: s.reason.clone(),
        reviewed_by: s.reviewed_by,
        created_at: s.created_at,
        updated_at: s.updated_at,
        documents,
        history,
    })
}

/// The multipart form of a submission, as documented in OpenAPI.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct SubmissionForm {
    /// `national_id`, `passport` or `driving_licence`.
    document_type: String,
    document_number: String,
    /// The customer the documents belong to; agents and admins must give it.
    user_id: Option<Uuid>,
    /// JPEG, PNG or PDF.
    #[schema(format = Binary, value_type = String)]
    front: Vec<u8>,
    /// Required except for passports.
    #[schema(format = Binary, value_type = Option<String>)]
    back: Option<Vec<u8>>,
    /// JPEG or PNG of the customer's face.
    #[schema(format = Binary, value_type = String)]
    selfie: Vec<u8>,
}

/// Reads a multipart field's bytes, refusing more than `cap`.
async fn read_capped(
    field: axum::extract::multipart::Field<'_>,
    cap: usize,
    name: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut field = field;
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > cap {
            return Err(ApiError::PayloadTooLarge(format!(
                "{name} is larger than {cap} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the upload is larger than allowed".into())
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// The content type of an image, judged from its bytes, never from what the client says.
fn sniff(side: DocumentSide, bytes: &[u8]) -> Result<&'static str, String> {
    if bytes.is_empty() {
        return Err("is empty".into());
    }
    let kind = infer::get(bytes).map(|k| k.mime_type());
    match (side, kind) {
        (_, Some("image/jpeg")) => Ok("image/jpeg"),
        (_, Some("image/png")) => Ok("image/png"),
        (DocumentSide::Front | DocumentSide::Back, Some("application/pdf")) => {
            Ok("application/pdf")
        }
        (DocumentSide::Selfie, Some("application/pdf")) => {
            Err("must be a JPEG or PNG photo".into())
        }
        (_, Some(other)) => Err(format!("is {other}; JPEG, PNG or PDF expected")),
        (_, None) => Err("is not a JPEG, PNG or PDF file".into()),
    }
}

/// Submit identity documents (multipart/form-data).
#[utoipa::path(post, path = "/api/v1/kyc/submissions", tag = "kyc", security(("bearer" = [])),
    request_body(content = SubmissionForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = SubmissionView),
        (status = 409, description = "A submission awaits review, or KYC is approved", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<SubmissionView>), ApiError> {
    let mut multipart = multipart
        .map_err(|_| ApiError::UnsupportedMediaType("expected multipart/form-data".into()))?;
    let cap = state.deps.settings.max_upload_bytes;
    let mut v = Validator::new();
    let mut document_type = None;
    let mut document_number = None;
    let mut user_id = None;
    let mut files: Vec<(DocumentSide, Vec<u8>)> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "document_type" => document_type = Some(field.text().await.map_err(multipart_error)?),
            "document_number" => {
                document_number = Some(field.text().await.map_err(multipart_error)?)
            }
            "user_id" => user_id = Some(field.text().await.map_err(multipart_error)?),
            "front" | "back" | "selfie" => {
                let side: DocumentSide =
                    name.parse().map_err(|e: String| ApiError::BadRequest(e))?;
                if files.iter().any(|(s, _)| *s == side) {
                    v.error(&name, "was sent twice");
                }
                let bytes = read_capped(field, cap, &name).await?;
                files.push((side, bytes));
            }
            other => v.error(other, "is not a field of a KYC submission"),
        }
    }
    let document_type = match document_type.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => v.check("document_type", t.parse::<DocumentType>()),
        _ => {
            v.error("document_type", "is required");
            None
        }
    };
    let number = match (document_type, document_number.as_deref().map(str::trim)) {
        (_, None) | (_, Some("")) => {
            v.error("document_number", "is required");
            None
        }
        (Some(t), Some(n)) => v.check("document_number", t.parse_number(n)),
        (None, Some(_)) => None,
    };
    let target = match user_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(raw) => v.check("user_id", Uuid::parse_str(raw).map_err(|_| "is not an id")),
        None if caller.role == Role::Customer => Some(caller.id),
        None => {
            v.error("user_id", "is required when submitting for a customer");
            None
        }
    };
    let mut documents = Vec::new();
    for side in [
        DocumentSide::Front,
        DocumentSide::Back,
        DocumentSide::Selfie,
    ] {
        match files.iter().find(|(s, _)| *s == side) {
            Some((_, bytes)) => {
                if let Some(content_type) = v.check(side.as_str(), sniff(side, bytes)) {
                    documents.push(NewDocument {
                        side,
                        content_type,
                        bytes: bytes.clone(),
                    });
                }
            }
            None if side == DocumentSide::Back
                && document_type.is_some_and(|t| !t.needs_back()) => {}
            None => v.error(side.as_str(), "is required"),
        }
    }
    v.finish()?;
    let (Some(document_type), Some(number), Some(target)) = (document_type, number, target) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };

    let deps = &state.deps;
    let customer = store::find_user(&deps.db, &deps.keyring, target)
        .await?
        .filter(|u| may_see(&caller, u))
        .ok_or(ApiError::NotFound("user"))?;
    if caller.role == Role::Customer && customer.id != caller.id {
        return Err(ApiError::NotFound("user"));
    }
    if customer.role != Role::Customer {
        return Err(ApiError::field("user_id", "KYC is for customer accounts"));
    }
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    domain::may_submit(store::latest_status(&mut tx, customer.id).await?)
        .map_err(ApiError::Conflict)?;
    let id = store::insert_submission(
        &mut tx,
        &deps.keyring,
        &NewSubmission {
            user_id: customer.id,
            submitted_by: caller.id,
            document_type,
            document_number: &number,
            documents: &documents,
        },
        now,
    )
    .await?;
    deps.events
        .write(
            &mut tx,
            &KycSubmitted {
                submission_id: id,
                user_id: customer.id,
                submitted_by: caller.id,
                document_type: document_type.as_str().to_owned(),
            },
        )
        .await?;
    deps.events.commit(tx).await?;
    let record = store::find_submission(&deps.db, &deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("submission"))?;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, &caller, &record).await?),
    ))
}

/// A submission the caller may see, or 404.
async fn visible_submission(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<SubmissionRecord, ApiError> {
    let deps = &state.deps;
    let submission = store::find_submission(&deps.db, &deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("submission"))?;
    let owner = store::find_user(&deps.db, &deps.keyring, submission.user_id).await?;
    match owner {
        Some(owner) if may_see(caller, &owner) => Ok(submission),
        _ => Err(ApiError::NotFound("submission")),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Whose submissions; customers always see only their own.
    pub user_id: Option<Uuid>,
    /// For review queues: `pending`, `approved`, …
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// List submissions, newest first.
#[utoipa::path(get, path = "/api/v1/kyc/submissions", tag = "kyc", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = Page<SubmissionView>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<SubmissionView>>, ApiError> {
    let mut v = Validator::new();
    let (limit, before) =
        pagination::parse_page_params::<Uuid>(&mut v, params.limit, params.cursor.as_deref());
    let status = params
        .status
        .as_deref()
        .and_then(|s| v.check("status", s.parse::<KycStatus>()));
    v.finish()?;
    let filter = match caller.role {
        Role::Customer => {
            if params.user_id.is_some_and(|u| u != caller.id) {
                return Err(ApiError::NotFound("user"));
            }
            SubmissionFilter {
                user_id: Some(caller.id),
                status,
                before,
                limit,
                ..Default::default()
            }
        }
        Role::Agent => SubmissionFilter {
            user_id: params.user_id,
            onboarded_by: Some(caller.id),
            status,
            before,
            limit,
        },
        Role::Admin => SubmissionFilter {
            user_id: params.user_id,
            status,
            before,
            limit,
            ..Default::default()
        },
    };
    let rows = store::list_submissions(&state.deps.db, &state.deps.keyring, &filter).await?;
    let page = pagination::page_from(rows, limit, |s| s.id);
    let mut items = Vec::with_capacity(page.items.len());
    for s in &page.items {
        items.push(view(&state, &caller, s).await?);
    }
    Ok(Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// One submission with its documents and history.
#[utoipa::path(get, path = "/api/v1/kyc/submissions/{id}", tag = "kyc", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = SubmissionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<SubmissionView>, ApiError> {
    let submission = visible_submission(&state, &caller, id).await?;
    Ok(Json(view(&state, &caller, &submission).await?))
}

/// One document image, decrypted, for its owner, their agent and admins.
#[utoipa::path(get, path = "/api/v1/kyc/submissions/{id}/documents/{side}", tag = "kyc", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("side" = String, Path, description = "front, back or selfie")),
    responses(
        (status = 200, description = "The image", content_type = "application/octet-stream"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn document(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, side)): Path<(Uuid, String)>,
) -> Result<Response, ApiError> {
    let side: DocumentSide = side.parse().map_err(|_| ApiError::NotFound("document"))?;
    let submission = visible_submission(&state, &caller, id).await?;
    let (content_type, bytes) =
        store::document(&state.deps.db, &state.deps.keyring, submission.id, side)
            .await?
            .ok_or(ApiError::NotFound("document"))?;
    let extension = match content_type.as_str() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    // A download, never a page: an uploaded file must not run in our origin.
    Response::builder()
        .header(header::CONTENT_TYPE, content_type.as_str())
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"kyc-{}-{side}.{extension}\"",
                submission.id
            ),
        )
        .header(
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        )
        .header(header::CACHE_CONTROL, "private, no-store")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::from(bytes))
        .map_err(ApiError::internal)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DecisionRequest {
    /// `approve`, `reject` or `request_resubmission`.
    pub decision: Option<String>,
    /// Required to reject or request resubmission.
    pub reason: Option<String>,
}

/// Decide a pending submission (admins).
#[utoipa::path(post, path = "/api/v1/kyc/submissions/{id}/decision", tag = "kyc", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = DecisionRequest,
    responses(
        (status = 200, body = SubmissionView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<DecisionRequest>,
) -> Result<Json<SubmissionView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut v = Validator::new();
    let decision = match body.decision.as_deref() {
        Some(d) => v.check("decision", d.parse::<KycDecision>()),
        None => {
            v.error("decision", "is required");
            None
        }
    };
    let reason =
        decision.and_then(|d| v.check("reason", domain::parse_reason(d, body.reason.as_deref())));
    v.finish()?;
    let (Some(decision), Some(reason)) = (decision, reason) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let deps = &state.deps;
    let submission = store::find_submission(&deps.db, &deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("submission"))?;
    let next = domain::decide(submission.status, decision).map_err(ApiError::Conflict)?;
    let now = deps.clock.now();
    let mut tx = deps.db.begin().await?;
    if !store::decide_submission(&mut tx, id, next, caller.id, reason.as_deref(), now).await? {
        return Err(ApiError::Conflict(
            "the submission was decided meanwhile".into(),
        ));
    }
    store::record_kyc_state(
        &mut tx,
        id,
        submission.user_id,
        next,
        caller.id,
        reason.as_deref(),
        now,
    )
    .await?;
    let (user_id, reviewed_by, reason_text) = (
        submission.user_id,
        caller.id,
        reason.clone().unwrap_or_default(),
    );
    match next {
        KycStatus::Approved => {
            deps.events
                .write(
                    &mut tx,
                    &KycApproved {
                        submission_id: id,
                        user_id,
                        reviewed_by,
                    },
                )
                .await?
        }
        KycStatus::Rejected => {
            deps.events
                .write(
                    &mut tx,
                    &KycRejected {
                        submission_id: id,
                        user_id,
                        reviewed_by,
                        reason: reason_text,
                    },
                )
                .await?
        }
        _ => {
            deps.events
                .write(
                    &mut tx,
                    &KycResubmissionRequested {
                        submission_id: id,
                        user_id,
                        reviewed_by,
                        reason: reason_text,
                    },
                )
                .await?
        }
    };
    deps.events.commit(tx).await?;
    let record = store::find_submission(&deps.db, &deps.keyring, id)
        .await?
        .ok_or(ApiError::NotFound("submission"))?;
    Ok(Json(view(&state, &caller, &record).await?))
}

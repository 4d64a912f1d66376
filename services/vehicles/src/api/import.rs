//! `POST /vehicles/import`: an inventory sheet uploaded as `text/csv`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use miliki_platform::auth::Role;
use miliki_platform::http::Json;
use miliki_platform::problem::Problem;
use miliki_platform::ApiError;

use crate::import::{self, ImportReport};
use crate::state::{AppState, Caller};

/// Import an inventory sheet (admins). The body is CSV with a header row;
/// valid rows are imported, vehicles already present are skipped, and every
/// invalid row is reported with its field and reason.
#[utoipa::path(post, path = "/api/v1/vehicles/import", tag = "vehicles", security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, body = ImportReport),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The header is unusable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the sheet is larger than allowed".into())
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"));
    if !is_csv {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: text/csv".into(),
        ));
    }
    let rows = tokio::task::spawn_blocking(move || import::read_csv(body.as_ref()))
        .await
        .map_err(ApiError::internal)??;
    let report = import::import_rows(&state, rows, &mut |_| {}).await?;
    Ok(Json(report))
}

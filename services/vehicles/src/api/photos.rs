//! Vehicle photos: the type is sniffed from the bytes (a `.jpg` name proves
//! nothing), the size is capped, the image is decoded under pixel and memory
//! limits, and a small JPEG thumbnail is made for listings.

use std::io::Cursor;

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path};
use miliki_platform::problem::Problem;
use miliki_platform::ApiError;
use utoipa::ToSchema;
use uuid::Uuid;

use super::PhotoView;
use crate::state::{AppState, Caller};
use crate::store::{self, PhotoMeta};

/// The longer side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// No photo may be larger than this many pixels on a side (guards against decompression bombs).
const MAX_SIDE: u32 = 10_000;

/// The multipart form of a photo upload, as documented in OpenAPI.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PhotoForm {
    /// JPEG or PNG.
    #[schema(format = Binary, value_type = String)]
    photo: Vec<u8>,
}

/// What decoding made of an upload.
pub struct Processed {
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
    pub thumbnail: Vec<u8>,
}

/// Sniffs, decodes and thumbnails an image. CPU-bound: call off the reactor.
pub fn process(bytes: &[u8]) -> Result<Processed, ApiError> {
    let content_type = match infer::get(bytes).map(|k| k.mime_type()) {
        Some("image/jpeg") => "image/jpeg",
        Some("image/png") => "image/png",
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "photos must be JPEG or PNG{}",
                other.map(|m| format!(", not {m}")).unwrap_or_default()
            )))
        }
    };
    let format = if content_type == "image/jpeg" {
        image::ImageFormat::Jpeg
    } else {
        image::ImageFormat::Png
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| ApiError::field("photo", format!("is not a readable image: {e}")))?;
    let (width, height) = (img.width(), img.height());
    let thumb = img.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).into_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&thumb)
        .map_err(ApiError::internal)?;
    Ok(Processed {
        content_type,
        width,
        height,
        thumbnail: out,
    })
}

/// Add a photo to a vehicle (admins).
#[utoipa::path(post, path = "/api/v1/vehicles/{id}/photos", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body(content = PhotoForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = PhotoView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
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
) -> Result<(StatusCode, Json<PhotoView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let mut multipart = multipart
        .map_err(|_| ApiError::UnsupportedMediaType("expected multipart/form-data".into()))?;
    let deps = &state.deps;
    store::find(deps.db.reader(), id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    let cap = deps.settings.max_upload_bytes;
    let mut photo: Option<Vec<u8>> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("photo") {
            continue;
        }
        let mut field = field;
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if bytes.len() + chunk.len() > cap {
                return Err(ApiError::PayloadTooLarge(format!(
                    "a photo may be at most {cap} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        photo = Some(bytes);
    }
    let bytes = photo
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::field("photo", "is required"))?;
    let (bytes, processed) = tokio::task::spawn_blocking(move || {
        let processed = process(&bytes);
        (bytes, processed)
    })
    .await
    .map_err(ApiError::internal)?;
    let processed = processed?;
    let meta = PhotoMeta {
        id: miliki_platform::id::new_id(),
        content_type: processed.content_type.to_owned(),
        size_bytes: bytes.len() as i64,
        width: i64::from(processed.width),
        height: i64::from(processed.height),
    };
    store::insert_photo(
        &deps.db,
        id,
        &meta,
        &bytes,
        &processed.thumbnail,
        deps.clock.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(PhotoView::new(id, &meta))))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the upload is larger than allowed".into())
    } else {
        ApiError::BadRequest(format!("unreadable multipart body: {}", e.body_text()))
    }
}

async fn serve(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    photo: Uuid,
    thumbnail: bool,
) -> Result<Response, ApiError> {
    super::vehicles::visible(state, caller, id).await?;
    let (content_type, bytes) = store::photo_bytes(&state.deps.db, id, photo, thumbnail)
        .await?
        .ok_or(ApiError::NotFound("photo"))?;
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "private, max-age=86400, immutable")
        .header("x-content-type-options", "nosniff")
        .body(Body::from(bytes))
        .map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/api/v1/vehicles/{id}/photos/{photo_id}", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("photo_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The photo", content_type = "image/jpeg"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn photo(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, photo_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    serve(&state, &caller, id, photo_id, false).await
}

#[utoipa::path(get, path = "/api/v1/vehicles/{id}/photos/{photo_id}/thumbnail", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("photo_id" = Uuid, Path)),
    responses(
        (status = 200, description = "A JPEG thumbnail", content_type = "image/jpeg"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, photo_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    serve(&state, &caller, id, photo_id, true).await
}

/// Delete a photo of a vehicle (admins). The others keep their order.
#[utoipa::path(delete, path = "/api/v1/vehicles/{id}/photos/{photo_id}", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("photo_id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such vehicle, or no such photo of it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, photo_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    store::find_locked(&mut tx, &deps.db, id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    if !store::delete_photo(&mut tx, id, photo_id).await? {
        return Err(ApiError::NotFound("photo"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The new order of a vehicle's photos: every one of its photo ids, each once.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhotoOrder {
    /// The first is the vehicle's cover photo.
    pub photo_ids: Option<Vec<Uuid>>,
}

/// Reorder a vehicle's photos (admins). The list must name each of the
/// vehicle's photos exactly once; the answer is the photos in their new order.
#[utoipa::path(put, path = "/api/v1/vehicles/{id}/photos/order", tag = "vehicles", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = PhotoOrder,
    responses(
        (status = 200, body = Vec<PhotoView>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a reordering of the vehicle's photos", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reorder(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<PhotoOrder>,
) -> Result<Json<Vec<PhotoView>>, ApiError> {
    caller.require(&[Role::Admin])?;
    let ids = body
        .photo_ids
        .ok_or_else(|| ApiError::field("photo_ids", "is required"))?;
    let deps = &state.deps;
    let mut tx = deps.db.begin().await?;
    // The vehicle's row lock keeps a concurrent reorder or delete from interleaving.
    store::find_locked(&mut tx, &deps.db, id)
        .await?
        .ok_or(ApiError::NotFound("vehicle"))?;
    let current = store::photo_ids(&mut tx, id).await?;
    let known: std::collections::HashSet<Uuid> = current.iter().copied().collect();
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for photo in &ids {
        if !known.contains(photo) {
            problems.push(format!("{photo} is not a photo of this vehicle"));
        } else if !seen.insert(*photo) {
            problems.push(format!("{photo} is listed twice"));
        }
    }
    let missing = current.iter().filter(|p| !seen.contains(p)).count();
    if problems.is_empty() && missing > 0 {
        problems.push(format!(
            "must list all {} photos of the vehicle ({missing} missing)",
            current.len()
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::field("photo_ids", problems.join("; ")));
    }
    store::order_photos(&mut tx, id, &ids).await?;
    tx.commit().await?;
    let photos = store::photos(&deps.db, id).await?;
    Ok(Json(photos.iter().map(|p| PhotoView::new(id, p)).collect()))
}

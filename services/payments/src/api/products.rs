//! Financing products (admins write them; every signed-in role reads them,
//! since customers and agents pick a plan from them).

use axum::extract::State;
use axum::http::StatusCode;
use miliki_platform::auth::Role;
use miliki_platform::http::{Json, Path, Query};
use miliki_platform::pagination::{self, Page};
use miliki_platform::problem::{Problem, Validator};
use miliki_platform::ApiError;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::ProductView;
use crate::domain::product::ProductInput;
use crate::state::{AppState, Caller};
use crate::store;

/// Create a financing product (admins).
#[utoipa::path(post, path = "/api/v1/products", tag = "products", security(("bearer" = [])),
    request_body = ProductInput,
    responses(
        (status = 201, body = ProductView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<ProductInput>,
) -> Result<(StatusCode, Json<ProductView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let terms = input.parse()?;
    let id = miliki_platform::id::new_id();
    let now = state.deps.clock.now();
    let mut conn = state.deps.db.writer().acquire().await?;
    store::insert_product(&mut conn, id, &terms, caller.id, now).await?;
    let p = store::find_product(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    Ok((StatusCode::CREATED, Json(ProductView::from(&p))))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// `active` (default) or `retired` or `all`.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// List products, oldest first.
#[utoipa::path(get, path = "/api/v1/products", tag = "products", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = Page<ProductView>)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<ProductView>>, ApiError> {
    let mut v = Validator::new();
    let status = match params.status.as_deref() {
        None | Some("active") => Some("active"),
        Some("retired") => Some("retired"),
        Some("all") => None,
        Some(_) => {
            v.error("status", "must be active, retired or all");
            None
        }
    };
    let (limit, after) =
        pagination::parse_page_params::<Uuid>(&mut v, params.limit, params.cursor.as_deref());
    v.finish()?;
    let rows = store::list_products(state.deps.db.reader(), status, after, limit).await?;
    let page = pagination::page_from(rows, limit, |p| p.id);
    Ok(Json(Page {
        items: page.items.iter().map(ProductView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One product.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "products", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ProductView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ProductView>, ApiError> {
    let mut conn = state.deps.db.reader().acquire().await?;
    let p = store::find_product(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    Ok(Json(ProductView::from(&p)))
}

/// Retire a product: it takes no new contracts; live contracts keep their snapshot.
#[utoipa::path(post, path = "/api/v1/products/{id}/retire", tag = "products", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = ProductView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already retired", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ProductView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut conn = state.deps.db.writer().acquire().await?;
    let p = store::find_product(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    if !store::retire_product(&mut conn, id, state.deps.clock.now()).await? {
        return Err(ApiError::Conflict(format!(
            "the product is already {}",
            p.status
        )));
    }
    let p = store::find_product(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    Ok(Json(ProductView::from(&p)))
}

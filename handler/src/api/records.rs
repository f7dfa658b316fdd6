//! `POST /records`, `GET /records/{id}` and `GET /records?site_id=...`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::JsonBody;
use super::extract::QueryParams;
use super::{AppState, Context};

use crate::service::records;

/// Header set on a response that replays an earlier idempotent create.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Create a record.
#[utoipa::path(
    post, path = "/records", tag = "records", operation_id = "create_record",
    request_body(content = crate::api::openapi::RecordInput, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key (1-255 visible ASCII): the same key and body return the same record")),
    responses(
        (status = 201, description = "Stored", body = super::schemas::RecordSchema, headers(("Location" = String, description = "/records/{id}"))),
        (status = 401, description = "Missing or invalid API key", body = crate::api::openapi::Detail),
        (status = 409, description = "Idempotency-Key reused with a different body", body = crate::api::openapi::Detail),
        (status = 408, description = "Body not received within 10 s; nothing stored", body = crate::api::openapi::Detail),
        (status = 413, description = "Body larger than 1 MiB", body = crate::api::openapi::Detail),
        (status = 415, description = "Body not declared as JSON", body = crate::api::openapi::Detail),
        (status = 422, description = "Validation errors, all of them", body = crate::api::openapi::ValidationErrors),
        (status = 503, description = "Store unavailable; nothing stored", body = crate::api::openapi::Detail, headers(("Retry-After" = u64))),
    ),
    security((), ("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    context: Context,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let key = headers
        .get(&IDEMPOTENCY_KEY)
        .map(|v| records::check_idempotency_key(v.as_bytes()))
        .transpose()?;
    let store = state.store.get()?;
    let created = records::create(store.as_ref(), context.call(&state.audit), &body, key).await?;
    Ok(created_response(&created))
}

/// The 201 answer: the record, its `Location`, and `Idempotent-Replayed` on a replay.
pub fn created_response(created: &records::Created) -> Response {
    let location = format!("/records/{}", created.record.id);
    let mut response = (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE))],
        Json(&created.record),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if created.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Read a record by id.
#[utoipa::path(
    get, path = "/records/{id}", tag = "records", operation_id = "get_record",
    params(("id" = String, Path, description = "Record id (any string; unknown ids are 404)")),
    responses(
        (status = 200, description = "The record", body = super::schemas::RecordSchema),
        (status = 401, description = "Missing or invalid API key", body = crate::api::openapi::Detail),
        (status = 404, description = "No such record", body = crate::api::openapi::Detail),
        (status = 503, description = "Store unavailable", body = crate::api::openapi::Detail, headers(("Retry-After" = u64))),
    ),
    security((), ("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.store.get()?;
    // The stored document is the response body: no decode, no re-encode.
    let (body, etag) = records::get_json(store.as_ref(), context.call(&state.audit), &id).await?;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE)),
        ],
        body,
    )
        .into_response();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// `Cache-Control` of every response that carries record data: no cache keeps a copy.
pub const NO_STORE: &str = "no-store";

/// Review a pending record: `validated` or `rejected`, with a reason.
#[utoipa::path(
    post, path = "/records/{id}/review", tag = "records", operation_id = "review_record",
    request_body(content = crate::api::openapi::ReviewInput, content_type = "application/json"),
    params(
        ("id" = String, Path, description = "Record id"),
        ("If-Match" = Option<String>, Header, description = "The ETag of the record as read: the review applies only to that version (412 otherwise)"),
    ),
    responses(
        (status = 200, description = "The reviewed record, with its new ETag", body = super::schemas::RecordSchema, headers(("ETag" = String))),
        (status = 401, description = "Missing or invalid API key", body = crate::api::openapi::Detail),
        (status = 403, description = "The client does not hold the review role", body = crate::api::openapi::Detail),
        (status = 404, description = "No such record (or not of a site the client holds)", body = crate::api::openapi::Detail),
        (status = 409, description = "The record is not pending", body = crate::api::openapi::Detail),
        (status = 412, description = "If-Match does not name the current version", body = crate::api::openapi::Detail),
        (status = 422, description = "Bad status or reason, all problems listed", body = crate::api::openapi::ValidationErrors),
        (status = 503, description = "Store unavailable; nothing changed", body = crate::api::openapi::Detail, headers(("Retry-After" = u64))),
    ),
    security((), ("api_key" = []))
)]
pub async fn review(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let store = state.store.get()?;
    let if_match = headers
        .get(header::IF_MATCH)
        .map(|v| v.to_str().map_err(|_| ApiError::PreconditionFailed))
        .transpose()?;
    let reviewed = records::review(
        store.as_ref(),
        context.call(&state.audit),
        &id,
        &body,
        if_match,
    )
    .await?;
    let mut response = (StatusCode::OK, Json(&reviewed.record)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    if let Ok(etag) = HeaderValue::from_str(&reviewed.etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// List a site's records, newest submission date first, a page at a time.
#[utoipa::path(
    get, path = "/records", tag = "records", operation_id = "list_records",
    params(
        ("site_id" = String, Query, description = "The site (3-20 letters or digits, any case)", example = "SITE001"),
        ("from" = Option<String>, Query, description = "Earliest submission_date included (YYYY-MM-DD)", example = "2025-01-01"),
        ("to" = Option<String>, Query, description = "Latest submission_date included (YYYY-MM-DD)", example = "2025-12-31"),
        ("limit" = Option<u16>, Query, description = "Records per page, 1-1000 (default 100)", minimum = 1, maximum = 1000),
        ("continuation" = Option<String>, Query, description = "The previous page's `continuation`, unchanged; only valid with the same site_id, from and to"),
    ),
    responses(
        (status = 200, description = "A page of records and the next page's token (null on the last page)", body = super::schemas::RecordPageSchema),
        (status = 401, description = "Missing or invalid API key", body = crate::api::openapi::Detail),
        (status = 422, description = "Bad parameters, all of them (an unknown parameter, a bad date or limit, a tampered or mismatched continuation token)", body = crate::api::openapi::ValidationErrors),
        (status = 503, description = "Store unavailable", body = crate::api::openapi::Detail, headers(("Retry-After" = u64))),
    ),
    security((), ("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    context: Context,
    QueryParams(params): QueryParams,
) -> Result<Response, ApiError> {
    let store = state.store.get()?;
    let page = records::list(store.as_ref(), context.call(&state.audit), &params).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE))],
        Json(page),
    )
        .into_response())
}

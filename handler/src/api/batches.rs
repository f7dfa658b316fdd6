//! `POST /batches` and `GET /batches/{batch_id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::JsonBody;
use super::records::NO_STORE;
use super::{AppState, Context};
use crate::domain::BatchReport;
use crate::service::batches::{self, Accepted};

/// Submit a batch: checked, registered as queued, and handed to the batch sink: the batch queue,
/// in-process ingestion when no queue is configured, or (under the Functions host, where this
/// runs inside a `submit_batch` invocation) the invocation's queue output binding.
#[utoipa::path(
    post, path = "/batches", tag = "batches", operation_id = "submit_batch",
    request_body(content = crate::api::openapi::BatchInput, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; poll the Location", body = super::schemas::BatchReportSchema, headers(("Location" = String, description = "/batches/{batch_id}"))),
        (status = 401, description = "Missing or invalid API key", body = crate::api::openapi::Detail),
        (status = 409, description = "batch_id reused for different records", body = crate::api::openapi::Detail),
        (status = 408, description = "Body not received within 10 s; nothing stored", body = crate::api::openapi::Detail),
        (status = 413, description = "Message larger than 48 KiB (a 64 KiB base64 queue message)", body = crate::api::openapi::Detail),
        (status = 415, description = "Body not declared as JSON", body = crate::api::openapi::Detail),
        (status = 422, description = "The message envelope is invalid", body = crate::api::openapi::ValidationErrors),
        (status = 503, description = "Store or queue unavailable; retry", body = crate::api::openapi::Detail, headers(("Retry-After" = u64))),
    ),
    security((), ("api_key" = []))
)]
pub async fn submit(
    State(state): State<AppState>,
    context: Context,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let store = state.store.get()?;
    let (message, accepted) =
        batches::accept(store.as_ref(), context.call(&state.audit), &body).await?;
    let report = match accepted {
        Accepted::AlreadyCompleted(report) => report,
        Accepted::Enqueue(queued) => state.batches.hand_on(&message, queued).await?,
    };
    Ok(accepted_response(&report))
}

/// The 202 answer: the report and `Location: /batches/{batch_id}`.
fn accepted_response(report: &BatchReport) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE))],
        Json(report),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/batches/{}", report.batch_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A batch's status and outcome.
#[utoipa::path(
    get, path = "/batches/{batch_id}", tag = "batches", operation_id = "get_batch",
    params(("batch_id" = String, Path, description = "The submitter's batch id")),
    responses(
        (status = 200, description = "The batch report", body = super::schemas::BatchReportSchema),
        (status = 401, description = "Missing or invalid API key", body = crate::api::openapi::Detail),
        (status = 404, description = "No such batch", body = crate::api::openapi::Detail),
        (status = 503, description = "Store unavailable", body = crate::api::openapi::Detail, headers(("Retry-After" = u64))),
    ),
    security((), ("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    context: Context,
    Path(batch_id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.store.get()?;
    let report = batches::get(store.as_ref(), context.call(&state.audit), &batch_id).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE))],
        Json(report),
    )
        .into_response())
}

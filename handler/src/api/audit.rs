//! `GET /audit` and `GET /records/{id}/history`: reading the audit trail (role `audit`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::QueryParams;
use super::records::NO_STORE;
use super::{AppState, Context};
use crate::service::audit;

/// Audit events, oldest first, filtered and paged.
#[utoipa::path(
    get, path = "/audit", tag = "audit", operation_id = "list_audit",
    params(
        ("from" = Option<String>, Query, description = "Earliest event time: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.ffffff]Z (UTC)"),
        ("to" = Option<String>, Query, description = "Latest event time, same forms (a date includes the whole day)"),
        ("client" = Option<String>, Query, description = "Only this client's events"),
        ("record_id" = Option<String>, Query, description = "Only events naming this record"),
        ("limit" = Option<u16>, Query, description = "Events per page, 1-1000 (default 100)", minimum = 1, maximum = 1000),
        ("continuation" = Option<String>, Query, description = "The previous page's `continuation`, with the same filters"),
    ),
    responses(
        (status = 200, description = "A page of events and the next page's token (null on the last page)", body = crate::api::openapi::AuditPageDoc),
        (status = 401, description = "Missing or invalid API key", body = crate::api::openapi::Detail),
        (status = 403, description = "The client does not hold the audit role", body = crate::api::openapi::Detail),
        (status = 422, description = "Bad parameters, all of them", body = crate::api::openapi::ValidationErrors),
        (status = 503, description = "Store unavailable", body = crate::api::openapi::Detail, headers(("Retry-After" = u64))),
    ),
    security((), ("api_key" = []))
)]
pub async fn page(
    State(state): State<AppState>,
    context: Context,
    QueryParams(params): QueryParams,
) -> Result<Response, ApiError> {
    let store = state.store.get()?;
    let page = audit::page(store.as_ref(), context.call(&state.audit), &params).await?;
    Ok(no_store(Json(page)))
}

/// A record's audit events, oldest first.
#[utoipa::path(
    get, path = "/records/{id}/history", tag = "audit", operation_id = "record_history",
    params(("id" = String, Path, description = "Record id")),
    responses(
        (status = 200, description = "The record's events", body = crate::api::openapi::HistoryDoc),
        (status = 401, description = "Missing or invalid API key", body = crate::api::openapi::Detail),
        (status = 403, description = "The client does not hold the audit role", body = crate::api::openapi::Detail),
        (status = 404, description = "No such record (or not of a site the client holds)", body = crate::api::openapi::Detail),
        (status = 503, description = "Store unavailable", body = crate::api::openapi::Detail, headers(("Retry-After" = u64))),
    ),
    security((), ("api_key" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    context: Context,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.store.get()?;
    let history = audit::history(store.as_ref(), context.call(&state.audit), &id).await?;
    Ok(no_store(Json(history)))
}

fn no_store(body: impl IntoResponse) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE))],
        body,
    )
        .into_response()
}

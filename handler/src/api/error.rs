//! The one error type of the HTTP API and the one place that maps an error to a status and a
//! body: the transport's own failures (no route, wrong media type, body too large...) and, through
//! `From<ServiceError>`, the use cases' errors.
//!
//! Internal errors never leak text to clients: the response says what the client can do, the log
//! (written by the HTTP middleware, not here) says what happened.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::FieldError;
use crate::service::ServiceError;
use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: the body or a header broke a rule; every problem is listed.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 404 `{"detail":"Record not found"}`.
    #[error("record not found")]
    RecordNotFound,
    /// 404 `{"detail":"Batch not found"}`.
    #[error("batch not found")]
    BatchNotFound,
    /// 404 `{"detail":"Not Found"}`: no such route.
    #[error("route not found")]
    RouteNotFound,
    /// 405 `{"detail":"Method Not Allowed"}`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 401: no API key, or an unknown one.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// 403: the caller's roles or sites do not allow this; the message names what is missing.
    #[error("forbidden")]
    Forbidden(String),
    /// 409: a review of a record that is no longer `pending`.
    #[error("record not pending")]
    NotPending(String),
    /// 412: `If-Match` names another version of the record.
    #[error("precondition failed")]
    PreconditionFailed,
    /// 415: the body is declared as something other than JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 400: the body could not be read (the client went away or sent a broken stream).
    #[error("request body unreadable")]
    BodyUnreadable,
    /// 408: the client took longer than the body read timeout
    /// ([`crate::config::HttpTimeouts::body_read`]) to send its body.
    #[error("request body not received in time")]
    RequestTimeout,
    /// 413: the body is larger than the route accepts.
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    /// 409: the `Idempotency-Key` was used before with a different body.
    #[error("idempotency key reused with a different body")]
    IdempotencyConflict,
    /// 409: the `batch_id` was used before for different records.
    #[error("batch id reused with different records")]
    BatchConflict,
    /// 429 with `Retry-After`: more requests are held than `maxOutstandingRequests` allows, or
    /// the caller is over its request rate (`crate::auth::rate`); nothing was read or stored.
    #[error("too many requests")]
    TooManyRequests { retry_after: Duration },
    /// 503 with `Retry-After`: the request outlived the request timeout and was abandoned; a
    /// write may still have completed, so the outcome is unknown (a retry with the same
    /// `Idempotency-Key` finds out safely).
    #[error("request abandoned at the timeout")]
    OutcomeUnknown { retry_after: Duration },
    /// 503 with `Retry-After`: the store is down or throttled; nothing was stored.
    #[error("store unavailable")]
    Unavailable { retry_after: Duration },
    /// 500: a bug. Logged; the client learns nothing more.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(errors) => Self::Validation(errors),
            ServiceError::RecordNotFound => Self::RecordNotFound,
            ServiceError::BatchNotFound => Self::BatchNotFound,
            ServiceError::BatchTooLarge { limit } => Self::PayloadTooLarge { limit },
            ServiceError::IdempotencyConflict => Self::IdempotencyConflict,
            ServiceError::Forbidden(denied) => Self::Forbidden(denied.to_string()),
            ServiceError::NotPending { status } => Self::NotPending(format!(
                "Record is not pending (its status is {}): only a pending record can be reviewed",
                crate::domain::record::Status::ALL
                    .iter()
                    .find(|(_, s)| *s == status)
                    .map_or("unknown", |(name, _)| name)
            )),
            ServiceError::PreconditionFailed => Self::PreconditionFailed,
            ServiceError::AuditBacklog { retry_after } => Self::Unavailable { retry_after },
            ServiceError::BatchConflict => Self::BatchConflict,
            ServiceError::NotReady { retry_after }
            | ServiceError::Store(StoreError::Unavailable { retry_after, .. }) => {
                Self::Unavailable { retry_after }
            }
            ServiceError::QueueUnavailable(_) => Self::Unavailable {
                retry_after: Duration::from_secs(1),
            },
            ServiceError::Store(StoreError::Corrupt(reason)) | ServiceError::Internal(reason) => {
                Self::Internal(reason)
            }
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RecordNotFound | Self::BatchNotFound | Self::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::IdempotencyConflict | Self::BatchConflict | Self::NotPending(_) => {
                StatusCode::CONFLICT
            }
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::OutcomeUnknown { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body: always `{"detail": ...}`.
    pub fn body(&self) -> Value {
        let detail = match self {
            Self::Validation(errors) => return json!({ "detail": errors }),
            Self::RecordNotFound => "Record not found",
            Self::BatchNotFound => "Batch not found",
            Self::RouteNotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::Unauthorized => {
                "Missing or invalid API key: send a valid key in the X-API-Key header"
            }
            Self::Forbidden(message) | Self::NotPending(message) => {
                return json!({ "detail": message });
            }
            Self::PreconditionFailed => {
                "The record changed since the ETag in If-Match was read: read it again, then review"
            }
            Self::UnsupportedMediaType => {
                "Unsupported media type: send the body as application/json"
            }
            Self::BodyUnreadable => "The request body could not be read",
            Self::RequestTimeout => "The request body was not received in time; nothing was stored",
            Self::PayloadTooLarge { limit } => {
                return json!({ "detail": format!("Request body is larger than the {limit} bytes this route accepts") });
            }
            Self::IdempotencyConflict => {
                "Idempotency-Key was already used with a different request body; use a new key for a new record"
            }
            Self::BatchConflict => {
                "batch_id was already used for different records; choose a new batch_id"
            }
            Self::TooManyRequests { .. } => {
                "Too many requests: nothing was stored, retry after the Retry-After delay"
            }
            Self::OutcomeUnknown { .. } => {
                "The request took too long and was abandoned: it may or may not have been stored. Retry with the same Idempotency-Key to complete it safely"
            }
            Self::Unavailable { .. } => {
                "Service temporarily unavailable: nothing was stored, retry after the Retry-After delay"
            }
            Self::Internal(_) => "Internal server error",
        };
        json!({ "detail": detail })
    }

    /// The headers that belong to the error whatever carries it (HTTP, or the Functions host's
    /// HTTP output binding): `Retry-After` on 503, `WWW-Authenticate` on 401.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, Self::Unauthorized) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("ApiKey header=\"X-API-Key\""),
            );
        }
        headers
    }

    /// Seconds for `Retry-After`, for the errors that have one.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Unavailable { retry_after }
            | Self::TooManyRequests { retry_after }
            | Self::OutcomeUnknown { retry_after } => Some(
                u64::try_from(retry_after.as_millis().div_ceil(1000))
                    .unwrap_or(u64::MAX)
                    .max(1),
            ),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.headers(), axum::Json(self.body())).into_response();
        if matches!(self, Self::PayloadTooLarge { .. } | Self::RequestTimeout) {
            // The body was not read to its end: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // Let the logging middleware see what went wrong without putting it in the body.
        if let Self::Internal(reason) = &self {
            response
                .extensions_mut()
                .insert(InternalErrorReason(reason.clone()));
        }
        response
    }
}

/// Attached to 500 responses so the access log can say why.
#[derive(Debug, Clone)]
pub struct InternalErrorReason(pub String);

//! Cross-cutting HTTP concerns: request ids, access logs and metrics (one middleware), and
//! authentication with the caller's request rate on protected routes.
//!
//! What each request costs here, by default: an id, a span, the metrics (every request counted),
//! and a log line only when the request failed (4xx at `info`, 5xx at `warn`/`error`) or was slow
//! ([`SLOW_REQUEST`], at `warn`), each with its request id. A line for every request (the full
//! access log) is one filter away: `RUST_LOG=info,handler::api::middleware=debug`. Writing that
//! line for every success cost a third of GET throughput (BENCHMARKS.md, issues 7 and 12).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, InternalErrorReason};
use crate::metrics::{UNMATCHED_ROUTE, method_label};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The client named in the audit event of a request refused for want of a valid key.
pub const UNAUTHENTICATED: &str = "unauthenticated";

pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// A successful request slower than this is logged (at `warn`) even without the access log.
pub const SLOW_REQUEST: Duration = Duration::from_millis(500);

/// Request ids: a random 64-bit prefix drawn once per process, then a counter, as a UUID v8. Unique
/// across processes in practice and within one by construction, at the cost of an atomic
/// increment (a v4 id per request read the kernel's random source each time).
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

static REQUEST_IDS: LazyLock<RequestIds> = LazyLock::new(|| RequestIds {
    prefix: uuid::Uuid::new_v4().as_u64_pair().0,
    next: AtomicU64::new(0),
});

impl RequestIds {
    fn next(&self) -> uuid::Uuid {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.prefix.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        uuid::Uuid::new_v8(bytes)
    }
}

/// Gives the request an id (returned in `X-Request-Id`, on every log line of the request), logs
/// failed and slow requests (every request at `debug`: method, route template, status, latency;
/// never the body, query or path values), and records the request metrics.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut id_text = uuid::Uuid::encode_buffer();
    let request_id: &str = REQUEST_IDS.next().hyphenated().encode_lower(&mut id_text);
    // Log fields and metric labels from closed sets only (a client picks the method and path).
    let method = method_label(request.method().as_str());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %request_id, method, route = %route);
    let mut request = request;
    request
        .extensions_mut()
        .insert(super::RequestId(std::sync::Arc::from(request_id)));
    // The longest a request may take end to end (`MEDIFLOW_REQUEST_TIMEOUT_MS`).
    let handled = tokio::time::timeout(state.timeouts.request, next.run(request))
        .instrument(span.clone())
        .await;
    // A handler that outlives the limit is abandoned: its write may still complete, so the client
    // hears that the outcome is unknown and retries with the same Idempotency-Key (which cannot
    // duplicate a write that finished late).
    let mut response = handled.unwrap_or_else(|_| {
        ApiError::OutcomeUnknown {
            retry_after: std::time::Duration::from_secs(1),
        }
        .into_response()
    });
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if let Some(InternalErrorReason(reason)) =
            response.extensions().get::<InternalErrorReason>()
        {
            tracing::error!(status = status.as_u16(), latency_ms, %reason, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), latency_ms, "request answered");
        } else if elapsed >= SLOW_REQUEST {
            tracing::warn!(
                status = status.as_u16(),
                latency_ms,
                slow = true,
                "request answered"
            );
        } else if status.is_client_error() {
            tracing::info!(status = status.as_u16(), latency_ms, "request answered");
        } else {
            tracing::debug!(status = status.as_u16(), latency_ms, "request answered");
        }
    });
    state
        .metrics
        .observe_request(&route, method, status.as_u16(), elapsed);
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Authenticates a protected route's caller: refuses a request without a valid `X-API-Key`
/// (401, when auth is on), then one beyond the caller's request rate (429 with `Retry-After`,
/// before admission: a client over its rate holds nothing), and puts the caller into the request
/// as [`super::Caller`].
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request.headers().get(&API_KEY).map(HeaderValue::as_bytes);
    let Some(caller) = state.clients.authenticate(presented) else {
        // A refusal is audited like any other (who is unknown: the client field says so).
        let request_id = request
            .extensions()
            .get::<super::RequestId>()
            .map(|super::RequestId(id)| id.to_string());
        let mut refused = crate::domain::AuditDraft::new(
            UNAUTHENTICATED,
            crate::domain::AuditAction::Refused,
            "401",
        )
        .request(request_id.as_deref());
        refused.reason = Some(if presented.is_some() {
            "unknown API key".to_owned()
        } else {
            "no API key".to_owned()
        });
        if let Err(err) = state.audit.record(refused) {
            return ApiError::from(err).into_response();
        }
        return ApiError::Unauthorized.into_response();
    };
    if let Err(retry_after) = caller.admit() {
        state.metrics.count_client_limited(&caller.principal);
        return ApiError::TooManyRequests { retry_after }.into_response();
    }
    request
        .extensions_mut()
        .insert(super::Caller(caller.principal));
    next.run(request).await
}

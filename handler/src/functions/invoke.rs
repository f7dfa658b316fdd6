//! Functions the host invokes with the envelope (they have bindings besides HTTP in/out):
//! `submit_batch` (HTTP in, HTTP out, queue out) and `ingest_batch` (queue trigger).
//!
//! Failure signalling: any non-2xx answer fails the invocation, and the host retries the queue
//! message and finally moves it to `<queue>-poison`. So `ingest_batch` answers 2xx only when the
//! batch is fully judged (invalid records are a success with results), and non-2xx for store
//! trouble (retry) and for messages that can never succeed (poisoned after maxDequeueCount, so
//! nothing is silently dropped).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::envelope::{HttpRequestData, Invocation, InvocationResult};
use crate::api::AppState;
use crate::api::extract::{MAX_BODY_BYTES, check_declared_json};
use crate::api::middleware::authorized;
use crate::domain::BatchMessage;
use crate::error::Error;
use crate::queue;
use crate::service::batches::{self, Accepted};

/// Binding names, as in `function-definitions/*/function.json`.
const HTTP_IN: &str = "req";
const HTTP_OUT: &str = "res";
const QUEUE_BINDING: &str = "batch";

/// `POST /submit_batch`: the HTTP request is in `Data.req`; the answer goes to `Outputs.res`, the
/// message to the queue output binding `Outputs.batch` (as a JSON object: the host base64-decodes
/// output strings that happen to be valid base64, never objects).
pub async fn submit_batch(State(state): State<AppState>, body: Bytes) -> Response {
    let result = match Invocation::from_slice(&body).and_then(|i| i.http_request(HTTP_IN)) {
        Ok(request) => submit(&state, &request).await,
        Err(err) => return invocation_failed(&err.to_string()),
    };
    let (result, status, mut headers, body) = match result {
        Ok((result, response)) => (result, response.0, response.1, response.2),
        Err(err) => (
            InvocationResult::default(),
            err.status(),
            err.headers(),
            err.body(),
        ),
    };
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Json(result.with_http(HTTP_OUT, status, &headers, &body)).into_response()
}

type HttpAnswer = (StatusCode, HeaderMap, Value);

async fn submit(
    state: &AppState,
    request: &HttpRequestData,
) -> Result<(InvocationResult, HttpAnswer), Error> {
    if !authorized(state, &request.headers) {
        return Err(Error::Unauthorized);
    }
    check_declared_json(&request.headers)?;
    if request.body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let store = state.store.get()?;
    let (message, accepted) = batches::accept(store.as_ref(), &request.body).await?;
    let mut result = InvocationResult::default();
    let report = match accepted {
        Accepted::Enqueue(report) => {
            let message = message.to_value();
            result = result.with_output(QUEUE_BINDING, message);
            report
        }
        Accepted::AlreadyCompleted(report) => report,
    };
    let mut headers = HeaderMap::new();
    if let Ok(location) = format!("/batches/{}", report.batch_id).parse() {
        headers.insert(header::LOCATION, location);
    }
    let body = serde_json::to_value(&report).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((result, (StatusCode::ACCEPTED, headers, body)))
}

/// `POST /ingest_batch`: the queue message is in `Data.batch`.
pub async fn ingest_batch(State(state): State<AppState>, body: Bytes) -> Response {
    let invocation = match Invocation::from_slice(&body) {
        Ok(invocation) => invocation,
        Err(err) => return invocation_failed(&err.to_string()),
    };
    let dequeue_count = invocation.dequeue_count().unwrap_or(1);
    let message_id = invocation.message_id().unwrap_or_default();
    let message = match invocation
        .queue_message(QUEUE_BINDING)
        .map_err(|e| e.to_string())
        .and_then(|json| {
            BatchMessage::from_slice(&json)
                .map_err(|errors| format!("{} problem(s) in the batch envelope", errors.len()))
        }) {
        Ok(message) => message,
        Err(reason) => {
            // Never succeeds: fail, so the host retries and then poisons it (kept, not lost).
            tracing::error!(%message_id, dequeue_count, %reason, "undecodable batch message");
            state.metrics.count_queue_message("invalid");
            return invocation_failed(&format!("undecodable batch message: {reason}"));
        }
    };
    let store = match state.store.get() {
        Ok(store) => store,
        Err(err) => return transient(&state, &err, &message_id, dequeue_count),
    };
    match queue::ingest(store.as_ref(), &state.metrics, &message).await {
        Ok(report) => {
            state.metrics.count_queue_message("completed");
            let log = format!(
                "batch {} ingested: {} accepted, {} rejected",
                report.batch_id, report.accepted, report.rejected
            );
            Json(InvocationResult::default().with_log(log)).into_response()
        }
        Err(Error::BatchConflict) => {
            tracing::error!(batch_id = %message.batch_id, %message_id, "batch_id reused for different records");
            state.metrics.count_queue_message("invalid");
            invocation_failed("batch_id was already used for different records")
        }
        Err(err) => transient(&state, &err, &message_id, dequeue_count),
    }
}

fn transient(state: &AppState, err: &Error, message_id: &str, dequeue_count: u64) -> Response {
    tracing::warn!(%message_id, dequeue_count, error = %err, "batch not ingested; the host will retry");
    state.metrics.count_queue_message("retried");
    let body = InvocationResult::default().with_log(format!("transient failure: {err}"));
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

fn invocation_failed(reason: &str) -> Response {
    let body = json!({ "Outputs": {}, "Logs": [reason], "ReturnValue": null });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

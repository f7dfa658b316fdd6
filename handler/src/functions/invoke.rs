//! The invocation endpoints `POST /<function>` of the functions the host does not forward (they
//! have bindings besides HTTP in/out): `submit_batch` (HTTP in, HTTP out, queue out) and
//! `ingest_batch` (queue trigger).
//!
//! An invocation that carries an HTTP request runs through the same axum router as a standalone
//! request (auth, content checks, limits, headers and errors are written once, in `api`): the
//! request is rebuilt from `Data.<http in>`, sent through the router with `oneshot`, and the
//! response goes back in `Outputs.<http out>`. A batch the request accepts reaches the queue
//! output binding through the router's batch sink ([`BatchSink::OutputBinding`]).
//!
//! Failure signalling: any non-2xx answer fails the invocation, and the host retries the queue
//! message and finally moves it to `<queue>-poison`. So `ingest_batch` answers 2xx only when the
//! batch is fully judged (invalid records are a success with results), and non-2xx for store
//! trouble (retry) and for messages that can never succeed (poisoned after maxDequeueCount, so
//! nothing is silently dropped).
//!
//! Store outages: every failed attempt counts toward poisoning under the Functions host, so
//! `ingest_batch` does not fail at once when the store is unavailable: it waits for the store to
//! answer again, at most [`store_wait`] (half of host.json's `functionTimeout`: 150 s with ours),
//! then fails. With `maxDequeueCount` 5 and `visibilityTimeout` 30 s the host's tries then span an
//! outage of about 15 minutes instead of 2.5. The last attempt (`DequeueCount >=
//! maxDequeueCount`, after which the host poisons the message) that fails marks the batch
//! `failed` with the reason ([`FailedMarks`]: later, when the store is down at that moment).
//!
//! Metrics: each request is counted once. The HTTP request an invocation carries is counted by
//! the router it runs through (as `POST /batches`, like a standalone request); the invocation
//! wrapper counts only what never reaches it (an unusable envelope) and `ingest_batch`
//! invocations (as `/ingest_batch`).
//!
//! [`BatchSink::OutputBinding`]: crate::queue::BatchSink::OutputBinding
//! [`FailedMarks`]: crate::service::batches::FailedMarks

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tower::ServiceExt as _;

use super::envelope::{Invocation, InvocationResult};
use crate::api::{AppState, RouterError};
use crate::definitions::{BindingKind, Definitions, Direction, FunctionDefinition};
use crate::queue::QueueOutput;
use crate::service::ServiceError;
use crate::service::batches::{self, FailedMarks, MessageOutcome};

/// The largest response body read back from the router (the API's answers are a few KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// `functionTimeout` assumed when host.json has none or `-1`: the smallest default (Consumption).
const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The longest [`store_wait`], whatever `functionTimeout` allows.
const MAX_STORE_WAIT: Duration = Duration::from_secs(5 * 60);

/// How long an `ingest_batch` invocation waits for an unavailable store before it fails: half of
/// `functionTimeout` (host.json, or `AzureFunctionsJobHost__functionTimeout`; absent or `-1`:
/// 5 min), at most 5 min. The other half is left for the ingestion itself, whose store calls are
/// bounded (5 s each for Cosmos DB), so the host never times the invocation out (it cancels at
/// `functionTimeout`; its HTTP client gives up a minute later).
pub fn store_wait(function_timeout: Option<Duration>) -> Duration {
    (function_timeout.unwrap_or(DEFAULT_FUNCTION_TIMEOUT) / 2).min(MAX_STORE_WAIT)
}

/// What an invocation endpoint does, by function name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invoked {
    /// An HTTP trigger with more outputs than HTTP: its request runs through the router.
    HttpRequest,
    /// `ingest_batch`: a batch message from the queue trigger.
    IngestBatch,
}

/// The functions served as invocation endpoints (the table test checks it against the
/// function.json files).
pub const INVOKED_FUNCTIONS: [(&str, Invoked); 2] = [
    ("submit_batch", Invoked::HttpRequest),
    ("ingest_batch", Invoked::IngestBatch),
];

fn invoked(name: &str) -> Option<Invoked> {
    INVOKED_FUNCTIONS
        .iter()
        .find_map(|(n, kind)| (*n == name).then_some(*kind))
}

/// An HTTP-carrying function's wiring, from its function.json.
#[derive(Clone, Debug)]
struct HttpFunction {
    /// The route in the router (`/batches`).
    path: String,
    /// The invocation endpoint (`/submit_batch`), the metrics route of an unusable invocation.
    invocation_route: String,
    /// Binding names: the request in, the response out, the queue output (if any).
    request_in: String,
    response_out: String,
    queue_out: Option<String>,
}

/// What the invocation handlers reach: the application state and the HTTP router.
#[derive(Clone, Debug)]
struct Invocations {
    app: AppState,
    http: Router,
    /// [`store_wait`] of this host.json.
    store_wait: Duration,
    /// host.json `extensions.queues.maxDequeueCount` (with its app-setting override).
    max_dequeue_count: u32,
    failed_marks: FailedMarks,
}

/// A queue-triggered function's wiring.
#[derive(Clone, Debug)]
struct QueueFunction {
    /// The queue trigger's binding name (`Data.<binding>` holds the message).
    binding: String,
    /// `<queue>-poison`, where the host moves a message after its last failed attempt.
    poison_queue: String,
}

/// The invocation endpoints of every function the host does not forward. `http` is the router
/// of every HTTP function (`api::router(.., Host::Invocations)`).
pub fn router(
    app: AppState,
    http: Router,
    definitions: &Definitions,
) -> Result<Router, RouterError> {
    let mut router = Router::new();
    for function in definitions.functions.iter().filter(|f| !f.is_forwarded()) {
        let error = |reason: &str| RouterError {
            function: function.name.clone(),
            reason: reason.to_owned(),
        };
        let kind = invoked(&function.name).ok_or_else(|| error("no invocation handler"))?;
        let route = format!("/{}", function.name);
        router = match kind {
            Invoked::HttpRequest => {
                let wiring = http_function(function).map_err(&error)?;
                router.route(
                    &route,
                    post(move |state, body| http_request(state, body, wiring.clone())),
                )
            }
            Invoked::IngestBatch => {
                let wiring = QueueFunction {
                    binding: function
                        .queue_trigger_binding()
                        .ok_or_else(|| error("no queue trigger"))?
                        .to_owned(),
                    poison_queue: format!(
                        "{}-poison",
                        function
                            .queue_trigger()
                            .ok_or_else(|| error("no queue trigger"))?
                            .queue_name
                    ),
                };
                router.route(
                    &route,
                    post(move |state, body| ingest_batch(state, body, wiring.clone())),
                )
            }
        };
    }
    let store_wait = store_wait(definitions.function_timeout);
    tracing::info!(
        store_wait_s = store_wait.as_secs(),
        max_dequeue_count = definitions.queues.max_dequeue_count,
        "ingest_batch waits this long for an unavailable store before it fails an attempt"
    );
    Ok(router.with_state(Invocations {
        app,
        http,
        store_wait,
        max_dequeue_count: definitions.queues.max_dequeue_count,
        failed_marks: FailedMarks::default(),
    }))
}

fn http_function(function: &FunctionDefinition) -> Result<HttpFunction, &'static str> {
    let binding = |kind: BindingKind, direction: Direction| {
        function
            .bindings
            .iter()
            .find(|b| b.kind == kind && b.direction == direction)
            .map(|b| b.name.clone())
    };
    let trigger = function.http_trigger().ok_or("no HTTP trigger")?;
    if trigger.path.contains('{') {
        return Err("route parameters are not supported for invoked HTTP functions");
    }
    Ok(HttpFunction {
        path: trigger.path,
        invocation_route: format!("/{}", function.name),
        request_in: binding(BindingKind::HttpTrigger, Direction::In).ok_or("no httpTrigger in")?,
        response_out: binding(BindingKind::Http, Direction::Out).ok_or("no http out")?,
        queue_out: binding(BindingKind::Queue, Direction::Out),
    })
}

/// `POST /submit_batch` and the like: the HTTP request is in `Data.<request_in>`; the answer
/// goes to `Outputs.<response_out>`, an accepted batch to `Outputs.<queue_out>` (as a JSON
/// object: the host base64-decodes output strings that happen to be valid base64, never objects).
async fn http_request(
    State(state): State<Invocations>,
    body: Bytes,
    function: HttpFunction,
) -> Response {
    let started = Instant::now();
    // Counted here only when the request never reaches the router (which counts it otherwise).
    let unusable = |reason: &str| {
        let response = invocation_failed(reason);
        state.app.metrics.observe_request(
            &function.invocation_route,
            "POST",
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    };
    let carried =
        match Invocation::from_slice(&body).and_then(|i| i.http_request(&function.request_in)) {
            Ok(carried) => carried,
            Err(err) => return unusable(&err.to_string()),
        };
    let output = QueueOutput::default();
    let mut request = Request::new(Body::from(carried.body.clone()));
    *request.method_mut() = carried.method.clone().unwrap_or(Method::POST);
    *request.uri_mut() = match function.path.parse() {
        Ok(uri) => uri,
        Err(_) => return unusable("the function's route is not a path"),
    };
    *request.headers_mut() = carried.headers;
    // The body may have been re-encoded by the host: its own length is the true one.
    request.headers_mut().remove(header::TRANSFER_ENCODING);
    request.headers_mut().insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(carried.body.len()),
    );
    request.extensions_mut().insert(output.clone());
    let response = match state.http.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await {
        Ok(body) => body,
        Err(err) => return invocation_failed(&format!("the response could not be read: {err}")),
    };
    let mut result = InvocationResult::default().with_http(
        &function.response_out,
        parts.status,
        &parts.headers,
        &String::from_utf8_lossy(&body),
    );
    if let (Some(binding), Some(message)) = (&function.queue_out, output.take()) {
        result = result.with_output(binding, message);
    }
    Json(result).into_response()
}

/// `POST /ingest_batch`: the queue message is in `Data.<binding>`. Counted in the request
/// metrics as `/ingest_batch` (the router's middleware is not in front of it: its 30 s request
/// timeout would cut the store wait short).
async fn ingest_batch(
    State(state): State<Invocations>,
    body: Bytes,
    function: QueueFunction,
) -> Response {
    let started = Instant::now();
    let response = ingest_invocation(&state, &body, &function).await;
    state.app.metrics.observe_request(
        "/ingest_batch",
        "POST",
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn ingest_invocation(state: &Invocations, body: &[u8], function: &QueueFunction) -> Response {
    let app = &state.app;
    let invocation = match Invocation::from_slice(body) {
        Ok(invocation) => invocation,
        Err(err) => return invocation_failed(&err.to_string()),
    };
    let dequeue_count = invocation.dequeue_count().unwrap_or(1);
    // After this attempt fails, the host moves the message to the poison queue.
    let last_attempt = dequeue_count >= u64::from(state.max_dequeue_count);
    let message_id = invocation.message_id().unwrap_or_default();
    let decoded = invocation
        .queue_message_text(&function.binding)
        .map_err(|e| e.to_string())
        .and_then(|text| batches::decode_message(&text, true, &app.clients));
    let message = match decoded {
        Ok(message) => message,
        Err(reason) => {
            // Never succeeds: fail, so the host retries and then poisons it (kept, not lost).
            tracing::error!(%message_id, dequeue_count, %reason, "undecodable batch message");
            app.metrics
                .count_queue_message(MessageOutcome::Invalid.label());
            return invocation_failed(&format!("undecodable batch message: {reason}"));
        }
    };
    // A backstop: the wait and the store calls are bounded well inside it. Cut there, the attempt
    // fails like an outage (ingestion is idempotent), and the last one still marks its batch.
    let ingested = tokio::time::timeout(
        state.store_wait * 2,
        batches::ingest_through_outage(&app.store, &app.metrics, &message, state.store_wait),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ServiceError::Store(crate::store::StoreError::unavailable(
            "the ingestion did not finish in time",
        )))
    });
    match ingested {
        Ok(report) => {
            app.metrics
                .count_queue_message(MessageOutcome::Completed.label());
            let log = format!(
                "batch {} ingested: {} accepted, {} rejected",
                report.batch_id, report.accepted, report.rejected
            );
            Json(InvocationResult::default().with_log(log)).into_response()
        }
        Err(ServiceError::BatchConflict) => {
            tracing::error!(batch_id = %message.batch_id, %message_id, dequeue_count, "batch_id reused for different records");
            app.metrics
                .count_queue_message(MessageOutcome::Invalid.label());
            if last_attempt {
                // The batch registered under this id keeps its report (mark_failed leaves it).
                let failure = format!(
                    "batch_id was already used for different records; the message is in {}",
                    function.poison_queue
                );
                state.failed_marks.mark(&app.store, &message, failure).await;
            }
            invocation_failed("batch_id was already used for different records")
        }
        Err(err) if last_attempt => {
            tracing::warn!(batch_id = %message.batch_id, %message_id, dequeue_count, error = %err,
                max_dequeue_count = state.max_dequeue_count,
                "batch not ingested on its last attempt: the host moves it to the poison queue; marking it failed");
            app.metrics
                .count_queue_message(MessageOutcome::Poisoned.label());
            let failure = format!(
                "ingestion failed {dequeue_count} times ({}); the message is in {}",
                failure_kind(&err),
                function.poison_queue
            );
            state.failed_marks.mark(&app.store, &message, failure).await;
            let body = InvocationResult::default().with_log(format!("failed: {err}"));
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(err) => {
            tracing::warn!(batch_id = %message.batch_id, %message_id, dequeue_count, error = %err,
                "batch not ingested; the host will retry");
            app.metrics
                .count_queue_message(MessageOutcome::Retried.label());
            let body = InvocationResult::default().with_log(format!("transient failure: {err}"));
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// What a batch's `failure` says about an error: its kind only (the report is shown to clients;
/// store error texts are for operators).
fn failure_kind(err: &ServiceError) -> &'static str {
    if err.is_transient() {
        "the store was unavailable"
    } else {
        "an internal error"
    }
}

fn invocation_failed(reason: &str) -> Response {
    let body = json!({ "Outputs": {}, "Logs": [reason], "ReturnValue": null });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_wait_is_half_the_function_timeout_and_bounded() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        // (functionTimeout, wait, what the case proves)
        for (timeout, wait, proves) in [
            (Some(minutes(5)), Duration::from_secs(150), "our host.json"),
            (
                Some(Duration::from_secs(6)),
                Duration::from_secs(3),
                "a short test override",
            ),
            (Some(minutes(30)), minutes(5), "a long timeout is capped"),
            (
                None,
                Duration::from_secs(150),
                "absent or -1: the Consumption default",
            ),
        ] {
            assert_eq!(store_wait(timeout), wait, "{proves}");
        }
    }
}

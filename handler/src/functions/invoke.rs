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
//! [`BatchSink::OutputBinding`]: crate::queue::BatchSink::OutputBinding

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tower::ServiceExt as _;

use super::envelope::{Invocation, InvocationResult};
use crate::api::{AppState, RouterError, middleware};
use crate::definitions::{BindingKind, Definitions, Direction, FunctionDefinition};
use crate::queue::QueueOutput;
use crate::service::ServiceError;
use crate::service::batches::{self, MessageOutcome};

/// The largest response body read back from the router (the API's answers are a few KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

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
                let binding = function
                    .queue_trigger_binding()
                    .ok_or_else(|| error("no queue trigger"))?
                    .to_owned();
                router.route(
                    &route,
                    post(move |state, body| ingest_batch(state, body, binding.clone())),
                )
            }
        };
    }
    Ok(router
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            middleware::observe,
        ))
        .with_state(Invocations { app, http }))
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
    let carried =
        match Invocation::from_slice(&body).and_then(|i| i.http_request(&function.request_in)) {
            Ok(carried) => carried,
            Err(err) => return invocation_failed(&err.to_string()),
        };
    let output = QueueOutput::default();
    let mut request = Request::new(Body::from(carried.body.clone()));
    *request.method_mut() = carried.method.clone().unwrap_or(Method::POST);
    *request.uri_mut() = match function.path.parse() {
        Ok(uri) => uri,
        Err(_) => return invocation_failed("the function's route is not a path"),
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

/// `POST /ingest_batch`: the queue message is in `Data.<binding>`.
async fn ingest_batch(State(state): State<Invocations>, body: Bytes, binding: String) -> Response {
    let state = state.app;
    let invocation = match Invocation::from_slice(&body) {
        Ok(invocation) => invocation,
        Err(err) => return invocation_failed(&err.to_string()),
    };
    let dequeue_count = invocation.dequeue_count().unwrap_or(1);
    let message_id = invocation.message_id().unwrap_or_default();
    let decoded = invocation
        .queue_message_text(&binding)
        .map_err(|e| e.to_string())
        .and_then(|text| batches::decode_message(&text, true));
    let message = match decoded {
        Ok(message) => message,
        Err(reason) => {
            // Never succeeds: fail, so the host retries and then poisons it (kept, not lost).
            tracing::error!(%message_id, dequeue_count, %reason, "undecodable batch message");
            state
                .metrics
                .count_queue_message(MessageOutcome::Invalid.label());
            return invocation_failed(&format!("undecodable batch message: {reason}"));
        }
    };
    let ingested = match state.store.get() {
        Ok(store) => batches::ingest_and_count(store.as_ref(), &state.metrics, &message).await,
        Err(err) => Err(err),
    };
    match ingested {
        Ok(report) => {
            state
                .metrics
                .count_queue_message(MessageOutcome::Completed.label());
            let log = format!(
                "batch {} ingested: {} accepted, {} rejected",
                report.batch_id, report.accepted, report.rejected
            );
            Json(InvocationResult::default().with_log(log)).into_response()
        }
        Err(ServiceError::BatchConflict) => {
            tracing::error!(batch_id = %message.batch_id, %message_id, "batch_id reused for different records");
            state
                .metrics
                .count_queue_message(MessageOutcome::Invalid.label());
            invocation_failed("batch_id was already used for different records")
        }
        Err(err) => {
            tracing::warn!(%message_id, dequeue_count, error = %err, "batch not ingested; the host will retry");
            state
                .metrics
                .count_queue_message(MessageOutcome::Retried.label());
            let body = InvocationResult::default().with_log(format!("transient failure: {err}"));
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

fn invocation_failed(reason: &str) -> Response {
    let body = json!({ "Outputs": {}, "Logs": [reason], "ReturnValue": null });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

//! The invocation endpoints `POST /<function>` of the functions the host does not forward (they
//! have bindings besides HTTP in/out): `submit_batch` (HTTP in, HTTP out, queue out) and
//! `ingest_batch` (queue trigger).
//!
//! An invocation that carries an HTTP request runs through the same axum router as a standalone
//! request (auth, content checks, limits, headers and errors are written once, in `api`): the
//! request is rebuilt from `Data.<http in>`, sent through the router with `oneshot`, and the
//! response goes back in `Outputs.<http out>`. A batch the request accepts reaches the queue
//! output binding through the router's batch sink, [`OutputBinding`]: the invocation runs the
//! router inside a task-local slot for its queue output, which the sink fills and the invocation
//! reads back (nothing Functions-specific crosses `api` or `queue`).
//!
//! Failure signalling: any non-2xx answer fails the invocation, and the host retries the queue
//! message and finally moves it to `<queue>-poison`. `ingest_batch` hands each message to the
//! service's [`Lifecycle`] (the rule both hosts share) and answers 2xx only when its verdict is
//! delete: the batch is fully judged (invalid records are a success with results). Otherwise 422
//! for a message that cannot succeed as it stands, 503 for store trouble; either way the host
//! counts the attempt and poisons the message after `maxDequeueCount`, so nothing is silently
//! dropped.
//!
//! Store outages: every failed attempt counts toward poisoning under the Functions host, so an
//! attempt does not fail at once when the store is unavailable: it waits for the store to answer
//! again, at most [`store_wait`] (half of host.json's `functionTimeout`: 150 s with ours), then
//! fails ([`OutageRule::RideOut`]). With `maxDequeueCount` 5 and `visibilityTimeout` 30 s the
//! host's tries then span an outage of about 15 minutes instead of 2.5. The last attempt that
//! fails marks the batch `failed` with the reason.
//!
//! Metrics: each request is counted once. The HTTP request an invocation carries is counted by
//! the router it runs through (as `POST /batches`, like a standalone request); the invocation
//! wrapper counts only what never reaches it (an unusable envelope) and `ingest_batch`
//! invocations (as `/ingest_batch`).
//!

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::envelope::{Invocation, InvocationResult};
use crate::api::{AppState, RouterError};
use crate::auth::Clients;
use crate::definitions::{BindingKind, Definitions, Direction, FunctionDefinition};
use crate::domain::{BatchMessage, BatchReport};
use crate::service::ServiceError;
use crate::service::batches::lifecycle::{Delivery, Lifecycle, OutageRule, Verdict};
use crate::service::batches::{BatchSink, queued_text};

/// The largest response body read back from the router (the API's answers are a few KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// `functionTimeout` assumed when host.json has none or `-1`: the smallest default (Consumption).
const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The longest [`store_wait`], whatever `functionTimeout` allows.
const MAX_STORE_WAIT: Duration = Duration::from_secs(5 * 60);

/// How long an `ingest_batch` invocation waits for an unavailable store before it fails: half of
/// `functionTimeout` (host.json, or `AzureFunctionsJobHost__functionTimeout`; absent or `-1`:
/// 5 min), at most 5 min. The other half is left for the ingestion itself, whose store calls are
/// bounded (`MEDIFLOW_COSMOS_TIMEOUT_MS`, 5 s by default, each for Cosmos DB), so the host never times the invocation out (it cancels at
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
}

/// A queue-triggered function's wiring.
#[derive(Clone, Debug)]
struct QueueFunction {
    /// The queue trigger's binding name (`Data.<binding>` holds the message).
    binding: String,
    /// What becomes of each message ([`OutageRule::RideOut`] for [`store_wait`]).
    lifecycle: Lifecycle,
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
                let trigger = function
                    .queue_trigger()
                    .ok_or_else(|| error("no queue trigger"))?;
                let wiring = QueueFunction {
                    binding: function
                        .queue_trigger_binding()
                        .ok_or_else(|| error("no queue trigger"))?
                        .to_owned(),
                    lifecycle: Lifecycle::new(
                        app.store.clone(),
                        Arc::clone(&app.metrics),
                        app.clients.clone(),
                        trigger.queue_name,
                        // The host has decoded base64 already; plain JSON is what arrives.
                        true,
                        definitions.queues.max_dequeue_count,
                        OutageRule::RideOut(store_wait(definitions.function_timeout)),
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
    Ok(router.with_state(Invocations { app, http }))
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
    let output = QueueOutput::default();
    let response = match QUEUE_OUTPUT
        .scope(output.clone(), state.http.oneshot(request))
        .await
    {
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
    let response = ingest_invocation(&body, &function).await;
    state.app.metrics.observe_request(
        "/ingest_batch",
        "POST",
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn ingest_invocation(body: &[u8], function: &QueueFunction) -> Response {
    let invocation = match Invocation::from_slice(body) {
        Ok(invocation) => invocation,
        Err(err) => return invocation_failed(&err.to_string()),
    };
    let message_id = invocation.message_id().unwrap_or_default();
    let text = invocation
        .queue_message_text(&function.binding)
        .map_err(|e| e.to_string());
    let handled = function
        .lifecycle
        .handle(Delivery {
            message_id: &message_id,
            text: text.as_deref().map_err(Clone::clone),
            dequeue_count: invocation.dequeue_count().unwrap_or(1),
        })
        .await;
    let body = InvocationResult::default().with_log(handled.summary());
    match handled.verdict {
        Verdict::Delete => Json(body).into_response(),
        // The host retries the message, and poisons it after its last attempt.
        _ if handled.is_invalid() => invocation_failed(&handled.summary()),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response(),
    }
}

tokio::task_local! {
    /// The queue output of the invocation being served: set around the router call by
    /// [`http_request`], filled by [`OutputBinding`].
    static QUEUE_OUTPUT: QueueOutput;
}

/// The queue output of one Functions invocation.
#[derive(Clone, Debug, Default)]
struct QueueOutput(Arc<Mutex<Option<Value>>>);

impl QueueOutput {
    fn set(&self, message: Value) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message);
    }

    fn take(&self) -> Option<Value> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Under the Functions host, the service's [`BatchSink`]: an accepted batch goes to the
/// invocation's queue output binding (as a JSON object: the host base64-decodes output strings
/// that happen to be valid base64, never objects), and the host puts it on the queue.
#[derive(Clone, Debug)]
pub struct OutputBinding {
    clients: Clients,
}

impl OutputBinding {
    pub fn new(clients: Clients) -> Self {
        Self { clients }
    }
}

#[async_trait]
impl BatchSink for OutputBinding {
    async fn hand_on(
        &self,
        message: &BatchMessage,
        queued: BatchReport,
    ) -> Result<BatchReport, ServiceError> {
        let text = queued_text(message, &self.clients)?;
        let value = serde_json::from_str(&text)
            .map_err(|e| ServiceError::Internal(format!("queued text is not JSON: {e}")))?;
        QUEUE_OUTPUT
            .try_with(|output| output.set(value))
            .map_err(|_| ServiceError::Internal("a batch outside a Functions invocation".into()))?;
        Ok(queued)
    }
}

fn invocation_failed(reason: &str) -> Response {
    let body = json!({ "Outputs": {}, "Logs": [reason], "ReturnValue": null });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_output_binding_fills_the_invocations_queue_output_and_nothing_outside_one() {
        let body = json!({"batch_id": uuid::Uuid::new_v4(), "records": [{"site_id": "site001"}]});
        let message = BatchMessage::from_slice(body.to_string().as_bytes()).expect("a batch");
        let queued = BatchReport::queued(&message);
        let sink = OutputBinding::new(Clients::off());

        let output = QueueOutput::default();
        let answered = QUEUE_OUTPUT
            .scope(output.clone(), sink.hand_on(&message, queued.clone()))
            .await
            .expect("handed to the output binding");
        assert_eq!(answered, queued, "the answer is the queued report");
        assert_eq!(
            output.take(),
            Some(message.to_value()),
            "the message is the output"
        );

        // Outside an invocation there is no output binding to hand it to: a bug, said so.
        assert!(matches!(
            sink.hand_on(&message, queued).await,
            Err(ServiceError::Internal(_))
        ));
    }

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

//! The HTTP transport: one router built from the function definitions, used by both hosts and by
//! the tests. Handlers are thin adapters over [`crate::service`].

pub mod admission;
pub mod audit;
pub mod batches;
pub mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod records;
pub mod schemas;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodFilter, MethodRouter, get, on};

use crate::auth::Clients;
use crate::config::HttpTimeouts;
use crate::definitions::Definitions;
use crate::domain::Principal;
use crate::metrics::Metrics;
use crate::service::StoreHandle;
use crate::service::audit::{AuditLog, Call};
use crate::service::batches::BatchSink;
use error::ApiError;

/// Version reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Functions anyone may call; every other HTTP function needs an API key (secure by default: a
/// new function is protected unless it is listed here).
pub const PUBLIC_FUNCTIONS: [&str; 3] = ["health", "ready", "openapi"];

/// What every handler can reach: one shared [`App`], so that the clone every extraction of
/// `State` makes is one reference count, not one per field (measured: cloning and dropping the
/// fields, channel senders among them, cost about 7% of a GET's CPU; BENCHMARKS.md).
#[derive(Clone, Debug)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct App {
    pub store: StoreHandle,
    /// Who may call, and as whom: the client table in force (or the legacy keys, or auth off).
    pub clients: Clients,
    pub metrics: Arc<Metrics>,
    /// Where an accepted batch goes: the queue, in-process ingestion, or the Functions output.
    pub batches: Arc<dyn BatchSink>,
    /// The in-flight and body-bytes budgets ([`admission`]).
    pub admission: admission::Admission,
    /// Where read and refusal events wait to be written.
    pub audit: AuditLog,
    /// How long a client may take to send a body, and a request to be answered.
    pub timeouts: HttpTimeouts,
}

impl AppState {
    /// The state every router of one process shares: `store` (open, or opened later through the
    /// handle), the process's `metrics`, the callers in force, where batches go, the admission
    /// limits and the HTTP deadlines; with the audit writer started (so: inside a Tokio runtime).
    /// What both hosts serve with, and what the tests call the router with in process.
    pub fn new(
        store: StoreHandle,
        metrics: Arc<Metrics>,
        clients: Clients,
        batches: Arc<dyn BatchSink>,
        limits: admission::Limits,
        timeouts: HttpTimeouts,
    ) -> Self {
        Self(Arc::new(App {
            admission: admission::Admission::new(limits),
            audit: AuditLog::start(store.clone(), Arc::clone(&metrics)),
            store,
            clients,
            metrics,
            batches,
            timeouts,
        }))
    }
}

/// The authenticated caller of a protected route (put in the request by
/// [`middleware::authenticate`], always, on every protected route).
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// A route without its caller is a bug (a protected route always has one): 500, never 401.
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a protected route ran without its caller".into()))
    }
}

/// The request's id (put in the request by [`middleware::observe`]), for audit events.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// Who is calling and which request this is: what a route hands to a use case as its [`Call`].
#[derive(Debug, Clone)]
pub struct Context {
    pub caller: Arc<Principal>,
    pub request_id: Option<Arc<str>>,
}

impl Context {
    pub fn call<'a>(&'a self, audit: &'a AuditLog) -> Call<'a> {
        Call {
            caller: &self.caller,
            request_id: self.request_id.as_deref(),
            audit,
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Context {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .map(|Caller(principal)| Arc::clone(principal))
            .ok_or_else(|| ApiError::Internal("a protected route ran without its caller".into()))?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|RequestId(id)| Arc::clone(id));
        Ok(Self { caller, request_id })
    }
}

/// Which transport the router is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// Standalone: every HTTP function on its route, plus `/metrics` unless it has its own port.
    Standalone { metrics_on_main_port: bool },
    /// Under the Functions host, the port the host calls: the forwarded functions on their routes
    /// and `GET /` for the host's readiness ping. (The invocation endpoints `POST /<function>` are
    /// `crate::functions`' and are merged in by the server.)
    CustomHandler,
    /// Every HTTP function on its route and nothing else: the router the Functions adapter runs
    /// the HTTP request of an invocation through. Never served on a port.
    Invocations,
}

/// Builds an HTTP function's handler for the methods its function.json allows.
pub type HttpHandler = fn(MethodFilter) -> MethodRouter<AppState>;

/// The axum handler of every HTTP function, by function name (a test checks this table against
/// the function.json files, both ways).
pub fn http_functions() -> [(&'static str, HttpHandler); 11] {
    [
        ("health", |m| on(m, health::health)),
        ("ready", |m| on(m, health::ready)),
        ("openapi", |m| on(m, openapi::document)),
        ("create_record", |m| on(m, records::create)),
        ("get_record", |m| on(m, records::get)),
        ("list_records", |m| on(m, records::list)),
        ("submit_batch", |m| on(m, batches::submit)),
        ("get_batch", |m| on(m, batches::get)),
        ("review_record", |m| on(m, records::review)),
        ("record_history", |m| on(m, audit::history)),
        ("list_audit", |m| on(m, audit::page)),
    ]
}

fn http_function(name: &str, methods: MethodFilter) -> Option<MethodRouter<AppState>> {
    http_functions()
        .into_iter()
        .find_map(|(n, handler)| (n == name).then(|| handler(methods)))
}

fn method_filter(methods: &[String]) -> Result<MethodFilter, String> {
    methods
        .iter()
        .try_fold(None::<MethodFilter>, |acc, m| {
            let filter = match m.to_ascii_lowercase().as_str() {
                "get" => MethodFilter::GET,
                "post" => MethodFilter::POST,
                "put" => MethodFilter::PUT,
                "delete" => MethodFilter::DELETE,
                "patch" => MethodFilter::PATCH,
                other => return Err(format!("unsupported method {other}")),
            };
            Ok(Some(acc.map_or(filter, |a| a.or(filter))))
        })?
        .ok_or_else(|| "no methods".to_owned())
}

/// A function definition the binary cannot serve (caught by the tests, never in production).
#[derive(Debug, thiserror::Error)]
#[error("function {function}: {reason}")]
pub struct RouterError {
    pub function: String,
    pub reason: String,
}

/// Builds the router for `host` from the function definitions.
pub fn router(
    state: AppState,
    definitions: &Definitions,
    host: Host,
) -> Result<Router, RouterError> {
    let mut public = Router::new();
    let mut protected = Router::new();
    for function in &definitions.functions {
        let error = |reason: &str| RouterError {
            function: function.name.clone(),
            reason: reason.to_owned(),
        };
        let is_public = PUBLIC_FUNCTIONS.contains(&function.name.as_str());
        if host == Host::CustomHandler && !function.is_forwarded() {
            continue; // An invocation endpoint: `crate::functions` serves it.
        }
        let Some(trigger) = function.http_trigger() else {
            continue; // A queue trigger: the standalone queue loop runs it.
        };
        let methods = method_filter(trigger.methods).map_err(|r| error(&r))?;
        let handler =
            http_function(&function.name, methods).ok_or_else(|| error("no HTTP handler"))?;
        if is_public {
            public = public.route(&trigger.path, handler);
        } else {
            protected = protected.route(&trigger.path, handler);
        }
    }
    // Auth first (an unauthenticated request costs nothing and holds nothing), with the caller's
    // request rate, then admission.
    let protected = protected
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admission::admission,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ));
    let mut router = public.merge(protected);
    match host {
        Host::CustomHandler => router = router.route("/", get(health::host_ping)),
        Host::Standalone {
            metrics_on_main_port: true,
        } => router = router.route("/metrics", get(health::metrics)),
        Host::Standalone {
            metrics_on_main_port: false,
        }
        | Host::Invocations => {}
    }
    Ok(router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state))
}

/// The router of the separate operations listener (`MEDIFLOW_METRICS_ADDR`): `/metrics` and the
/// probes `/health` and `/ready`, so that a flood of connections on the data port (which fills
/// its connection limit) cannot fail liveness.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .fallback(|| async { ApiError::RouteNotFound })
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    /// A route that answers its caller's client id.
    fn echo_caller() -> Router {
        Router::new().route(
            "/who",
            get(|Caller(principal): Caller| async move { principal.client.to_string() }),
        )
    }

    #[tokio::test]
    async fn the_caller_extractor_gives_the_principal_the_middleware_put_in() {
        let caller = Caller(Arc::new(Principal::legacy()));
        let router = echo_caller().layer(axum::middleware::from_fn(
            move |mut request: axum::extract::Request, next: axum::middleware::Next| {
                let caller = caller.clone();
                async move {
                    request.extensions_mut().insert(caller);
                    next.run(request).await
                }
            },
        ));
        let response = router
            .oneshot(Request::get("/who").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(&body[..], b"legacy");
    }

    #[tokio::test]
    async fn a_route_without_its_caller_is_a_bug_not_a_401() {
        let response = echo_caller()
            .oneshot(Request::get("/who").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

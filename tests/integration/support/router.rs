//! The HTTP contract in process: `spawn_app(Setup)` gives each test a fresh app, the real router
//! (`handler::api::router`, the one both hosts serve) over a fresh store, called with tower's
//! `oneshot`: no process, no socket, no port. As zero2prod's `spawn_app`, with axum's testing
//! example for the call.
//!
//! The same cases run against a `handler` process over a real socket when `MEDIFLOW_TEST_BINARY`
//! names another build to test (the arm64 stage of scripts/test.sh): what the router promises
//! in process, that build must keep on the wire.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::{App, AppOptions, Backend};

/// What a test's app starts with; the same settings give the same app in process and as a process.
#[derive(Debug, Default, Clone)]
pub struct Setup {
    backend: Backend,
    /// Content of the key file (a client table or the old one-key-per-line format); none: auth off.
    keys: Option<String>,
    /// Environment variables, read as the binary reads them (`handler::config::Config`).
    env: Vec<(String, String)>,
}

impl Setup {
    /// On `backend` (the embedded store in a temp folder by default).
    #[must_use]
    pub fn on(backend: Backend) -> Self {
        Self {
            backend,
            ..Self::default()
        }
    }

    /// With this key file content in force.
    #[must_use]
    pub fn keys(mut self, content: impl Into<String>) -> Self {
        self.keys = Some(content.into());
        self
    }

    /// With this environment variable set.
    #[must_use]
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }
}

/// Whether the cases call the router in process (the default) or a process named by
/// `MEDIFLOW_TEST_BINARY`.
fn in_process() -> bool {
    std::env::var_os("MEDIFLOW_TEST_BINARY").is_none()
}

/// A test's app: the router in process, or (see the module) a process.
#[derive(Clone)]
pub struct TestApp(Arc<Target>);

enum Target {
    Router {
        router: axum::Router,
        _dir: tempfile::TempDir,
    },
    Process {
        app: App,
        client: reqwest::Client,
        _dir: Option<tempfile::TempDir>,
    },
}

/// A fresh app for one test, ready to serve (its store open).
pub async fn spawn_app(setup: Setup) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = setup.keys.as_ref().map(|content| {
        let path = dir.path().join("api-keys");
        std::fs::write(&path, content).expect("write the key file");
        path.display().to_string()
    });
    if !in_process() {
        let mut options = AppOptions::default().envs(setup.env.clone());
        if let Some(path) = key_file {
            options = options.env("MEDIFLOW_API_KEYS_FILE", path);
        }
        return TestApp(Arc::new(Target::Process {
            app: setup.backend.start(options).await,
            client: reqwest::Client::new(),
            _dir: Some(dir),
        }));
    }
    let env: std::collections::HashMap<String, String> = setup.env.iter().cloned().collect();
    let config = handler::config::Config::from_source(&env).expect("the test's settings");
    let clients = match &setup.keys {
        Some(content) => handler::auth::Clients::from_content(content, config.client_rate)
            .expect("the test's key file"),
        None => handler::auth::Clients::off(),
    };
    let limits = handler::api::admission::Limits::from_host_json(
        handler::definitions::host_json(),
        &config.http_overrides,
        config.body_budget_bytes,
    )
    .expect("host.json's limits");
    let (handle, metrics) = (
        handler::service::StoreHandle::default(),
        Arc::new(handler::metrics::Metrics::default()),
    );
    // As standalone without a queue: batches are ingested in process.
    let batches = Arc::new(handler::service::batches::InProcess::new(
        handle.clone(),
        Arc::clone(&metrics),
    ));
    let state = handler::api::AppState::new(
        handle,
        metrics,
        clients,
        batches,
        limits,
        config.http_timeouts,
    );
    let store: handler::store::SharedStore = match setup.backend {
        Backend::Embedded => Arc::new(
            handler::store::embedded::EmbeddedStore::open(&dir.path().join("data"))
                .expect("open the embedded store"),
        ),
        Backend::Cosmos => Arc::new(
            super::cosmos_emulator::CosmosEmulator::shared()
                .fresh_container()
                .await
                .store()
                .await,
        ),
    };
    // As the server opens it: behind the metrics decorator.
    state
        .store
        .set(handler::store::observed::ObservedStore::wrap(
            store,
            Arc::clone(&state.metrics),
        ));
    let definitions = handler::definitions::Definitions::embedded_with_overrides(&config)
        .expect("the function definitions");
    let router = handler::api::router(
        state,
        &definitions,
        handler::api::Host::Standalone {
            metrics_on_main_port: true,
        },
    )
    .expect("the router");
    TestApp(Arc::new(Target::Router { router, _dir: dir }))
}

/// A running process called through the same requests (for the tests that need a process: a
/// queue, the Functions host), so that both kinds of test share one way of calling.
impl From<App> for TestApp {
    fn from(app: App) -> Self {
        Self(Arc::new(Target::Process {
            app,
            client: reqwest::Client::new(),
            _dir: None,
        }))
    }
}

impl TestApp {
    /// The process behind this app; fails the test for an app in process.
    pub fn process(&self) -> &App {
        match &*self.0 {
            Target::Process { app, .. } => app,
            Target::Router { .. } => panic!("this test needs a process, not the router in process"),
        }
    }

    pub fn get(&self, path: &str) -> Call {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call {
        self.request(Method::POST, path)
    }

    pub fn request(&self, method: Method, path: &str) -> Call {
        Call {
            app: self.clone(),
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// `GET path` without a key, answered 200 with a JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let answer = self.get(path).send().await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "GET {path}: {}",
            answer.text()
        );
        answer.json()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.get("/metrics").send().await.text()
    }
}

/// One request being built (`TestApp::get`, `post`, `request`), sent by [`Call::send`].
pub struct Call {
    app: TestApp,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

impl Call {
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
        self
    }

    /// `X-API-Key: key`.
    #[must_use]
    pub fn key(self, key: &str) -> Self {
        self.header("x-api-key", key)
    }

    /// A JSON body with `Content-Type: application/json`, as `reqwest`'s `.json()` sends it.
    #[must_use]
    pub fn json(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }

    /// These bytes as the body, with no content type of their own.
    #[must_use]
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// Sends the request and reads the whole answer.
    pub async fn send(self) -> Answer {
        let what = format!("{} {}", self.method, self.path);
        match &*self.app.0 {
            Target::Router { router, .. } => {
                let mut request = Request::builder().method(self.method).uri(&self.path);
                let headers = request.headers_mut().expect("a valid request");
                *headers = self.headers;
                // What a client on the wire declares for a body it sends whole.
                if let Some(body) = &self.body {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                }
                let request = request
                    .body(self.body.map_or_else(Body::empty, Body::from))
                    .unwrap_or_else(|e| panic!("{what}: not a request: {e}"));
                let response = router
                    .clone()
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {});
                let (parts, body) = response.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: the body: {e}"));
                Answer {
                    what,
                    status: parts.status,
                    headers: parts.headers,
                    body,
                }
            }
            Target::Process { app, client, .. } => {
                let mut request = client
                    .request(self.method, app.url(&self.path))
                    .headers(self.headers);
                if let Some(body) = self.body {
                    request = request.body(body);
                }
                let response = request
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let (status, headers) = (response.status(), response.headers().clone());
                let body = response
                    .bytes()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: the body: {e}"));
                Answer {
                    what,
                    status,
                    headers,
                    body,
                }
            }
        }
    }
}

/// A whole answer: status, headers and body.
#[derive(Debug)]
pub struct Answer {
    /// The request it answers (`METHOD path`), for failure messages.
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON; fails the test, showing the body, when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{}: a JSON body expected ({e}): {}", self.what, self.text())
        })
    }

    /// The body as JSON, or `null` when it is not JSON (an empty body).
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name`; fails the test when it is absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{}: no {name} header", self.what))
    }
}

//! Liveness, readiness, the Functions host's ping and the metrics page.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, VERSION, admission};
use crate::store::StoreHealth;

/// Liveness: the process serves HTTP. Never touches the store.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health",
    responses((status = 200, description = "Alive", body = crate::api::openapi::Health)))]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": VERSION }))
}

/// Readiness: the store is open, still able to work ([`crate::store::RecordStore::health`]), and
/// answers. The body also says whether the key file's content is in force (`auth`,
/// [`crate::auth::AuthStatus`]): a refused rewrite leaves the previous table in force, which is
/// no reason to stop serving, so it does not change the status code.
#[utoipa::path(get, path = "/ready", tag = "operations", operation_id = "ready",
    responses(
        (status = 200, description = "Ready", body = crate::api::openapi::Readiness),
        (status = 503, description = "The store is not reachable", body = crate::api::openapi::Readiness),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let check = match state.store.get() {
        Ok(store) => match store.health() {
            StoreHealth::Ok => store.check().await.map_err(|e| e.to_string()),
            StoreHealth::Failed(reason) => Err(reason),
        },
        Err(_) => Err("store not open yet".to_owned()),
    };
    let auth = state.clients.status();
    match check {
        Ok(()) => Json(json!({ "status": "ready", "auth": auth })).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                Json(json!({ "status": "unavailable", "auth": auth })),
            )
                .into_response()
        }
    }
}

/// The Functions host polls `GET /` until it gets any answer and then starts invoking functions:
/// answer once the store is open, so that no invocation meets a store still opening. The wait is
/// bounded by [`admission::STARTUP_WAIT`] (20 s), inside the host's 30 s start-up limit
/// (`HttpWorkerOptions.InitializationTimeout`); invocations after that wait for the store
/// themselves.
pub async fn host_ping(State(state): State<AppState>) -> StatusCode {
    if !state.store.opened(admission::STARTUP_WAIT).await {
        tracing::warn!("answering the host's ping before the store is open");
    }
    StatusCode::OK
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

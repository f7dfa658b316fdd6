//! Liveness, readiness, the Functions host's ping and the metrics page.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, VERSION};

/// Liveness: the process serves HTTP. Never touches the store.
#[utoipa::path(get, path = "/health", tag = "operations", operation_id = "health",
    responses((status = 200, description = "Alive", body = crate::api::openapi::Health)))]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": VERSION }))
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/ready", tag = "operations", operation_id = "ready",
    responses(
        (status = 200, description = "Ready", body = crate::api::openapi::Readiness),
        (status = 503, description = "The store is not reachable", body = crate::api::openapi::Readiness),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let check = match state.store.get() {
        Ok(store) => store.check().await.map_err(|e| e.to_string()),
        Err(_) => Err("store not open yet".to_owned()),
    };
    match check {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                Json(json!({ "status": "unavailable" })),
            )
                .into_response()
        }
    }
}

/// The Functions host polls `GET /` until it gets any answer: answer at once.
pub async fn host_ping() -> StatusCode {
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

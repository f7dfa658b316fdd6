//! `floor`: the benchmark's floor. A bare axum server with the service's record routes and none
//! of its work: `POST /records` parses the same six-field JSON body (no validation) and answers
//! 201 with it plus a random id; `GET /records/{id}` answers a fixed record; `GET /health` answers
//! 200. No storage, no auth, no logs, no metrics. What the HTTP stack alone costs on the machine.
//!
//! Usage: `floor [ADDR]` (or `FLOOR_ADDR`), default `127.0.0.1:0`; prints `listening <addr>`.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

/// The body of `POST /records`, as the service reads it, minus every rule.
#[derive(Debug, Deserialize, Serialize)]
struct RecordInput {
    site_id: String,
    trial_phase: String,
    submission_date: String,
    status: String,
    patient_count: i64,
    notes: String,
}

/// A record as answered: the fields, then an id (the service's order).
#[derive(Debug, Serialize)]
struct Record {
    #[serde(flatten)]
    fields: RecordInput,
    id: String,
}

async fn create(Json(fields): Json<RecordInput>) -> (StatusCode, Json<Record>) {
    let id = uuid::Uuid::new_v4().to_string();
    (StatusCode::CREATED, Json(Record { fields, id }))
}

async fn read(Path(id): Path<String>) -> Json<Record> {
    Json(Record {
        fields: RecordInput {
            site_id: "SITE001".to_owned(),
            trial_phase: "II".to_owned(),
            submission_date: "2025-03-15".to_owned(),
            status: "pending".to_owned(),
            patient_count: 42,
            notes: "Initial submission".to_owned(),
        },
        id,
    })
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

fn router() -> Router {
    Router::new()
        .route("/records", post(create))
        .route("/records/{id}", get(read))
        .route("/health", get(health))
}

#[tokio::main]
#[expect(
    clippy::print_stdout,
    reason = "the benchmark runner reads the bound address from stdout"
)]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FLOOR_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("ADDR: {e}")))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, router()).await
}

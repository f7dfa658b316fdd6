//! `floor`: the benchmark's floor. A bare axum server with the service's record routes and none
//! of its work: `POST /records` parses the same six-field JSON body (no validation) and answers
//! 201 with it plus a random id; `GET /records/{id}` answers a fixed record; `GET /health` answers
//! 200. No storage, no auth, no logs, no metrics. What the HTTP stack alone costs on the machine.
//!
//! The durable floor (`floor ADDR JOURNAL`): the same, plus one writer thread that appends each
//! created record to the file `JOURNAL` and `fdatasync`s once per group of waiting records (group
//! commit); a POST is answered only after its sync. What a durable write costs on this machine's
//! HTTP stack and disk, with no engine at all.
//!
//! Usage: `floor [ADDR [JOURNAL]]` (or `FLOOR_ADDR`), default `127.0.0.1:0`; prints the bound
//! address as the service's JSON start-up line does (`{"fields":{"message":"listening","http_addr":"…"}}`),
//! so the benchmark reads both the same way.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::mpsc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Most records appended per `fdatasync`, as in the service's writer.
const MAX_GROUP: usize = 256;

/// Records waiting for the writer; beyond it a POST is answered 503.
const QUEUE_CAPACITY: usize = 1024;

/// A record for the writer thread, and where to say it is on the device.
type Append = (Vec<u8>, oneshot::Sender<()>);

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

async fn create_durable(
    State(writer): State<mpsc::SyncSender<Append>>,
    Json(fields): Json<RecordInput>,
) -> Result<(StatusCode, Json<Record>), StatusCode> {
    let record = Record {
        fields,
        id: uuid::Uuid::new_v4().to_string(),
    };
    let encoded = serde_json::to_vec(&record).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let (done, synced) = oneshot::channel();
    writer
        .try_send((encoded, done))
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    synced.await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// The writer thread: block for one record, take whatever else is waiting, append all, one
/// `fdatasync`, then answer all. Stops (and the POSTs get 503) at the first I/O error.
fn run_writer(mut file: std::fs::File, queue: &mpsc::Receiver<Append>) {
    let mut buffer = Vec::new();
    let mut waiting = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = queue.recv() {
        buffer.clear();
        let mut next = Some(first);
        while let Some((encoded, done)) = next.take() {
            buffer.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
            buffer.extend_from_slice(&encoded);
            waiting.push(done);
            if waiting.len() < MAX_GROUP {
                next = queue.try_recv().ok();
            }
        }
        if file
            .write_all(&buffer)
            .and_then(|()| file.sync_data())
            .is_err()
        {
            return;
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
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

fn router(writer: Option<mpsc::SyncSender<Append>>) -> Router {
    let records = match writer {
        None => Router::new().route("/records", post(create)),
        Some(writer) => Router::new()
            .route("/records", post(create_durable))
            .with_state(writer),
    };
    records
        .route("/records/{id}", get(read))
        .route("/health", get(health))
}

#[tokio::main]
#[expect(
    clippy::print_stdout,
    reason = "the benchmark runner reads the bound address from stdout"
)]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .or_else(|| std::env::var("FLOOR_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("ADDR: {e}")))?;
    let writer = match args.next() {
        None => None,
        Some(journal) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&journal)?;
            let (writer, queue) = mpsc::sync_channel(QUEUE_CAPACITY);
            std::thread::Builder::new()
                .name("floor-writer".into())
                .spawn(move || run_writer(file, &queue))?;
            Some(writer)
        }
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!(r#"{{"fields":{{"message":"listening","http_addr":"{addr}"}}}}"#);
    axum::serve(listener, router(writer)).await
}

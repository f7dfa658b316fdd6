//! `harness store-floor ADDR DIR`: the floor's HTTP stack in front of the service's own embedded
//! store, and nothing else. It does the work no design of the service can skip, and only that:
//!
//! - `POST /records`: the body read into the domain's record type, a time-ordered id, and the
//!   store's insert with its create event: journaled and `fdatasync`ed before the 201, then
//!   applied to redb (the record, its by-site index entry, the event and its by-record entry);
//! - `GET /records/{id}`: the store's read, and a read event for the audit trail, through the
//!   service's own read-event buffer ([`AuditLog`]: written in groups, bounded);
//! - `GET /health`: 200.
//!
//! No auth, no rate limit, no admission control, no validation rules, no metrics, no logs. The
//! service against this reference shows what its HTTP and application layers cost; this against
//! the durable floor shows what the store and the audit trail cost (issue 25, BENCHMARKS.md).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use handler::domain::{AuditAction, AuditDraft, NewRecord, Record, RecordId};
use handler::metrics::Metrics;
use handler::service::StoreHandle;
use handler::service::audit::AuditLog;
use handler::store::embedded::EmbeddedStore;
use handler::store::{Inserted, RecordStore};

/// The client every event names.
const CLIENT: &str = "store-floor";

#[derive(Clone)]
struct Floor {
    store: Arc<EmbeddedStore>,
    reads: AuditLog,
}

async fn create(State(floor): State<Floor>, Json(fields): Json<NewRecord>) -> Response {
    let record = Record::new(RecordId::random(), fields);
    let draft = AuditDraft::new(CLIENT, AuditAction::Create, "created");
    match floor.store.insert(record.clone(), &draft).await {
        Ok(Inserted::Created) => (StatusCode::CREATED, Json(record)).into_response(),
        Ok(Inserted::Existing(existing)) => (StatusCode::CREATED, Json(existing)).into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn read(State(floor): State<Floor>, UrlPath(raw): UrlPath<String>) -> Response {
    let Some(id) = RecordId::parse(&raw) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match floor.store.get_json(id).await {
        Ok(Some(json)) => {
            let event = AuditDraft::new(CLIENT, AuditAction::Read, "ok").records([id]);
            if floor.reads.record(event).is_err() {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            ([(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Serves the store floor on `addr` with its store in `dir`; prints the bound address as the
/// service's start-up line does.
#[expect(
    clippy::print_stdout,
    reason = "the benchmark reads the bound address from stdout"
)]
pub fn serve(addr: SocketAddr, dir: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let store = Arc::new(EmbeddedStore::open(dir).map_err(|e| format!("store: {e}"))?);
        let reads = AuditLog::start(
            StoreHandle::ready(Arc::clone(&store) as _),
            Arc::new(Metrics::default()),
        );
        let router = Router::new()
            .route("/records", post(create))
            .route("/records/{id}", get(read))
            .route("/health", get(|| async { "ok" }))
            .with_state(Floor { store, reads });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!(r#"{{"fields":{{"message":"listening","http_addr":"{addr}"}}}}"#);
        axum::serve(listener, router)
            .await
            .map_err(|e| format!("serve: {e}"))
    })
}

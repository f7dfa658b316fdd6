//! The load generator: a fixed number of keep-alive connections, each sending its next request
//! as soon as the previous answer is read (closed loop, "saturation"), or on a fixed schedule
//! (`rate`: the latency of a late request counts from when it should have been sent, so a slow
//! server cannot hide its queueing: no coordinated omission). Latencies go to an HDR histogram
//! (1 µs to 60 s, 3 significant digits). Any answer other than 2xx, and any connection error, is
//! an error; a run with errors fails.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::Connection;

/// The body every `POST /records` sends: a valid record (the service stores it).
pub const RECORD_BODY: &str = r#"{"site_id":"site001","trial_phase":"II","submission_date":"2025-03-15","status":"pending","patient_count":42,"notes":"Initial submission"}"#;

/// Most ids kept from the warm-up for the GET phase.
const MAX_IDS: usize = 20_000;

/// What one load run does.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub api_key: Option<String>,
    pub connections: usize,
    /// POSTs whose ids the GET phase reads; not measured.
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second over all connections; `None`: as fast as answers come.
    pub post_rate: Option<f64>,
    pub get_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Post,
    Get,
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub phase: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub histogram: Histogram<u64>,
    pub rate: Option<f64>,
}

impl PhaseResult {
    pub fn to_json(&self) -> Value {
        let us = |q: f64| self.histogram.value_at_quantile(q);
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts are far below 2^52"
        )]
        let rps = self.requests as f64 / self.seconds;
        json!({
            "phase": self.phase,
            "rate": self.rate,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.seconds,
            "rps": rps,
            "p50_us": us(0.50),
            "p90_us": us(0.90),
            "p99_us": us(0.99),
            "max_us": self.histogram.max(),
        })
    }
}

/// Runs warm-up (POST, ids kept), then the POST phase, then the GET phase over the warm-up's ids.
pub async fn run(spec: &LoadSpec) -> Result<Vec<PhaseResult>, String> {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let warmup = phase(spec, Kind::Post, spec.warmup, None, Some(&ids), "warmup").await?;
    let ids: Arc<Vec<String>> = Arc::new(std::mem::take(
        &mut *ids.lock().map_err(|_| "ids lock poisoned")?,
    ));
    if ids.is_empty() {
        return Err("the warm-up created no record to read back".into());
    }
    let post = phase(
        spec,
        Kind::Post,
        spec.duration,
        spec.post_rate,
        None,
        "post",
    )
    .await?;
    let get = phase_get(spec, &ids).await?;
    Ok(vec![warmup, post, get])
}

async fn phase_get(spec: &LoadSpec, ids: &Arc<Vec<String>>) -> Result<PhaseResult, String> {
    let kind = Kind::Get;
    run_connections(
        spec,
        kind,
        spec.duration,
        spec.get_rate,
        None,
        Some(ids),
        "get",
    )
    .await
}

async fn phase(
    spec: &LoadSpec,
    kind: Kind,
    duration: Duration,
    rate: Option<f64>,
    keep_ids: Option<&Arc<Mutex<Vec<String>>>>,
    name: &'static str,
) -> Result<PhaseResult, String> {
    run_connections(spec, kind, duration, rate, keep_ids, None, name).await
}

struct Worker {
    index: usize,
    kind: Kind,
    deadline: Instant,
    started: Instant,
    /// Time between this connection's sends in rate mode.
    interval: Option<Duration>,
    api_key: Option<String>,
    keep_ids: Option<Arc<Mutex<Vec<String>>>>,
    read_ids: Option<Arc<Vec<String>>>,
}

struct WorkerResult {
    requests: u64,
    errors: u64,
    histogram: Histogram<u64>,
}

async fn run_connections(
    spec: &LoadSpec,
    kind: Kind,
    duration: Duration,
    rate: Option<f64>,
    keep_ids: Option<&Arc<Mutex<Vec<String>>>>,
    read_ids: Option<&Arc<Vec<String>>>,
    name: &'static str,
) -> Result<PhaseResult, String> {
    let mut connections = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        connections.push(
            Connection::open(spec.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", spec.addr))?,
        );
    }
    #[expect(clippy::cast_precision_loss, reason = "a connection count is small")]
    let interval = rate.map(|r| Duration::from_secs_f64(spec.connections as f64 / r));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| {
            let worker = Worker {
                index,
                kind,
                deadline,
                started,
                interval,
                api_key: spec.api_key.clone(),
                keep_ids: keep_ids.cloned(),
                read_ids: read_ids.cloned(),
            };
            tokio::spawn(drive(worker, connection, spec.connections))
        })
        .collect();
    let mut total = new_histogram();
    let (mut requests, mut errors) = (0, 0);
    for worker in workers {
        let result = worker.await.map_err(|e| format!("worker: {e}"))?;
        requests += result.requests;
        errors += result.errors;
        total
            .add(&result.histogram)
            .map_err(|e| format!("histogram: {e}"))?;
    }
    Ok(PhaseResult {
        phase: name,
        requests,
        errors,
        seconds: duration.as_secs_f64(),
        histogram: total,
        rate,
    })
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

async fn drive(worker: Worker, mut connection: Connection, connections: usize) -> WorkerResult {
    let mut histogram = new_histogram();
    let (mut requests, mut errors) = (0_u64, 0_u64);
    let body = Bytes::from_static(RECORD_BODY.as_bytes());
    // Spread the connections' schedules over one interval.
    let mut next_send = worker
        .interval
        .map(|interval| worker.started + interval.mul_f64(fraction(worker.index, connections)));
    let mut sent: u64 = 0;
    loop {
        let intended = match (next_send, worker.interval) {
            (Some(at), Some(interval)) => {
                if at >= worker.deadline {
                    break;
                }
                next_send = Some(at + interval);
                if Instant::now() >= at {
                    // Late because the server was slow to answer the previous request: that wait
                    // is the server's, so it counts.
                    at
                } else {
                    // Early: the timer's own lateness (up to a millisecond) is not the server's.
                    tokio::time::sleep_until(at).await;
                    Instant::now()
                }
            }
            _ => Instant::now(),
        };
        if intended >= worker.deadline {
            break;
        }
        let path;
        let (method, path, body) = match worker.kind {
            Kind::Post => (Method::POST, "/records", Some(body.clone())),
            Kind::Get => {
                let ids = worker.read_ids.as_deref().map_or(&[][..], Vec::as_slice);
                let at =
                    usize::try_from(sent).unwrap_or(0).wrapping_mul(connections) + worker.index;
                path = format!(
                    "/records/{}",
                    ids.get(at % ids.len().max(1)).map_or("", String::as_str)
                );
                (Method::GET, path.as_str(), None)
            }
        };
        sent += 1;
        let answer = connection
            .send(method, path, worker.api_key.as_deref(), body)
            .await;
        let done = Instant::now();
        if done > worker.deadline && worker.interval.is_none() {
            break; // Finished after the phase: not counted.
        }
        match answer {
            Ok((status, answer)) if status.is_success() => {
                requests += 1;
                let micros =
                    u64::try_from(done.duration_since(intended).as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
                if let Some(ids) = &worker.keep_ids
                    && let Some(id) = record_id(&answer)
                    && let Ok(mut ids) = ids.lock()
                    && ids.len() < MAX_IDS
                {
                    ids.push(id);
                }
            }
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                if connection.reopen().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    WorkerResult {
        requests,
        errors,
        histogram,
    }
}

#[expect(clippy::cast_precision_loss, reason = "connection indexes are small")]
fn fraction(index: usize, of: usize) -> f64 {
    index as f64 / of.max(1) as f64
}

/// The `"id"` of a created record's JSON.
fn record_id(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get("id")?.as_str().map(str::to_owned)
}

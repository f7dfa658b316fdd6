//! A bare HTTP/1.1 client for what oha cannot do: closed-loop POSTs that keep the ids they created
//! (the warm-up, whose ids the GET phase reads) or count the answers by status and check
//! `Retry-After` (the overload), the Azurite run's few requests, and blocking probes.
//! hyper's low-level client connection: no pool, no retries.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The body every `POST /records` sends: a valid record (the service stores it).
pub const RECORD_BODY: &str = r#"{"site_id":"site001","trial_phase":"II","submission_date":"2025-03-15","status":"pending","patient_count":42,"notes":"Initial submission"}"#;

/// Most ids a warm-up keeps for the GET phase.
const MAX_IDS: usize = 20_000;

/// How long a connection waits after a refusal (429/503) before its next request: the overload
/// is about what the service answers while flooded, not about honouring `Retry-After`.
pub const REFUSED_PAUSE: Duration = Duration::from_millis(10);

/// One keep-alive connection.
#[derive(Debug)]
pub struct Connection {
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

/// A whole answer: status, whether it had a `Retry-After` of at least one second, body.
pub type Answer = (u16, bool, Bytes);

/// Runs `work` on a current-thread runtime (the load generators' process is pinned to one core).
pub fn block_on<F: Future>(work: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    Ok(runtime.map_err(text)?.block_on(work))
}

/// An error's text: every failure of the harness ends as a message.
pub fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Self, String> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(text)?;
        stream.set_nodelay(true).map_err(text)?;
        let io = TokioIo::new(stream);
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(text)?;
        // Ends when either side closes; a failure shows up as the next request's error.
        tokio::spawn(connection);
        let host = addr.to_string();
        Ok(Self { host, sender })
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        let mut request = Request::builder().method(method).uri(path);
        request = request.header(header::HOST, &self.host);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = Full::new(body.unwrap_or_default());
        let request = request.body(body).map_err(text)?;
        self.sender.ready().await.map_err(text)?;
        let response = self.sender.send_request(request).await.map_err(text)?;
        let status = response.status().as_u16();
        let retry_after = response.headers().get(header::RETRY_AFTER);
        let seconds = retry_after.and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        let body = response.into_body().collect().await.map_err(text)?;
        Ok((status, seconds.is_some_and(|s| s >= 1), body.to_bytes()))
    }
}

/// A blocking `GET path` on a fresh connection: the status and the body, or `None` while nothing
/// answers (a server that is starting; `/metrics`, whose answer has a length, not chunks).
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
    let status = answer.get(9..12)?.parse().ok()?;
    let (_, body) = answer.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

/// What closed-loop POSTs saw (the JSON line of `harness post`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Level {
    pub connections: usize,
    pub seconds: f64,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// 429/503 answers without a `Retry-After` of at least one second.
    pub missing_retry_after: u64,
    /// Requests without an answer (connection refused, reset, closed).
    pub errors: u64,
    /// The 201s' latency quantiles, in µs.
    pub created_p50_us: u64,
    pub created_p99_us: u64,
}

impl Level {
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// `connections` connections posting [`RECORD_BODY`] in a closed loop for `duration` (answers
/// after it are not counted). The level and, with `keep_ids`, the first [`MAX_IDS`] ids created.
pub fn post_loop(
    addr: SocketAddr,
    key: &str,
    connections: usize,
    duration: Duration,
    keep_ids: bool,
) -> Result<(Level, Vec<String>), String> {
    let mut total = Level {
        connections,
        seconds: duration.as_secs_f64(),
        ..Level::default()
    };
    let (mut created_us, mut ids) = (Vec::new(), Vec::new());
    block_on(async {
        let deadline = Instant::now() + duration;
        let loops = (0..connections).map(|_| post_until(addr, key.to_owned(), deadline, keep_ids));
        let workers: Vec<_> = loops.map(tokio::spawn).collect();
        for worker in workers {
            let (level, latencies, kept) = worker.await.map_err(text)?;
            for (status, count) in level.statuses {
                *total.statuses.entry(status).or_default() += count;
            }
            total.missing_retry_after += level.missing_retry_after;
            total.errors += level.errors;
            created_us.extend(latencies);
            ids.extend(kept);
        }
        Ok::<_, String>(())
    })??;
    created_us.sort_unstable();
    let at = |q: usize| (created_us.len() * q / 100).min(created_us.len().saturating_sub(1));
    total.created_p50_us = created_us.get(at(50)).copied().unwrap_or(0);
    total.created_p99_us = created_us.get(at(99)).copied().unwrap_or(0);
    ids.truncate(MAX_IDS);
    Ok((total, ids))
}

/// One connection's closed loop: its counts, each 201's latency in µs, the ids it kept.
async fn post_until(
    addr: SocketAddr,
    key: String,
    deadline: Instant,
    keep_ids: bool,
) -> (Level, Vec<u64>, Vec<String>) {
    let (mut level, mut created_us, mut ids) = (Level::default(), Vec::new(), Vec::new());
    let body = Bytes::from_static(RECORD_BODY.as_bytes());
    let mut connection = Connection::open(addr).await.ok();
    while Instant::now() < deadline {
        let Some(client) = connection.as_mut() else {
            level.errors += 1;
            tokio::time::sleep(REFUSED_PAUSE).await;
            connection = Connection::open(addr).await.ok();
            continue;
        };
        let sent = Instant::now();
        let request = client.send(Method::POST, "/records", Some(&key), Some(body.clone()));
        let answer = request.await;
        let done = Instant::now();
        if done > deadline {
            break;
        }
        let Ok((status, retry_after, body)) = answer else {
            level.errors += 1;
            connection = Connection::open(addr).await.ok();
            continue;
        };
        *level.statuses.entry(status).or_default() += 1;
        if status == 201 {
            created_us.push(u64::try_from((done - sent).as_micros()).unwrap_or(u64::MAX));
            if keep_ids && ids.len() < MAX_IDS {
                let created: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                ids.extend(created["id"].as_str().map(str::to_owned));
            }
        } else if status == 429 || status == 503 {
            level.missing_retry_after += u64::from(!retry_after);
            tokio::time::sleep(REFUSED_PAUSE).await;
        }
    }
    (level, created_us, ids)
}

//! The overload phase (issue 16): the service (standalone, embedded store, API-key auth on, the
//! default host.json: `maxConcurrentRequests` 64, `maxOutstandingRequests` 256) driven by 32, then
//! 512 keep-alive connections posting records in a closed loop. A refused request (429 or 503)
//! is counted, its `Retry-After` checked, and its connection goes on after [`REFUSED_PAUSE`]
//! (not after `Retry-After`: the phase is about what the service answers while it is flooded).
//! Reported: the answers by status, the refusals without `Retry-After`, and the p50/p99 latency
//! of the 201s (latency of admitted requests under overload).
//!
//! - `loadgen overload --addr HOST:PORT --connections N [--duration-ms D] [--api-key K]`: one
//!   level against a running server (one JSON line).
//! - [`section`]: both levels against fresh servers, for `loadgen bench`: its report section.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::probe;
use crate::load::RECORD_BODY;
use crate::runner::{free_addr, pinned, without_service_settings};
use crate::{Args, emit};

/// The connection counts of the phase: the saturation benchmark's, then the overload.
pub const LEVELS: [usize; 2] = [32, 512];

/// How long a connection waits after a refusal before its next request.
const REFUSED_PAUSE: Duration = Duration::from_millis(10);

/// What one connection saw.
struct Tally {
    created: u64,
    too_many: u64,
    unavailable: u64,
    other: u64,
    /// 429/503 answers without a `Retry-After` of at least one second.
    missing_retry_after: u64,
    /// Requests without an answer (connection reset, refused, closed).
    errors: u64,
    /// Latency of the 201s, in µs.
    created_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            created: 0,
            too_many: 0,
            unavailable: 0,
            other: 0,
            missing_retry_after: 0,
            errors: 0,
            created_us: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| {
                Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
            }),
        }
    }

    fn add(&mut self, other: &Self) -> Result<(), String> {
        self.created += other.created;
        self.too_many += other.too_many;
        self.unavailable += other.unavailable;
        self.other += other.other;
        self.missing_retry_after += other.missing_retry_after;
        self.errors += other.errors;
        self.created_us
            .add(&other.created_us)
            .map_err(|e| format!("histogram: {e}"))
    }
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(sender)
}

/// One connection's closed loop until `deadline`.
async fn drive(addr: SocketAddr, api_key: Option<String>, deadline: Instant) -> Tally {
    let mut tally = Tally::new();
    let host = addr.to_string();
    let mut sender = connect(addr).await;
    while Instant::now() < deadline {
        let Some(client) = sender.as_mut() else {
            tally.errors += 1;
            tokio::time::sleep(REFUSED_PAUSE).await;
            sender = connect(addr).await;
            continue;
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/records")
            .header(header::HOST, &host)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = &api_key {
            request = request.header("x-api-key", key);
        }
        let Ok(request) = request.body(Full::new(Bytes::from_static(RECORD_BODY.as_bytes())))
        else {
            tally.errors += 1;
            break;
        };
        let sent = Instant::now();
        let answer = async {
            client.ready().await?;
            let response = client.send_request(request).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|s| s >= 1);
            // Read the whole answer so the connection can carry the next request.
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, retry_after))
        }
        .await;
        let done = Instant::now();
        if done > deadline {
            break; // Answered after the phase: not counted.
        }
        match answer {
            Ok((201, _)) => {
                tally.created += 1;
                let micros =
                    u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                tally.created_us.saturating_record(micros.max(1));
            }
            Ok((status @ (429 | 503), retry_after)) => {
                if status == 429 {
                    tally.too_many += 1;
                } else {
                    tally.unavailable += 1;
                }
                if !retry_after {
                    tally.missing_retry_after += 1;
                }
                tokio::time::sleep(REFUSED_PAUSE).await;
            }
            Ok(_) => tally.other += 1,
            Err(_) => {
                tally.errors += 1;
                sender = connect(addr).await;
            }
        }
    }
    tally
}

/// `loadgen overload`: one level against a running server; prints one JSON line.
pub fn command(args: &Args) -> Result<(), String> {
    let addr: SocketAddr = args
        .string("addr")
        .ok_or("--addr is required")?
        .parse()
        .map_err(|e| format!("--addr: {e}"))?;
    let connections: usize = args.number("connections", 512)?;
    let duration = Duration::from_millis(args.number("duration-ms", 5000)?);
    let api_key = args.string("api-key").map(str::to_owned);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let total = runtime.block_on(async {
        let deadline = Instant::now() + duration;
        let workers: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(drive(addr, api_key.clone(), deadline)))
            .collect();
        let mut total = Tally::new();
        for worker in workers {
            total.add(&worker.await.map_err(|e| format!("worker: {e}"))?)?;
        }
        Ok::<_, String>(total)
    })?;
    let us = |q: f64| total.created_us.value_at_quantile(q);
    emit(
        &json!({
            "phase": "overload",
            "connections": connections,
            "seconds": duration.as_secs_f64(),
            "created": total.created,
            "too_many_requests": total.too_many,
            "unavailable": total.unavailable,
            "other": total.other,
            "missing_retry_after": total.missing_retry_after,
            "errors": total.errors,
            "created_p50_us": us(0.50),
            "created_p99_us": us(0.99),
            "created_max_us": total.created_us.max(),
        })
        .to_string(),
    );
    Ok(())
}

/// A service started for one level, killed on drop.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
/// The API key of the services this phase starts.
const API_KEY: &str = "overload-bench-key-0123456789";

/// Runs both [`LEVELS`] (the service pinned to `server_cpu`, the load to `load_cpu`) and renders
/// the report section. The service is the `handler` next to this binary.
pub fn section(
    smoke: bool,
    server_cpu: Option<u32>,
    load_cpu: Option<u32>,
) -> Result<String, String> {
    let loadgen = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let handler = loadgen.with_file_name("handler");
    let keys = tempfile::NamedTempFile::new().map_err(|e| format!("key file: {e}"))?;
    std::fs::write(keys.path(), format!("{API_KEY}\n")).map_err(|e| format!("key file: {e}"))?;
    let levels = run(
        &handler,
        &loadgen,
        keys.path(),
        smoke,
        (server_cpu, load_cpu),
    )?;
    render(&levels)
}

/// Runs both [`LEVELS`], each against a fresh service; the JSON line of each.
fn run(
    handler: &Path,
    loadgen: &Path,
    key_file: &Path,
    smoke: bool,
    cpus: (Option<u32>, Option<u32>),
) -> Result<Vec<Value>, String> {
    let api_key = API_KEY;
    let duration_ms = if smoke { "500" } else { "5000" };
    let mut levels = Vec::new();
    for connections in LEVELS {
        let addr = free_addr()?;
        let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let mut command = pinned(handler, cpus.0);
        // host.json's limits as shipped.
        without_service_settings(&mut command);
        let mut service = Service(
            command
                .env("MEDIFLOW_ADDR", addr.to_string())
                .env("MEDIFLOW_DATA_DIR", data.path())
                .env("MEDIFLOW_API_KEYS_FILE", key_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("start {}: {e}", handler.display()))?,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while probe(addr, "/ready") != Some(200) {
            if let Ok(Some(status)) = service.0.try_wait() {
                return Err(format!("the service exited at start: {status}"));
            }
            if std::time::Instant::now() > deadline {
                return Err("the service was not ready within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = pinned(loadgen, cpus.1)
            .args(["overload", "--addr", &addr.to_string(), "--connections"])
            .arg(connections.to_string())
            .args(["--duration-ms", duration_ms, "--api-key", api_key])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run loadgen overload: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "loadgen overload failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().ok_or("loadgen overload: no output")?;
        let level: Value =
            serde_json::from_str(line).map_err(|e| format!("overload output `{line}`: {e}"))?;
        eprintln!("bench: overload: {level}");
        drop(service);
        levels.push(level);
    }
    Ok(levels)
}

/// The overload section (appended to the report, after a blank line).
fn render(levels: &[Value]) -> Result<String, String> {
    use std::fmt::Write as _;
    let mut out = String::from("\n");
    let _ = writeln!(
        out,
        "Overload (issue 16): standalone service, embedded store, auth on, host.json as shipped (maxConcurrentRequests 64, maxOutstandingRequests 256); each connection posts records in a closed loop, pausing {} ms after a refusal.",
        REFUSED_PAUSE.as_millis()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| connections | seconds | 201 | 429 | 503 | other | refused without Retry-After | no answer | 201 p50 | 201 p99 |"
    );
    let _ = writeln!(
        out,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut deliberate = true;
    for level in levels {
        deliberate &= ["other", "missing_retry_after", "errors"]
            .iter()
            .all(|name| level[*name].as_u64() == Some(0));
        let count = |name: &str| {
            level[name]
                .as_u64()
                .ok_or_else(|| format!("overload output has no `{name}`: {level}"))
        };
        let ms = |name: &str| {
            level[name]
                .as_f64()
                .map(|us| us / 1000.0)
                .ok_or_else(|| format!("overload output has no `{name}`: {level}"))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} ms | {:.2} ms |",
            count("connections")?,
            level["seconds"],
            count("created")?,
            count("too_many_requests")?,
            count("unavailable")?,
            count("other")?,
            count("missing_retry_after")?,
            count("errors")?,
            ms("created_p50_us")?,
            ms("created_p99_us")?,
        );
    }
    let _ = writeln!(
        out,
        "\nEvery answer 201, or 429/503 with `Retry-After`, none unanswered: {}.",
        if deliberate { "yes" } else { "NO" }
    );
    Ok(out)
}

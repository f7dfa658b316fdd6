//! The batch path end to end through Azurite (the Storage emulator in `tests/emulators`):
//! `POST /batches` → the service puts the message on `mediflow-batches` → its own queue trigger
//! receives, ingests (durable embedded store) and deletes it → `GET /batches/{id}` says
//! `completed`. Records/s from the first POST to the last completed report. The service runs as
//! in production, including host.json's queue polling settings.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::http::{Connection, probe};

const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public, documented by Microsoft).
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const QUEUE: &str = "mediflow-batches";
/// Concurrent submitters.
const SUBMITTERS: usize = 4;

fn emulators_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/emulators"
    ))
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("free port: {e}"))
}

/// `None` (with a notice) when Azurite is not installed.
pub fn run(
    handler: &Path,
    key_file: &Path,
    api_key: &str,
    records: usize,
    batches: usize,
) -> Result<Option<Value>, String> {
    let bin = emulators_dir().join("node_modules/.bin/azurite-queue");
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node || !bin.exists() {
        eprintln!("bench: SKIP Azurite end to end: needs node and `npm ci` in tests/emulators");
        return Ok(None);
    }
    let location = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let queue_addr = free_addr()?;
    let _azurite = Killed(
        Command::new(&bin)
            .args(["--queueHost", "127.0.0.1", "--queuePort"])
            .arg(queue_addr.port().to_string())
            .args(["--silent", "--skipApiVersionCheck", "--location"])
            .arg(location.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start azurite: {e}"))?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(queue_addr).is_err() {
        if Instant::now() > deadline {
            return Err("Azurite did not listen within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};QueueEndpoint=http://{queue_addr}/{ACCOUNT}"
    );
    let service_url = handler::queue::connection::connection_service_url(
        &handler::secret::Secret::new(connection.clone()),
    )
    .map_err(|e| format!("SAS: {e}"))?;
    let create_path = format!(
        "{}/{QUEUE}?{}",
        service_url.path().trim_end_matches('/'),
        service_url.query().unwrap_or_default()
    );

    let addr = free_addr()?;
    let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut command = Command::new(handler);
    for (name, _) in std::env::vars() {
        if name.starts_with("MEDIFLOW_")
            || name.starts_with("FUNCTIONS_")
            || name.starts_with("AzureFunctionsJobHost")
            || name == "RUST_LOG"
        {
            command.env_remove(name);
        }
    }
    let mut service = Killed(
        command
            .env("MEDIFLOW_ADDR", addr.to_string())
            .env("MEDIFLOW_DATA_DIR", data.path())
            .env("MEDIFLOW_API_KEYS_FILE", key_file)
            .env("MEDIFLOW_QUEUE", &connection)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", handler.display()))?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while probe(addr, "/ready") != Some(200) {
        if let Ok(Some(status)) = service.0.try_wait() {
            return Err(format!("the service exited at start: {status}"));
        }
        if Instant::now() > deadline {
            return Err("the service was not ready within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let elapsed = submit_and_wait(queue_addr, &create_path, addr, api_key, records, batches)?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "record counts are far below 2^52"
    )]
    let records_per_s = (records * batches) as f64 / elapsed.as_secs_f64();
    Ok(Some(json!({
        "bench": "azurite",
        "batches": batches,
        "records_per_batch": records,
        "seconds": elapsed.as_secs_f64(),
        "records_per_s": records_per_s,
    })))
}

/// Creates the queue, submits the batches from [`SUBMITTERS`] connections, and waits until every
/// report is `completed`; the time from the first POST.
fn submit_and_wait(
    queue_addr: SocketAddr,
    create_path: &str,
    addr: SocketAddr,
    api_key: &str,
    records: usize,
    batches: usize,
) -> Result<Duration, String> {
    let bodies: Vec<(String, Bytes)> = (0..batches)
        .map(|_| {
            let bytes = crate::inprocess::batch_message(records);
            let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let id = value["batch_id"].as_str().unwrap_or_default().to_owned();
            (id, Bytes::from(bytes))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let mut queue = Connection::open(queue_addr)
            .await
            .map_err(|e| format!("Azurite: {e}"))?;
        let (status, _) = queue
            .send(Method::PUT, create_path, None, None)
            .await
            .map_err(|e| format!("create queue: {e}"))?;
        if !status.is_success() {
            return Err(format!("create queue: {status}"));
        }
        let started = Instant::now();
        let mut submitters = Vec::new();
        for part in bodies.chunks(bodies.len().div_ceil(SUBMITTERS).max(1)) {
            let part = part.to_vec();
            let api_key = api_key.to_owned();
            submitters.push(tokio::spawn(async move {
                let mut connection = Connection::open(addr).await.map_err(|e| e.to_string())?;
                for (_, body) in part {
                    let (status, answer) = connection
                        .send(Method::POST, "/batches", Some(&api_key), Some(body))
                        .await
                        .map_err(|e| e.to_string())?;
                    if status.as_u16() != 202 {
                        return Err(format!(
                            "POST /batches: {status} {}",
                            String::from_utf8_lossy(&answer)
                        ));
                    }
                }
                Ok::<(), String>(())
            }));
        }
        for submitter in submitters {
            submitter.await.map_err(|e| e.to_string())??;
        }
        let mut poller = Connection::open(addr).await.map_err(|e| e.to_string())?;
        let mut pending: Vec<&str> = bodies.iter().map(|(id, _)| id.as_str()).collect();
        let deadline = Instant::now() + Duration::from_secs(600);
        while let Some(id) = pending.last().copied() {
            let (status, answer) = poller
                .send(Method::GET, &format!("/batches/{id}"), Some(api_key), None)
                .await
                .map_err(|e| e.to_string())?;
            let report: Value = serde_json::from_slice(&answer).unwrap_or_default();
            if status.is_success() && report["status"] == "completed" {
                if report["accepted"].as_u64() != u64::try_from(records).ok() {
                    return Err(format!("batch {id}: {report}"));
                }
                pending.pop();
                continue;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} batch(es) not completed within 600 s",
                    pending.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(started.elapsed())
    })
}

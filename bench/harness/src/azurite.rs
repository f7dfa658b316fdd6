//! The batch path end to end through Azurite (the Storage emulator in `tests/emulators`):
//! `POST /batches` → the service puts the message on `mediflow-batches` → its own queue trigger
//! receives, ingests (durable embedded store) and deletes it → `GET /batches/{id}` says
//! `completed`. Records/s from the first POST until every report is completed. The service runs
//! as in production, host.json's queue polling settings included; unpinned (Azurite is a node
//! process).

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use crate::client::Connection;
use crate::servers::{self, API_KEY, Binaries, Target};

/// Azurite's well-known development account and key (public, documented by Microsoft).
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Concurrent submitters.
const SUBMITTERS: usize = 4;

#[derive(Debug)]
pub struct EndToEnd {
    pub batches: usize,
    pub records_per_s: f64,
}

/// Azurite's start-up line: "... successfully listens on http://127.0.0.1:PORT".
fn azurite_addr(line: &str) -> Option<SocketAddr> {
    let (_, port) = line.split_once("successfully listens on http://127.0.0.1:")?;
    format!("127.0.0.1:{}", port.trim()).parse().ok()
}

/// `None` (with a notice) when Azurite is not installed.
pub fn run(bins: &Binaries, batches: usize) -> Result<Option<EndToEnd>, String> {
    let bin = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/emulators/node_modules/.bin/"
    );
    let bin = format!("{bin}azurite-queue");
    if !std::path::Path::new(&bin).exists() || Command::new("node").arg("-v").output().is_err() {
        eprintln!("bench: SKIP Azurite end to end: needs node and `npm ci` in tests/emulators");
        return Ok(None);
    }
    let location = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut azurite = Command::new(&bin);
    azurite
        .args(["--queueHost", "127.0.0.1", "--queuePort", "0", "--silent"])
        .args(["--skipApiVersionCheck", "--disableTelemetry", "--location"])
        .arg(location.path());
    let (_azurite, queue_addr) = servers::spawn_listening(&mut azurite, azurite_addr)?;
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};QueueEndpoint=http://{queue_addr}/{ACCOUNT}"
    );
    let secret = handler::secret::Secret::new(connection.clone());
    let url = handler::queue::connection::connection_service_url(&secret)
        .map_err(|e| format!("SAS: {e}"))?;
    let (path, query) = (
        url.path().trim_end_matches('/'),
        url.query().unwrap_or_default(),
    );
    let create = format!("{path}/mediflow-batches?{query}");
    let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut service = bins.command(Target::Service, data.path(), None);
    service.env("MEDIFLOW_QUEUE", &connection);
    let (mut service, addr) = servers::spawn_listening(&mut service, servers::listening_addr)?;
    servers::wait_for_200(&mut service, addr, "/ready")?;
    let elapsed = crate::client::block_on(submit_and_wait(queue_addr, &create, addr, batches))??;
    #[expect(
        clippy::cast_precision_loss,
        reason = "record counts are far below 2^52"
    )]
    let records_per_s = (harness::RECORDS_PER_BATCH * batches) as f64 / elapsed.as_secs_f64();
    Ok(Some(EndToEnd {
        batches,
        records_per_s,
    }))
}

/// Creates the queue, submits the batches from [`SUBMITTERS`] connections, and waits until every
/// report is `completed` with every record accepted; the time from the first POST.
async fn submit_and_wait(
    queue: SocketAddr,
    create: &str,
    addr: SocketAddr,
    batches: usize,
) -> Result<Duration, String> {
    let (status, ..) = Connection::open(queue)
        .await?
        .send(Method::PUT, create, None, None)
        .await?;
    if !(200..300).contains(&status) {
        return Err(format!("create queue: {status}"));
    }
    let messages: Vec<Bytes> = (0..batches)
        .map(|_| harness::batch_message(harness::RECORDS_PER_BATCH).into())
        .collect();
    let started = Instant::now();
    let mut submitters = Vec::new();
    for part in messages.chunks(batches.div_ceil(SUBMITTERS).max(1)) {
        let part = part.to_vec();
        submitters.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await?;
            for message in part {
                let (status, _, body) = connection
                    .send(Method::POST, "/batches", Some(API_KEY), Some(message))
                    .await?;
                if status != 202 {
                    return Err(format!(
                        "POST /batches: {status} {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
            Ok::<(), String>(())
        }));
    }
    for submitter in submitters {
        submitter.await.map_err(crate::client::text)??;
    }
    let mut poller = Connection::open(addr).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    for message in &messages {
        let message: Value = serde_json::from_slice(message).unwrap_or_default();
        let path = format!(
            "/batches/{}",
            message["batch_id"].as_str().unwrap_or_default()
        );
        loop {
            let (status, _, body) = poller.send(Method::GET, &path, Some(API_KEY), None).await?;
            let report: Value = serde_json::from_slice(&body).unwrap_or_default();
            if status == 200 && report["status"] == "completed" {
                if report["accepted"] != harness::RECORDS_PER_BATCH {
                    return Err(format!("{path}: {report}"));
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{path} not completed within 600 s"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(started.elapsed())
}

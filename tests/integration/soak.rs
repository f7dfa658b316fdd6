//! A bounded soak: mixed load (records with and without `Idempotency-Key`, replays, invalid
//! bodies, reads, batches, health, readiness, unauthenticated calls) against the standalone
//! binary with auth on, for a fixed time. Passes when every answer is the expected one (no 5xx,
//! no connection error), every acknowledged record and batch reads back as acknowledged, and the
//! process's RSS stays flat after warm-up.
//!
//! "Flat" allows for the data: the embedded store keeps what it wrote in its memtables and block
//! cache, which the handler caps at `handler::store::embedded::MEMORY_BYTES` (8 MiB: redb cache + pending map), so RSS may
//! grow by the data directory's growth after warm-up up to that cap, plus a margin. Memory kept
//! per request (a leak) exceeds that; the store's bounded memory cannot.
//!
//! `soak_10_seconds` runs in the test command; the minute-long run is `scripts/soak.sh [seconds]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{App, AppOptions};

const KEY: &str = "soak-key";
/// Concurrent clients.
const WORKERS: u64 = 6;
/// RSS after warm-up may exceed the value at warm-up end by the store file's growth (at most the
/// store's page cache) plus at most this much...
const RSS_GROWTH_BYTES: u64 = 5 * 1024 * 1024;
/// ...or this fraction of the warm-up value, whichever is larger.
const RSS_GROWTH_FRACTION: f64 = 0.20;

/// What one run did.
#[derive(Debug, Default)]
struct Outcome {
    requests: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// (id, the stored record as the 201 returned it).
    records: Mutex<Vec<(String, Value)>>,
    /// (idempotency key, body, id).
    keyed: Mutex<Vec<(String, Value, String)>>,
    batches: Mutex<Vec<String>>,
}

impl Outcome {
    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().expect("failures");
        if failures.len() < 20 {
            failures.push(what);
        }
    }
}

/// A small deterministic generator per worker (no dependency, reproducible mixes).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or_default()
    }
}

fn record(rng: &mut XorShift) -> Value {
    let phase = ["I", "II", "III", "IV"][rng.below(4)];
    let status = ["pending", "validated", "rejected"][rng.below(3)];
    json!({
        "site_id": format!("site{:04}", rng.next() % 10_000),
        "trial_phase": phase,
        "submission_date": format!("2025-{:02}-{:02}", 1 + rng.next() % 12, 1 + rng.next() % 28),
        "status": status,
        "patient_count": 1 + rng.next() % 10_000,
        "notes": "x".repeat(rng.below(200)),
    })
}

fn random_item<T: Clone>(list: &Mutex<Vec<T>>, rng: &mut XorShift) -> Option<T> {
    let list = list.lock().expect("list");
    (!list.is_empty()).then(|| list[rng.below(list.len())].clone())
}

/// One request of the mix; `Err` says what was wrong with the answer.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per kind of request in the mix"
)]
async fn one_request(
    app: &App,
    client: &reqwest::Client,
    outcome: &Outcome,
    rng: &mut XorShift,
) -> Result<(), String> {
    let post_record = |body: &Value| {
        client
            .post(app.url("/records"))
            .header("x-api-key", KEY)
            .json(body)
    };
    let expect = |response: &reqwest::Response, status: StatusCode| {
        if response.status() == status {
            Ok(())
        } else {
            Err(format!(
                "{} {}: {} (expected {status})",
                response.url().path(),
                response.status(),
                status
            ))
        }
    };
    let send = |request: reqwest::RequestBuilder| async move {
        request.send().await.map_err(|e| format!("connection: {e}"))
    };
    match rng.below(20) {
        0..=5 => {
            let response = send(post_record(&record(rng))).await?;
            expect(&response, StatusCode::CREATED)?;
            let stored: Value = response.json().await.map_err(|e| e.to_string())?;
            let id = stored["id"].as_str().unwrap_or_default().to_owned();
            outcome.records.lock().expect("records").push((id, stored));
        }
        6 | 7 => {
            let key = uuid::Uuid::new_v4().to_string();
            let body = record(rng);
            let response = send(post_record(&body).header("idempotency-key", &key)).await?;
            expect(&response, StatusCode::CREATED)?;
            let stored: Value = response.json().await.map_err(|e| e.to_string())?;
            let id = stored["id"].as_str().unwrap_or_default().to_owned();
            outcome
                .keyed
                .lock()
                .expect("keyed")
                .push((key, body, id.clone()));
            outcome.records.lock().expect("records").push((id, stored));
        }
        8 => {
            let Some((key, body, id)) = random_item(&outcome.keyed, rng) else {
                return Ok(());
            };
            let response = send(post_record(&body).header("idempotency-key", &key)).await?;
            expect(&response, StatusCode::CREATED)?;
            let replayed = response.headers().contains_key("idempotent-replayed");
            let stored: Value = response.json().await.map_err(|e| e.to_string())?;
            if !replayed || stored["id"] != id.as_str() {
                return Err(format!(
                    "replay of {key} gave {stored} (replayed: {replayed})"
                ));
            }
        }
        9 => {
            let mut body = record(rng);
            body["patient_count"] = json!(0);
            let response = send(post_record(&body)).await?;
            expect(&response, StatusCode::UNPROCESSABLE_ENTITY)?;
        }
        10..=12 => {
            let Some((id, stored)) = random_item(&outcome.records, rng) else {
                return Ok(());
            };
            let request = client
                .get(app.url(&format!("/records/{id}")))
                .header("x-api-key", KEY);
            let response = send(request).await?;
            expect(&response, StatusCode::OK)?;
            let got: Value = response.json().await.map_err(|e| e.to_string())?;
            if got != stored {
                return Err(format!("GET /records/{id} gave {got}, stored {stored}"));
            }
        }
        13 => {
            let batch_id = uuid::Uuid::new_v4().to_string();
            let mut invalid = record(rng);
            invalid["trial_phase"] = json!("V");
            let body =
                json!({"batch_id": batch_id, "records": [record(rng), invalid, record(rng)]});
            let request = client
                .post(app.url("/batches"))
                .header("x-api-key", KEY)
                .json(&body);
            let response = send(request).await?;
            expect(&response, StatusCode::ACCEPTED)?;
            outcome.batches.lock().expect("batches").push(batch_id);
        }
        14 | 15 => {
            let Some(batch_id) = random_item(&outcome.batches, rng) else {
                return Ok(());
            };
            let request = client
                .get(app.url(&format!("/batches/{batch_id}")))
                .header("x-api-key", KEY);
            expect(&send(request).await?, StatusCode::OK)?;
        }
        16 => expect(&send(client.get(app.url("/health"))).await?, StatusCode::OK)?,
        17 => expect(&send(client.get(app.url("/ready"))).await?, StatusCode::OK)?,
        18 => {
            let request = client
                .get(app.url(&format!("/records/{}", uuid::Uuid::new_v4())))
                .header("x-api-key", KEY);
            expect(&send(request).await?, StatusCode::NOT_FOUND)?;
        }
        _ => {
            let request = client.post(app.url("/records")).json(&record(rng));
            expect(&send(request).await?, StatusCode::UNAUTHORIZED)?;
        }
    }
    Ok(())
}

/// One second's measurement of the server process.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: Duration,
    rss: u64,
    /// Size of the store file.
    stored: u64,
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of the files under `dir`, recursively.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| match entry.metadata() {
                Ok(m) if m.is_dir() => dir_size(&entry.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// Samples the server's RSS and data directory size every second until `deadline`.
fn sample_memory(
    app: &App,
    started: Instant,
    deadline: Instant,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    let pid = app.pid();
    let data_dir = app.data_dir.clone();
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        while Instant::now() < deadline {
            ticker.tick().await;
            let stored = dir_size(&data_dir);
            if let Some(rss) = rss_bytes(pid) {
                samples.push(Sample {
                    at: started.elapsed(),
                    rss,
                    stored,
                });
            }
        }
        samples
    })
}

/// After the load: how many acknowledged records are missing or changed, and how many batches
/// are not reported as completed with their 2 accepted and 1 rejected records.
async fn read_back(app: &App, outcome: &Outcome) -> (usize, usize) {
    let client = reqwest::Client::new();
    let records = outcome.records.lock().expect("records").clone();
    let lost = futures::stream::iter(records.iter())
        .map(|(id, stored)| {
            let request = client
                .get(app.url(&format!("/records/{id}")))
                .header("x-api-key", KEY);
            async move {
                match request.send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        r.json::<Value>().await.ok().as_ref() != Some(stored)
                    }
                    _ => true,
                }
            }
        })
        .buffer_unordered(16)
        .filter(|lost| std::future::ready(*lost))
        .count()
        .await;
    let batch_ids = outcome.batches.lock().expect("batches").clone();
    let mut wrong = 0;
    for batch_id in &batch_ids {
        let report: Option<Value> = async {
            client
                .get(app.url(&format!("/batches/{batch_id}")))
                .header("x-api-key", KEY)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        let complete = report.is_some_and(|r| {
            r["status"] == "completed" && r["accepted"] == 2 && r["rejected"] == 1
        });
        wrong += usize::from(!complete);
    }
    (lost, wrong)
}

/// RSS at warm-up end, its peak after, and the bound the peak must stay within.
#[derive(Debug)]
struct RssVerdict {
    at_warm_up: u64,
    peak: u64,
    allowed: u64,
    store_growth: u64,
    samples_after: usize,
}

#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a memory bound in bytes; precision to the byte is irrelevant"
)]
fn judge_rss(samples: &[Sample], warm_up: Duration) -> RssVerdict {
    let at_warm_up = samples
        .iter()
        .rfind(|s| s.at <= warm_up)
        .copied()
        .unwrap_or_default();
    let after: Vec<Sample> = samples.iter().filter(|s| s.at > warm_up).copied().collect();
    let peak = after.iter().map(|s| s.rss).max().unwrap_or_default();
    let cache = u64::try_from(handler::store::embedded::MEMORY_BYTES).unwrap_or(u64::MAX);
    let store_growth = after
        .iter()
        .map(|s| s.stored)
        .max()
        .unwrap_or_default()
        .saturating_sub(at_warm_up.stored)
        .min(cache);
    let margin = RSS_GROWTH_BYTES.max((at_warm_up.rss as f64 * RSS_GROWTH_FRACTION) as u64);
    RssVerdict {
        at_warm_up: at_warm_up.rss,
        peak,
        allowed: at_warm_up.rss + store_growth + margin,
        store_growth,
        samples_after: after.len(),
    }
}

#[expect(clippy::cast_precision_loss, reason = "for display")]
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// Runs the mix for `duration`; RSS is judged from `warm_up` on.
async fn soak(duration: Duration, warm_up: Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("api-keys");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("write keys");
    let app = Arc::new(
        App::start(
            AppOptions::default()
                .env("MEDIFLOW_API_KEYS_FILE", key_file.display().to_string())
                .env("RUST_LOG", "warn"),
        )
        .await,
    );
    let outcome = Arc::new(Outcome::default());
    let started = Instant::now();
    let deadline = started + duration;
    let memory = sample_memory(&app, started, deadline);
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (app, outcome) = (Arc::clone(&app), Arc::clone(&outcome));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (worker + 1));
                while Instant::now() < deadline {
                    outcome.requests.fetch_add(1, Ordering::Relaxed);
                    if let Err(failure) = one_request(&app, &client, &outcome, &mut rng).await {
                        outcome.fail(failure);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let samples = memory.await.expect("sampler");
    let requests = outcome.requests.load(Ordering::Relaxed);
    let (lost, batches_wrong) = read_back(&app, &outcome).await;
    let rss = judge_rss(&samples, warm_up);
    let failures = outcome.failures.lock().expect("failures").clone();
    eprintln!(
        "soak: {}s, {requests} requests ({}/s), {} failures; {} records and {} batches checked \
         after the run: {lost} lost or changed, {batches_wrong} batches wrong; RSS at warm-up \
         end ({}s) {}, peak after {}, allowed {} (store file grew {}), last {}",
        duration.as_secs(),
        requests / duration.as_secs().max(1),
        failures.len(),
        outcome.records.lock().expect("records").len(),
        outcome.batches.lock().expect("batches").len(),
        warm_up.as_secs(),
        mib(rss.at_warm_up),
        mib(rss.peak),
        mib(rss.allowed),
        mib(rss.store_growth),
        mib(samples.last().map_or(0, |s| s.rss)),
    );
    let logs = app.logs().join("\n");
    assert!(failures.is_empty(), "unexpected answers: {failures:#?}");
    assert_eq!(lost, 0, "acknowledged records lost or changed");
    assert_eq!(batches_wrong, 0, "batches not reported as acknowledged");
    assert!(
        rss.at_warm_up > 0 && rss.samples_after > 0,
        "RSS was sampled: {samples:?}"
    );
    assert!(
        rss.peak <= rss.allowed,
        "RSS grew after warm-up: {rss:?} {samples:?}"
    );
    assert!(
        !logs.contains("\"level\":\"ERROR\"") && !logs.contains("panicked"),
        "the server logged an error:\n{logs}"
    );
}

/// The short soak in the test command: 10 s, RSS judged after 4 s.
#[tokio::test(flavor = "multi_thread")]
async fn soak_10_seconds() {
    soak(Duration::from_secs(10), Duration::from_secs(4)).await;
}

/// The long soak (`scripts/soak.sh [seconds]`; `MEDIFLOW_SOAK_SECS`, default 60): RSS judged
/// after the first third.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a minute or more of load: run by scripts/soak.sh"]
async fn soak_long() {
    let secs = std::env::var("MEDIFLOW_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_u64);
    soak(Duration::from_secs(secs), Duration::from_secs(secs / 3)).await;
}

//! Under pressure (issue 16): hostile input keeps memory bounded, overload is refused at once with
//! `Retry-After`, no request fails while the service starts, a dead store writer ends the process,
//! and auth fails closed. Real process, real sockets; each test bounded in time.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{App, AppOptions, Hosting, LogBook, valid_record};

/// The peak resident set (`VmHWM`) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// One raw HTTP/1.1 exchange on its own connection: the status and the `Retry-After` header.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<(u16, Option<String>)> {
    read_answer(send_raw(addr, request).await?).await
}

/// Connects and writes the whole request; the answer is read by [`read_answer`].
async fn send_raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    Ok(stream)
}

/// Reads a `connection: close` answer to its end: the status and the `Retry-After` header.
async fn read_answer(mut stream: tokio::net::TcpStream) -> std::io::Result<(u16, Option<String>)> {
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let retry_after = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_owned())
    });
    Ok((status, retry_after))
}

fn post_request(path: &str, body: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\nconnection: close\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn metrics_page(app: &App) -> String {
    reqwest::get(app.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text")
}

struct Keys {
    _dir: tempfile::TempDir,
    file: String,
}

const KEY: &str = "pressure-test-key";

fn key_file() -> Keys {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("{KEY}\n")).expect("write keys");
    Keys {
        file: file.display().to_string(),
        _dir: dir,
    }
}

/// The hostile mix, with auth on: 300 requests with distinct 60 KB methods and no key,
/// then 96 requests of ~1 MB invalid bodies with a key, 48 at a time. Every answer is a small
/// 4xx or a 503 with `Retry-After`, `/metrics` stays small, and the peak RSS stays bounded.
#[tokio::test]
async fn the_hostile_mix_keeps_memory_bounded() {
    /// The asserted bound on peak RSS (docs/hardening.md gives the formula; the pod limit is
    /// 256 MiB).
    const PEAK_RSS_BOUND_KIB: u64 = 160 * 1024;
    let keys = key_file();
    let app =
        App::start(AppOptions::default().env("MEDIFLOW_API_KEYS_FILE", keys.file.clone())).await;

    let methods = futures::future::join_all((0..300).map(|i| {
        let method = format!("{}{i:05}", "M".repeat(60_000));
        let request =
            format!("{method} /records HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
        async move { raw_exchange(app.addr, request.as_bytes()).await }
    }))
    .await;
    // The server may refuse so long a request line outright: any 4xx, or a closed connection.
    for (status, _) in methods.into_iter().flatten() {
        assert!(
            (400..500).contains(&status) || status == 0,
            "a hostile method got {status}"
        );
    }
    let metrics = metrics_page(&app).await;
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics grew to {} bytes",
        metrics.len()
    );
    assert!(!metrics.contains("MMMM"), "a client method became a label");

    let zeros = format!("{{\"x\":[{}0]}}", "0,".repeat(499_990));
    let fields = format!(
        "{{{}\"last\":0}}",
        (0..25_000).fold(String::new(), |mut out, i| {
            use std::fmt::Write as _;
            let _ = write!(out, "\"unknown_field_{i:06}\":0,");
            out
        })
    );
    assert!(zeros.len() <= 1024 * 1024 && fields.len() <= 1024 * 1024);
    let client = reqwest::Client::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..2 {
        let answers = futures::future::join_all((0..48).map(|i| {
            let body = if (i + round) % 2 == 0 {
                &zeros
            } else {
                &fields
            };
            client
                .post(app.url("/records"))
                .header("x-api-key", KEY)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
        }))
        .await;
        for answer in answers {
            let response = answer.expect("an answer");
            let status = response.status();
            let retry_after = response.headers().get("retry-after").cloned();
            let body = response.bytes().await.expect("body");
            assert!(
                body.len() <= 64 * 1024,
                "an error answer of {} bytes",
                body.len()
            );
            match status {
                StatusCode::UNPROCESSABLE_ENTITY => {}
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                    assert!(retry_after.is_some(), "{status} without Retry-After");
                }
                other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&body)),
            }
            *statuses.entry(status.as_u16()).or_default() += 1;
        }
    }
    let peak = peak_rss_kib(app.pid());
    eprintln!(
        "hostile mix: answers {statuses:?}, peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        statuses.get(&422).copied().unwrap_or(0) > 0,
        "some invalid bodies were judged: {statuses:?}"
    );
    assert!(
        peak < PEAK_RSS_BOUND_KIB,
        "peak RSS {peak} KiB is over the {PEAK_RSS_BOUND_KIB} KiB bound"
    );
    // Still serving.
    let created = client
        .post(app.url("/records"))
        .header("x-api-key", KEY)
        .json(&valid_record())
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), StatusCode::CREATED);
}

/// 512 connections each POST a record at the same moment: every answer is 201, or 429/503 with
/// `Retry-After`; the host.json limits (here lowered by the Functions host's app settings) shed
/// the excess at once.
#[tokio::test]
async fn an_overload_of_512_connections_is_answered_201_or_refused_with_retry_after() {
    let app = App::start(
        AppOptions::default()
            .env(
                "AzureFunctionsJobHost__extensions__http__maxConcurrentRequests",
                "16",
            )
            .env(
                "AzureFunctionsJobHost__extensions__http__maxOutstandingRequests",
                "64",
            ),
    )
    .await;
    let body = valid_record().to_string();
    let request = post_request("/records", &body, "");
    let answers =
        futures::future::join_all((0..512).map(|_| raw_exchange(app.addr, &request))).await;
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for answer in answers {
        let (status, retry_after) = answer.expect("every connection is answered");
        match status {
            201 => {}
            429 | 503 => assert!(
                retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)),
                "{status} without a Retry-After"
            ),
            other => panic!("unexpected status {other}"),
        }
        *counts.entry(status).or_default() += 1;
    }
    eprintln!("512 concurrent POSTs: {counts:?}");
    assert!(counts.get(&201).copied().unwrap_or(0) >= 16, "{counts:?}");
    let shed = app.get_json("/ready").await;
    assert_eq!(
        shed["status"], "ready",
        "the overload left the service ready"
    );
    let metrics = metrics_page(&app).await;
    let refused = counts.get(&429).copied().unwrap_or(0) + counts.get(&503).copied().unwrap_or(0);
    if refused > 0 {
        assert!(
            metrics.contains("mediflow_http_requests_shed_total"),
            "{metrics}"
        );
    }
}

/// Fills a store with `records` records (batches processed in-process), then kills the process.
async fn large_store(records: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut app = App::start(AppOptions::default().data_dir(&data)).await;
    let client = reqwest::Client::new();
    let per_batch = 250;
    let batches = records.div_ceil(per_batch);
    for chunk in (0..batches).collect::<Vec<_>>().chunks(8) {
        let sent = futures::future::join_all(chunk.iter().map(|_| {
            let records: Vec<Value> = (0..per_batch).map(|_| valid_record()).collect();
            client
                .post(app.url("/batches"))
                .json(&json!({ "batch_id": uuid::Uuid::new_v4(), "records": records }))
                .send()
        }))
        .await;
        for response in sent {
            assert_eq!(
                response.expect("POST /batches").status(),
                StatusCode::ACCEPTED
            );
        }
    }
    app.kill_hard();
    dir
}

/// Restarted after `kill -9` on a large store, in both hosting modes, with the store's opening
/// held back 3 s by fault injection (`MEDIFLOW_FAULT_DELAY_STORE_OPEN_MS`) so that the requests
/// provably arrive while it opens: 64 POSTs are written the moment the process listens, `/ready`
/// still answers 503 after all of them were sent, and every one answers 201 (admission waits for
/// the store). Under the Functions host the ping `GET /`, sent first, is answered only once the
/// store is open (`/ready` 200 by then), as the host needs before it invokes anything.
#[tokio::test]
async fn a_restart_on_a_large_store_fails_no_request() {
    const OPEN_DELAY_MS: &str = "3000";
    let dir = large_store(20_000).await;
    let data = dir.path().join("data");
    for hosting in [Hosting::Standalone, Hosting::CustomHandler] {
        // Returns as soon as the process reports that it listens, store open or not.
        let app = App::start(
            AppOptions::default()
                .hosting(hosting)
                .data_dir(&data)
                .env("MEDIFLOW_FAULT_DELAY_STORE_OPEN_MS", OPEN_DELAY_MS)
                .no_wait_ready(),
        )
        .await;
        let started = Instant::now();
        let ping = (hosting == Hosting::CustomHandler).then(|| {
            let url = app.url("/");
            tokio::spawn(async move { reqwest::get(url).await.expect("GET /").status() })
        });
        let request = post_request("/records", &valid_record().to_string(), "");
        let sent = futures::future::join_all((0..64).map(|_| send_raw(app.addr, &request))).await;
        let sent: Vec<_> = sent
            .into_iter()
            .map(|s| s.expect("connect and send"))
            .collect();
        let sent_after = started.elapsed();
        let ready_meanwhile = reqwest::get(app.url("/ready"))
            .await
            .expect("GET /ready")
            .status();
        assert_eq!(
            ready_meanwhile,
            StatusCode::SERVICE_UNAVAILABLE,
            "{hosting:?}: the store was still opening when all 64 requests had been sent"
        );
        if let Some(ping) = &ping {
            assert!(!ping.is_finished(), "the host's ping waits for the store");
        }
        let statuses: Vec<u16> = futures::future::join_all(sent.into_iter().map(read_answer))
            .await
            .into_iter()
            .map(|a| a.expect("answered").0)
            .collect();
        let created = statuses.iter().filter(|s| **s == 201).count();
        if let Some(ping) = ping {
            assert_eq!(ping.await.expect("ping task"), StatusCode::OK);
            let ready = reqwest::get(app.url("/ready")).await.expect("GET /ready");
            assert_eq!(
                ready.status(),
                StatusCode::OK,
                "the ping answered once the store was open"
            );
        }
        eprintln!(
            "{hosting:?} restart on 20,000 records (kill -9 before, store opening delayed {OPEN_DELAY_MS} ms): 64 POSTs sent within {sent_after:?} while /ready said 503; {created}/64 created in {:?}",
            started.elapsed()
        );
        assert_eq!(created, 64, "{hosting:?}: {statuses:?}");
        drop(app);
    }
}

/// The store's writer thread is killed (fault injection): readiness fails and the process exits
/// with a non-zero code so that it is restarted.
#[tokio::test]
async fn a_dead_store_writer_fails_readiness_and_ends_the_process() {
    let mut app =
        App::start(AppOptions::default().env("MEDIFLOW_FAULT_KILL_WRITER_AFTER", "1")).await;
    let client = reqwest::Client::new();
    let first = client
        .post(app.url("/records"))
        .json(&valid_record())
        .send()
        .await
        .expect("POST");
    assert_eq!(
        first.status(),
        StatusCode::CREATED,
        "the first commit goes through"
    );
    let second = client
        .post(app.url("/records"))
        .json(&valid_record())
        .send()
        .await
        .expect("POST");
    assert_eq!(
        second.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the writer died on this one"
    );
    assert!(second.headers().contains_key("retry-after"));
    let status = app
        .wait_for_exit(Duration::from_secs(30))
        .await
        .expect("the process ends by itself");
    assert!(!status.success(), "non-zero exit: {status}");
    assert!(
        app.logs()
            .iter()
            .any(|l| l.contains("writer thread stopped")),
        "the reason is logged"
    );
}

/// How a start without keys ended.
enum Started {
    /// The process reported that it listens.
    Listening,
    /// The process exited first: its status and output.
    Exited(std::process::ExitStatus, String),
}

/// Runs the binary on port 0 with `env` (nothing inherited) until it reports that it listens, or
/// exits.
async fn start_without_keys(env: &[(&str, &str)]) -> Started {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, logs) = LogBook::spawn(
        Command::new(crate::support::binary())
            .env_clear()
            .env("MEDIFLOW_DATA_DIR", dir.path().join("data"))
            .envs(env.iter().copied()),
    );
    let listening = logs
        .wait_for(Duration::from_secs(20), |lines| {
            lines.iter().any(|l| l.contains("listening")).then_some(())
        })
        .await;
    if listening.is_some() {
        let _ = child.kill();
        let _ = child.wait();
        return Started::Listening;
    }
    // The output closed: the process is exiting.
    let status = child.wait().expect("exit status");
    Started::Exited(status, logs.lines().join("\n"))
}

#[tokio::test]
async fn without_keys_it_refuses_to_start_unless_on_loopback_or_told_so() {
    for (env, starts, what) in [
        (
            vec![("MEDIFLOW_ADDR", "0.0.0.0:0")],
            false,
            "every interface, no keys",
        ),
        (
            vec![("FUNCTIONS_CUSTOMHANDLER_PORT", "0")],
            false,
            "the Functions host, no keys",
        ),
        (
            vec![("MEDIFLOW_ADDR", "127.0.0.1:0")],
            true,
            "loopback standalone (the README's cargo run)",
        ),
        (
            vec![
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "0"),
                ("MEDIFLOW_AUTH", "off"),
            ],
            true,
            "the Functions host, MEDIFLOW_AUTH=off",
        ),
        (
            vec![("MEDIFLOW_ADDR", "0.0.0.0:0"), ("MEDIFLOW_AUTH", "off")],
            true,
            "every interface, MEDIFLOW_AUTH=off",
        ),
    ] {
        match start_without_keys(&env).await {
            Started::Listening => assert!(starts, "{what}: it started"),
            Started::Exited(status, output) => {
                assert!(!starts, "{what}: it stopped ({status}): {output}");
                assert!(!status.success(), "{what}: {status}");
                assert!(
                    output.contains("refusing to start without API keys")
                        && output.contains("MEDIFLOW_AUTH=off"),
                    "{what}: a clear message: {output}"
                );
            }
        }
    }
}

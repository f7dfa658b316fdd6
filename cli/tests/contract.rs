//! Contract tests of `mediflow review`, `audit` and `history` (issue 22): the binary runs against
//! a stand-in service written here, which records every request the CLI makes (method, path,
//! query, headers, body) and answers as the contract says. They prove the CLI's side of the
//! contract; the service's side is tested in `tests/integration/`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request as the stand-in service saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// The stand-in service, on its own thread and runtime, on a port of its own.
struct Stub {
    url: String,
    log: Log,
}

impl Stub {
    fn start() -> Self {
        let log: Log = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new().fallback(answer).with_state(log.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        Self { url, log }
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().expect("log").clone()
    }

    /// Runs `mediflow` with this service's URL and an API key; (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key");
        std::fs::write(&key, "contract-key\n").expect("write key");
        let output = Command::new(env!("CARGO_BIN_EXE_mediflow"))
            .args(args)
            .env("MEDIFLOW_URL", &self.url)
            .env("MEDIFLOW_API_KEY_FILE", &key)
            .env_remove("MEDIFLOW_CLIENT")
            .stdin(Stdio::null())
            .output()
            .expect("run mediflow");
        (
            output.status.code().expect("exited"),
            String::from_utf8(output.stdout).expect("utf-8"),
            String::from_utf8(output.stderr).expect("utf-8"),
        )
    }
}

fn event(seq: u64, action: &str) -> Value {
    json!({
        "chain": "main", "seq": seq, "time": format!("2026-12-07T05:00:0{seq}.123456Z"),
        "client": "site001-uploader", "action": action,
        "record_ids": ["1d0d5edd-9738-453c-8966-aaa2be88a9f5"], "batch_id": null,
        "request_id": format!("req-{seq}"), "outcome": "ok",
        "old_status": if action == "review" { json!("pending") } else { Value::Null },
        "new_status": if action == "review" { json!("validated") } else { Value::Null },
        "reason": if action == "review" { json!("source data verified") } else { Value::Null },
        "prev_hash": "0".repeat(64), "hash": format!("{seq:064x}"),
        // A field this CLI version does not know: printed unchanged.
        "signature": {"alg": "none", "by": ["x"]}
    })
}

fn record() -> Value {
    json!({
        "id": "r-ok", "site_id": "SITE001", "trial_phase": "II", "submission_date": "2025-03-15",
        "status": "validated", "patient_count": 4, "notes": null
    })
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (status, axum::Json(json!({ "detail": detail }))).into_response()
}

/// Every route of the contract this file needs, answering by the path.
async fn answer(State(log): State<Log>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: query.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    log.lock().expect("log").push(seen);
    let continuation = query
        .iter()
        .find(|(k, _)| k == "continuation")
        .map(|(_, v)| v.as_str());
    match (parts.method, parts.uri.path()) {
        (Method::POST, "/records/r-ok/review") => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ETAG, "\"2\"")
            .body(Body::from(record().to_string()))
            .expect("response"),
        (Method::POST, "/records/r-409/review") => {
            problem(StatusCode::CONFLICT, "Record is not pending")
        }
        (Method::POST, "/records/r-412/review") => problem(
            StatusCode::PRECONDITION_FAILED,
            "Record changed since the given ETag",
        ),
        (Method::POST, "/records/r-403/review") => {
            problem(StatusCode::FORBIDDEN, "Client lacks the review role")
        }
        (Method::POST, "/records/r-422/review") => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Input should be 'validated' or 'rejected'",
        ),
        (Method::GET, "/audit") => {
            // Three pages; the second is empty but continues (events of other sites left out).
            let (events, next) = match continuation {
                None => (vec![event(1, "create"), event(2, "review")], json!("p2")),
                Some("p2") => (vec![], json!("p3")),
                Some("p3") => (vec![event(3, "read")], Value::Null),
                Some(_) => return problem(StatusCode::UNPROCESSABLE_ENTITY, "bad continuation"),
            };
            axum::Json(json!({ "events": events, "continuation": next })).into_response()
        }
        (Method::GET, "/records/r1/history") => axum::Json(json!({
            "record_id": "r1",
            "events": [event(1, "create"), event(2, "review")]
        }))
        .into_response(),
        _ => problem(StatusCode::NOT_FOUND, "Record not found"),
    }
}

fn lines_as_json(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn contract_review_posts_status_and_reason_with_if_match_and_prints_the_record_and_etag() {
    let stub = Stub::start();
    let (code, stdout, stderr) = stub.run(&[
        "review",
        "r-ok",
        "--status",
        "validated",
        "--reason",
        "source data verified",
        "--if-match",
        "\"1\"",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).expect("json"),
        record()
    );
    assert!(stderr.contains("ETag: \"2\""), "{stderr}");
    let seen = stub.seen();
    assert_eq!(seen.len(), 1, "one request: {seen:?}");
    let request = &seen[0];
    assert_eq!(
        (&request.method, request.path.as_str()),
        (&Method::POST, "/records/r-ok/review")
    );
    assert!(request.query.is_empty());
    assert_eq!(request.header("if-match"), Some("\"1\""));
    assert_eq!(request.header("x-api-key"), Some("contract-key"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&request.body).expect("a JSON body"),
        json!({"status": "validated", "reason": "source data verified"})
    );

    let (code, stdout, _) = stub.run(&[
        "review", "r-ok", "--status", "rejected", "--reason", "no", "--table",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("etag             \"2\""), "{stdout}");
    let request = stub.seen().pop().expect("a second request");
    assert_eq!(request.header("if-match"), None, "no --if-match, no header");
    assert_eq!(
        serde_json::from_str::<Value>(&request.body).expect("json"),
        json!({"status": "rejected", "reason": "no"})
    );
}

#[test]
fn contract_review_refusals_end_with_one_line_naming_the_reason() {
    let stub = Stub::start();
    let cases = [
        (
            "r-409",
            "record r-409 is not pending (409): Record is not pending",
        ),
        (
            "r-412",
            "changed since that ETag (--if-match); read it again with `mediflow get` (412): Record changed since the given ETag",
        ),
        ("r-404", "no record with id r-404 (404): Record not found"),
        (
            "r-403",
            "not allowed to review record r-403 (403): Client lacks the review role",
        ),
        (
            "r-422",
            "invalid (422): Input should be 'validated' or 'rejected'",
        ),
    ];
    for (id, expected) in cases {
        let (code, stdout, stderr) =
            stub.run(&["review", id, "--status", "validated", "--reason", "checked"]);
        assert_eq!(code, 1, "{id}");
        assert!(stdout.is_empty(), "{id}: nothing on stdout");
        let line = stderr.trim_end();
        assert!(
            line.starts_with("mediflow: ") && !line.contains('\n'),
            "{id}: {line}"
        );
        assert!(line.contains(expected), "{id}: {line}");
    }
    let before = stub.seen().len();
    let long = "x".repeat(501);
    for reason in [long.as_str(), " "] {
        let (code, _, stderr) = stub.run(&[
            "review",
            "r-ok",
            "--status",
            "validated",
            "--reason",
            reason,
        ]);
        assert_eq!(code, 1);
        assert!(stderr.contains("--reason"), "{stderr}");
    }
    assert_eq!(
        stub.seen().len(),
        before,
        "a bad reason is refused before sending"
    );
}

#[test]
fn contract_audit_follows_every_continuation_and_prints_events_unchanged() {
    let stub = Stub::start();
    let (code, stdout, stderr) = stub.run(&[
        "audit",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-07T05:00:00Z",
        "--client",
        "site001-uploader",
        "--record",
        "1d0d5edd-9738-453c-8966-aaa2be88a9f5",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        [event(1, "create"), event(2, "review"), event(3, "read")]
            .iter()
            .map(|e| e.to_string() + "\n")
            .collect::<String>(),
        "JSON Lines, every field as sent, in the service's field order"
    );
    let filters = [
        ("from", "2026-12-01"),
        ("to", "2026-12-07T05:00:00Z"),
        ("client", "site001-uploader"),
        ("record_id", "1d0d5edd-9738-453c-8966-aaa2be88a9f5"),
        ("limit", "1000"),
    ];
    let seen = stub.seen();
    let queries: Vec<Vec<(&str, &str)>> = seen
        .iter()
        .map(|s| {
            assert_eq!((&s.method, s.path.as_str()), (&Method::GET, "/audit"));
            assert_eq!(s.header("x-api-key"), Some("contract-key"));
            s.query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let with = |token: &'static str| {
        let mut query = filters.to_vec();
        query.push(("continuation", token));
        query
    };
    assert_eq!(
        queries,
        [filters.to_vec(), with("p2"), with("p3")],
        "the filters on every page, and past the empty page"
    );

    let (code, stdout, _) = stub.run(&["audit", "--limit", "2"]);
    assert_eq!(code, 0);
    assert_eq!(lines_as_json(&stdout).len(), 2, "--limit is a total");
    let last = stub.seen().pop().expect("request");
    assert_eq!(last.query, [("limit".to_owned(), "2".to_owned())]);

    let (code, stdout, _) = stub.run(&["audit", "--table"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three events:\n{stdout}");
    assert!(lines[0].starts_with("seq  time"), "{stdout}");
    assert!(lines[2].contains("pending→validated"), "{stdout}");
}

#[test]
fn contract_history_prints_a_records_events_oldest_first() {
    let stub = Stub::start();
    let (code, stdout, stderr) = stub.run(&["history", "r1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        lines_as_json(&stdout),
        [event(1, "create"), event(2, "review")]
    );
    let request = stub.seen().pop().expect("request");
    assert_eq!(
        (&request.method, request.path.as_str()),
        (&Method::GET, "/records/r1/history")
    );
    assert!(request.query.is_empty());

    let (code, stdout, _) = stub.run(&["history", "r1", "--table"]);
    assert_eq!((code, stdout.lines().count()), (0, 3));

    let (code, _, stderr) = stub.run(&["history", "unknown"]);
    assert_eq!(
        (code, stderr.trim_end()),
        (1, "mediflow: no record with id unknown")
    );
}

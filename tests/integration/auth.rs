//! API keys from the Key Vault CSI file: required on every data route, re-read on rotation; as a
//! client table, each key is a client with its roles, sites and request rate.
//!
//! What a key may do is asked of the router in process (`support::router`); what needs the
//! process stays one: the file re-read on rotation (the server's watch), what reaches its logs,
//! and a start refused for a broken table.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::router::{Setup, TestApp, spawn_app};
use crate::support::{App, AppOptions, run_to_end, valid_record, wait_until};

/// A process whose key file the test rewrites.
struct KeyedApp {
    app: TestApp,
    key_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn app_with_keys(content: &str) -> KeyedApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("api-keys");
    std::fs::write(&key_file, content).expect("write keys");
    let app = App::start(
        AppOptions::default().env("MEDIFLOW_API_KEYS_FILE", key_file.display().to_string()),
    )
    .await;
    KeyedApp {
        app: TestApp::from(app),
        key_file,
        _dir: dir,
    }
}

/// The router in process with this key file content in force.
async fn router_with_keys(content: &str) -> TestApp {
    spawn_app(Setup::default().keys(content)).await
}

async fn status_with_key(app: &TestApp, key: Option<&str>) -> StatusCode {
    let mut request = app.post("/records").json(&valid_record());
    if let Some(key) = key {
        request = request.key(key);
    }
    request.send().await.status
}

/// Every HTTP function in function-definitions/ that is not public must refuse a request without
/// a key: a new route added without auth fails this test.
#[tokio::test]
async fn every_data_route_refuses_requests_without_a_valid_key() {
    let app = router_with_keys("k-current\n").await;
    let definitions = handler::definitions::Definitions::embedded().expect("definitions");
    let mut protected = 0;
    for function in &definitions.functions {
        let Some(trigger) = function.http_trigger() else {
            continue;
        };
        let path = trigger
            .path
            .replace("{id}", "1d0d5edd-9738-453c-8966-aaa2be88a9f5")
            .replace("{batch_id}", "1d0d5edd-9738-453c-8966-aaa2be88a9f5");
        for method in trigger.methods {
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .expect("method");
            let public = handler::api::PUBLIC_FUNCTIONS.contains(&function.name.as_str());
            for key in [None, Some("wrong"), Some("")] {
                let mut request = app.request(method.clone(), &path).json(&json!({}));
                if let Some(key) = key {
                    request = request.key(key);
                }
                let response = request.send().await;
                if public {
                    assert_ne!(
                        response.status,
                        StatusCode::UNAUTHORIZED,
                        "{} is public",
                        function.name
                    );
                } else {
                    assert_eq!(
                        response.status,
                        StatusCode::UNAUTHORIZED,
                        "{} {method} {path} with key {key:?}",
                        function.name
                    );
                    let body = response.json();
                    assert!(
                        body["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains("X-API-Key"))
                    );
                }
            }
            if !public {
                protected += 1;
            }
        }
    }
    assert!(
        protected >= 4,
        "records and batches routes are protected ({protected})"
    );
    assert_eq!(
        status_with_key(&app, Some("k-current")).await,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_rotated_key_file_is_picked_up_without_restart() {
    let keyed = app_with_keys("k-old\n").await;
    assert_eq!(
        status_with_key(&keyed.app, Some("k-old")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status_with_key(&keyed.app, Some("k-new")).await,
        StatusCode::UNAUTHORIZED
    );

    // During a rotation the secret holds both keys; both work.
    std::fs::write(&keyed.key_file, "k-old\nk-new\n").expect("write");
    wait_for(&keyed.app, Some("k-new"), StatusCode::CREATED).await;
    assert_eq!(
        status_with_key(&keyed.app, Some("k-old")).await,
        StatusCode::CREATED
    );

    // After it, the old key is refused. The CSI driver swaps files atomically: do the same.
    let staged = keyed.key_file.with_extension("staged");
    std::fs::write(&staged, "k-new\n").expect("write");
    std::fs::rename(&staged, &keyed.key_file).expect("rename");
    wait_for(&keyed.app, Some("k-old"), StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        status_with_key(&keyed.app, Some("k-new")).await,
        StatusCode::CREATED
    );
}

async fn wait_for(app: &TestApp, key: Option<&str>, expected: StatusCode) {
    wait_until(
        format!("key {key:?} to answer {expected} (the rewritten file re-read)"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { status_with_key(app, key).await == expected },
    )
    .await;
}

#[tokio::test]
async fn health_and_readiness_stay_open_with_auth_on() {
    let app = router_with_keys("k\n").await;
    for path in ["/health", "/ready", "/openapi.json", "/metrics"] {
        assert_eq!(app.get(path).send().await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn keys_bodies_and_patient_data_never_reach_the_logs() {
    let keyed = app_with_keys("super-secret-key-7731\n").await;
    let app = keyed.app.process();
    let mut body = valid_record();
    body["notes"] = Value::from("PATIENT-NOTE-Jane-Doe-1962");
    body["site_id"] = Value::from("SITEZQX42");
    let client = reqwest::Client::new();
    for key in ["super-secret-key-7731", "wrong-key-9921"] {
        client
            .post(app.url("/records"))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .expect("POST");
    }
    let mut invalid = body.clone();
    invalid["patient_count"] = json!("PATIENT-COUNT-SECRET");
    client
        .post(app.url("/records"))
        .header("x-api-key", "super-secret-key-7731")
        .json(&invalid)
        .send()
        .await
        .expect("POST");
    // All three requests are in the access log before the absences are checked (the log is
    // written by a background thread, so it may trail the responses).
    app.wait_for_logs(Duration::from_secs(10), |lines| {
        lines
            .iter()
            .filter(|l| l.contains("request answered") && l.contains("/records"))
            .count()
            >= 3
    })
    .await;
    let logs = app.logs().join("\n");
    for secret in [
        "super-secret-key-7731",
        "wrong-key-9921",
        "PATIENT-NOTE",
        "SITEZQX42",
        "PATIENT-COUNT-SECRET",
        "Jane",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn auth_off_without_a_key_file_is_announced_loudly() {
    let app = TestApp::from(App::standalone().await);
    assert_eq!(status_with_key(&app, None).await, StatusCode::CREATED);
    assert!(
        app.process()
            .logs()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("auth is OFF"))
    );
}

// ---------------------------------------------------------------------------------------------
// Client tables: a key per client, with roles, sites and a request rate
// ---------------------------------------------------------------------------------------------

/// Hex SHA-256 of a key: what an operator puts in the table.
fn digest_of(key: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// The brief's three clients; `monitor_keys` are the monitor's (two during a rotation), and
/// `uploader_rate` the uploader's own rate, if any.
fn client_table(monitor_keys: &[&str], uploader_rate: Option<Value>) -> String {
    let mut uploader = json!({"id": "site001-uploader", "key_sha256": [digest_of("k-upload")], "roles": ["submit"], "sites": ["SITE001"]});
    if let Some(rate) = uploader_rate {
        uploader["rate"] = rate;
    }
    let monitor: Vec<String> = monitor_keys.iter().map(|k| digest_of(k)).collect();
    json!({"clients": [
        uploader,
        {"id": "monitor-eu", "key_sha256": monitor, "roles": ["read", "review"], "sites": ["*"]},
        {"id": "qa-auditor", "key_sha256": [digest_of("k-qa").to_uppercase()], "roles": ["audit", "read"], "sites": ["*"]},
    ]})
    .to_string()
}

/// `method path` with `key` (and `body` when given): the status and the JSON body.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = app.request(method, path).key(key);
    if let Some(body) = body {
        request = request.json(body);
    }
    let answer = request.send().await;
    (answer.status, answer.json_or_null())
}

async fn auth_readiness(app: &TestApp) -> Value {
    app.get_json("/ready").await["auth"].clone()
}

/// (method, path, key, body, expected status, words the 403 must hold, what the case proves)
type RouteCase<'a> = (
    reqwest::Method,
    &'a str,
    &'a str,
    Option<&'a Value>,
    StatusCode,
    &'a str,
    &'a str,
);

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one row per case")]
async fn each_key_of_a_client_table_calls_as_its_client_with_its_roles_and_sites() {
    use reqwest::Method;
    let app = &router_with_keys(&client_table(&["k-mon-1", "k-mon-2"], None)).await;
    let (status, created) = call(
        app,
        reqwest::Method::POST,
        "/records",
        "k-upload",
        Some(&valid_record()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let record = format!("/records/{}", created["id"].as_str().expect("id"));
    let mut elsewhere = valid_record();
    elsewhere["site_id"] = json!("SITE002");
    let pending = valid_record();
    let qa_digest = digest_of("k-qa");
    let cases: Vec<RouteCase> = vec![
        (
            Method::POST,
            "/records",
            "k-upload",
            Some(&elsewhere),
            StatusCode::FORBIDDEN,
            "may not access site SITE002",
            "an uploader is held to its sites",
        ),
        (
            Method::GET,
            &record,
            "k-upload",
            None,
            StatusCode::FORBIDDEN,
            "does not hold the role read",
            "an uploader cannot read",
        ),
        (
            Method::GET,
            "/audit",
            "k-upload",
            None,
            StatusCode::FORBIDDEN,
            "site001-uploader does not hold the role audit",
            "nor read the audit trail",
        ),
        (
            Method::GET,
            &record,
            "k-mon-1",
            None,
            StatusCode::OK,
            "",
            "the monitor's first key",
        ),
        (
            Method::GET,
            &record,
            "k-mon-2",
            None,
            StatusCode::OK,
            "",
            "the monitor's second key (a rotation's overlap)",
        ),
        (
            Method::POST,
            "/records",
            "k-mon-1",
            Some(&pending),
            StatusCode::FORBIDDEN,
            "monitor-eu does not hold the role submit",
            "a monitor does not submit",
        ),
        (
            Method::GET,
            "/audit",
            "k-qa",
            None,
            StatusCode::OK,
            "",
            "the auditor (its digest in upper-case hex)",
        ),
        (
            Method::GET,
            "/audit",
            "k-mon-1",
            None,
            StatusCode::FORBIDDEN,
            "does not hold the role audit",
            "a monitor is no auditor",
        ),
        (
            Method::GET,
            "/audit",
            &qa_digest,
            None,
            StatusCode::UNAUTHORIZED,
            "",
            "a digest is not a key",
        ),
        (
            Method::GET,
            "/audit",
            "k-unknown",
            None,
            StatusCode::UNAUTHORIZED,
            "",
            "an unknown key",
        ),
    ];
    for (method, path, key, body, expected, words, proves) in cases {
        let (status, answer) = call(app, method, path, key, body).await;
        assert_eq!(status, expected, "{proves}: {answer}");
        if expected == StatusCode::FORBIDDEN {
            let detail = answer["detail"].as_str().unwrap_or_default();
            assert!(detail.contains(words), "{proves}: {detail}");
        }
    }
    assert_eq!(
        auth_readiness(app).await,
        json!({"status": "current", "format": "table", "clients": 3}),
        "/ready shows the table in force"
    );
}

#[tokio::test]
async fn a_rotation_in_the_client_table_is_picked_up_and_a_broken_rewrite_is_refused() {
    // A monitor may read: an unknown record is 404 once the key is accepted.
    const ADMITTED: StatusCode = StatusCode::NOT_FOUND;
    let keyed = app_with_keys(&client_table(&["k-mon-1"], None)).await;
    let app = &keyed.app;
    let status = |key: &'static str| async move {
        call(
            app,
            reqwest::Method::GET,
            "/records/1d0d5edd-9738-453c-8966-aaa2be88a9f5",
            key,
            None,
        )
        .await
        .0
    };
    assert_eq!(status("k-mon-1").await, ADMITTED);
    assert_eq!(status("k-mon-2").await, StatusCode::UNAUTHORIZED);

    // The next key added beside the first: both work.
    std::fs::write(&keyed.key_file, client_table(&["k-mon-1", "k-mon-2"], None)).expect("write");
    wait_until(
        "the monitor's second key to be admitted (the table re-read)",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { status("k-mon-2").await == ADMITTED },
    )
    .await;
    assert_eq!(status("k-mon-1").await, ADMITTED);

    // A broken rewrite (the second digest replaced by a raw key): the table in force stays,
    // /ready (still 200) says why, the log says it.
    let staged = keyed.key_file.with_extension("staged");
    std::fs::write(
        &staged,
        client_table(&["k-mon-2", "not-a-digest"], None)
            .replace(&digest_of("not-a-digest"), "k-mon-3"),
    )
    .expect("write");
    std::fs::rename(&staged, &keyed.key_file).expect("rename");
    wait_until(
        "/ready to say the table in force is stale (the broken rewrite refused)",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { auth_readiness(app).await["status"] == "stale" },
    )
    .await;
    let ready = app.get("/ready").send().await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "a stale table is no reason to stop serving"
    );
    let problem = ready.json()["auth"]["problem"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        problem.contains("clients[1] (monitor-eu): key_sha256[1]: must be 64 hex characters"),
        "{problem}"
    );
    assert!(
        !problem.contains("k-mon-3"),
        "the value is never shown: {problem}"
    );
    assert_eq!(
        status("k-mon-1").await,
        ADMITTED,
        "the previous table is in force"
    );
    app.process()
        .wait_for_logs(Duration::from_secs(10), |lines| {
            lines
                .iter()
                .any(|l| l.contains("ERROR") && l.contains("API keys file refused"))
        })
        .await;

    // Fixed, completing the rotation: the old key is refused, the problem gone.
    std::fs::write(&staged, client_table(&["k-mon-2"], None)).expect("write");
    std::fs::rename(&staged, &keyed.key_file).expect("rename");
    wait_until(
        "the monitor's first key to be refused (the fixed table re-read)",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async { status("k-mon-1").await == StatusCode::UNAUTHORIZED },
    )
    .await;
    assert_eq!(status("k-mon-2").await, ADMITTED);
    assert_eq!(auth_readiness(app).await["status"], "current");
    let refusals = app
        .process()
        .logs()
        .iter()
        .filter(|l| l.contains("API keys file refused"))
        .count();
    assert_eq!(
        refusals, 1,
        "one log line per distinct problem, not one per reload"
    );
}

#[tokio::test]
async fn starting_with_an_invalid_client_table_fails_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("api-keys");
    std::fs::write(
        &key_file,
        json!({"clients": [{"id": "site001-uploader", "key_sha256": ["k-raw-key"], "roles": ["submit"], "sites": ["SITE001"]}]}).to_string(),
    )
    .expect("write");
    let finished = run_to_end(
        std::process::Command::new(crate::support::binary())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MEDIFLOW_ADDR", "127.0.0.1:0")
            .env("MEDIFLOW_DATA_DIR", dir.path().join("data"))
            .env("MEDIFLOW_API_KEYS_FILE", &key_file),
        Duration::from_secs(20),
    )
    .await;
    assert!(!finished.status.success(), "{finished:?}");
    let stderr = finished.stderr.join("\n");
    assert!(
        stderr.contains("clients[0] (site001-uploader): key_sha256[0]: must be 64 hex characters"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("k-raw-key"),
        "the value is never shown: {stderr}"
    );
}

#[tokio::test]
async fn an_old_format_file_is_the_legacy_client_with_every_role() {
    let app = router_with_keys("k-legacy\n").await;
    let (status, _) = call(&app, reqwest::Method::GET, "/audit", "k-legacy", None).await;
    assert_eq!(status, StatusCode::OK, "legacy holds every role");
    assert_eq!(
        auth_readiness(&app).await,
        json!({"status": "current", "format": "legacy", "clients": 1})
    );
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_and_the_others_do_not() {
    let app = &router_with_keys(&client_table(
        &["k-mon-1"],
        Some(json!({"per_second": 1, "burst": 3})),
    ))
    .await;
    let started = Instant::now();
    let mut admitted = 0;
    // Requests back to back (the stimulus), until one is limited.
    let limited = loop {
        let response = app.get("/audit").key("k-upload").send().await;
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(
            response.status,
            StatusCode::FORBIDDEN,
            "no audit role, but admitted"
        );
        admitted += 1;
        assert!(admitted < 60, "never limited");
    };
    // 3 at once, then 1 a second.
    let allowed = 3 + started.elapsed().as_secs() + 1;
    assert!(
        admitted >= 3 && admitted <= allowed,
        "{admitted} admitted, at most {allowed}"
    );
    let retry_after: u64 = limited
        .header("retry-after")
        .parse()
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body = limited.json();
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Retry-After")),
        "{body}"
    );

    for n in 0..20 {
        let (status, body) = call(app, reqwest::Method::GET, "/audit", "k-qa", None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "another client's request {n}: {body}"
        );
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("mediflow_client_requests_limited_total{client=\"site001-uploader\"}")),
        "{metrics}"
    );
    assert!(
        !metrics.contains("client=\"qa-auditor\""),
        "only limited clients are counted"
    );
}

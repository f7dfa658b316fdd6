//! The HTTP contract existing MediFlow clients depend on (README.md "The API", and the binary's own
//! `/openapi.json`). The table cases call the router in process (`support::router::spawn_app`),
//! once per store backend where the store matters; what crosses the wire stays on a real socket
//! against the running binary: slow clients (head and body timeouts), a body refused from its
//! headers or cut off mid-stream, the metrics port of its own and the connection limit.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::router::{Answer, Setup, TestApp, spawn_app};
use crate::support::{App, AppOptions, Backend, valid_record};

async fn post(app: &TestApp, body: &Value) -> Answer {
    app.post("/records").json(body).send().await
}

/// Runs each case against the embedded store and against Cosmos (the shared emulator).
macro_rules! per_backend {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test] async fn $case() { super::$case(crate::support::Backend::Embedded).await; })*
        }
        mod cosmos {
            $(#[tokio::test] async fn $case() { super::$case(crate::support::Backend::Cosmos).await; })*
        }
    };
}

per_backend!(
    create_answers_201_with_the_normalised_record_in_contract_key_order,
    get_returns_exactly_what_create_returned,
    every_field_error_comes_back_in_one_422,
    unknown_and_malformed_ids_are_404_with_the_contract_body,
    batches_ingest_in_process_without_a_queue,
    records_are_listed_by_site_a_page_at_a_time,
);

async fn create_answers_201_with_the_normalised_record_in_contract_key_order(backend: Backend) {
    let app = spawn_app(Setup::on(backend)).await;
    let response = post(&app, &valid_record()).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let location = response.header("location").to_owned();
    assert!(response.headers.contains_key("x-request-id"));
    let keys: Vec<String> =
        serde_json::from_slice::<serde_json::Map<String, Value>>(&response.body)
            .expect("object")
            .keys()
            .cloned()
            .collect();
    assert_eq!(
        keys,
        [
            "site_id",
            "trial_phase",
            "submission_date",
            "status",
            "patient_count",
            "notes",
            "id"
        ]
    );
    let body = response.json();
    assert_eq!(body["site_id"], "SITE001", "site_id is stored upper-cased");
    assert_eq!(body["patient_count"], 42);
    let id = body["id"].as_str().expect("id");
    assert!(
        uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4),
        "a random UUID v4 id: {id}"
    );
    assert_eq!(location, format!("/records/{id}"));
}

async fn get_returns_exactly_what_create_returned(backend: Backend) {
    let app = spawn_app(Setup::on(backend)).await;
    let mut body = valid_record();
    body.as_object_mut().expect("object").remove("notes");
    let created = post(&app, &body).await.json();
    assert_eq!(created["notes"], "", "notes defaults to an empty string");
    let response = app
        .get(&format!("/records/{}", created["id"].as_str().expect("id")))
        .send()
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json(), created);
}

async fn every_field_error_comes_back_in_one_422(backend: Backend) {
    let app = spawn_app(Setup::on(backend)).await;
    let body = json!({"site_id": "ßßßßßßßßßßß", "trial_phase": "V", "submission_date": 1_741_996_800,
                      "status": "done", "patient_count": true, "notes": "x", "id": "chosen"});
    let response = post(&app, &body).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = response.json();
    let got: Vec<(&str, &str)> = detail["detail"]
        .as_array()
        .expect("detail list")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["loc"][1].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("string_pattern_mismatch", "site_id"),
            ("literal_error", "trial_phase"),
            ("date_type", "submission_date"),
            ("literal_error", "status"),
            ("int_type", "patient_count"),
            ("extra_forbidden", "id"),
        ]
    );
    for error in detail["detail"].as_array().expect("list") {
        assert_eq!(error["loc"][0], "body");
        assert!(error["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

async fn unknown_and_malformed_ids_are_404_with_the_contract_body(backend: Backend) {
    let app = spawn_app(Setup::on(backend)).await;
    for id in [
        "1d0d5edd-9738-453c-8966-aaa2be88a9f5",
        "not-a-uuid",
        "%F0%9F%92%A9",
        "batch-1d0d5edd-9738-453c-8966-aaa2be88a9f5",
    ] {
        let response = app.get(&format!("/records/{id}")).send().await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(
            response.json(),
            json!({"detail": "Record not found"}),
            "{id}"
        );
    }
}

async fn batches_ingest_in_process_without_a_queue(backend: Backend) {
    let app = spawn_app(Setup::on(backend)).await;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let mut invalid = valid_record();
    invalid["patient_count"] = json!(0);
    let message =
        json!({"batch_id": batch_id, "records": [valid_record(), invalid, valid_record()]});
    let response = app.post("/batches").json(&message).send().await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
    assert_eq!(
        response.header("location"),
        format!("/batches/{batch_id}").as_str()
    );
    let report = app.get_json(&format!("/batches/{batch_id}")).await;
    assert_eq!(report["status"], "completed");
    assert_eq!(
        (
            report["received"].as_u64(),
            report["accepted"].as_u64(),
            report["rejected"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(report["rejected_records"][0]["index"], 1);
    // The same detail POST /records gives for that record.
    let direct = post(&app, &invalid).await.json();
    assert_eq!(report["rejected_records"][0]["detail"], direct["detail"]);
    for id in report["record_ids"].as_array().expect("ids") {
        let record = app
            .get(&format!("/records/{}", id.as_str().expect("id")))
            .send()
            .await;
        assert_eq!(record.status, StatusCode::OK);
    }
    // Resubmission: same answer, no new records.
    let again = app.post("/batches").json(&message).send().await.json();
    assert_eq!(again["record_ids"], report["record_ids"]);
    // Same batch id, different records: refused.
    let other = json!({"batch_id": batch_id, "records": [valid_record()]});
    let conflict = app.post("/batches").json(&other).send().await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
}

/// Request shapes that are not a valid record body (the embedded store is enough: nothing is stored).
#[tokio::test]
async fn bodies_that_are_not_records_get_clear_4xx_answers() {
    let app = spawn_app(Setup::default()).await;
    let post = || app.post("/records");
    let json_typed = || post().header("content-type", "application/json");
    let cases = vec![
        (
            "malformed JSON",
            json_typed().body("{bad"),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("json_invalid"),
        ),
        (
            "empty body",
            json_typed(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("json_invalid"),
        ),
        (
            "a JSON array",
            post().json(&json!([valid_record()])),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("model_attributes_type"),
        ),
        (
            "text/plain",
            post()
                .header("content-type", "text/plain")
                .body(valid_record().to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            "a form",
            post()
                .header("content-type", "application/x-www-form-urlencoded")
                .body("site_id=abc"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            "no content type at all (as the old service accepted)",
            post().body(valid_record().to_string()),
            StatusCode::CREATED,
            None,
        ),
        (
            "charset parameter",
            post()
                .header("content-type", "application/json; charset=utf-8")
                .body(valid_record().to_string()),
            StatusCode::CREATED,
            None,
        ),
        (
            "invalid UTF-8",
            json_typed().body(vec![b'{', 0xff, b'}']),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("json_invalid"),
        ),
        (
            "deep nesting",
            json_typed().body("[".repeat(100_000)),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("json_invalid"),
        ),
    ];
    for (what, request, status, kind) in cases {
        let response = request.send().await;
        assert_eq!(response.status, status, "{what}: {}", response.text());
        let body = response.json();
        assert!(
            status.is_success() || body.get("detail").is_some(),
            "{what}: {body}"
        );
        if let Some(kind) = kind {
            assert_eq!(body["detail"][0]["type"], kind, "{what}");
        }
    }
}

#[tokio::test]
async fn other_paths_and_methods_answer_like_the_old_service() {
    let app = spawn_app(Setup::default()).await;
    let health = app.get_json("/health").await;
    assert_eq!(health, json!({"status": "ok", "version": "1.0.0"}));
    let ready = app.get("/ready").send().await;
    assert_eq!(ready.status, StatusCode::OK);
    for (method, path, status, detail) in [
        (
            reqwest::Method::GET,
            "/nowhere",
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
        (
            reqwest::Method::GET,
            "/",
            StatusCode::NOT_FOUND,
            "Not Found",
        ),
        (
            reqwest::Method::DELETE,
            "/records",
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
        ),
        (
            reqwest::Method::PUT,
            "/records/abc",
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
        ),
        (
            reqwest::Method::POST,
            "/health",
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
        ),
    ] {
        let response = app.request(method.clone(), path).send().await;
        assert_eq!(response.status, status, "{method} {path}");
        assert_eq!(
            response.json(),
            json!({"detail": detail}),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app(Setup::default()).await;
    post(&app, &valid_record()).await;
    post(&app, &json!({})).await;
    app.get("/records/unknown").send().await;
    let text = app.metrics_text().await;
    for line in [
        r#"mediflow_http_requests_total{route="/records",method="POST",status="201"} 1"#,
        r#"mediflow_http_requests_total{route="/records",method="POST",status="422"} 1"#,
        r#"mediflow_http_requests_total{route="/records/{id}",method="GET",status="404"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(
        text.contains("mediflow_store_operation_duration_seconds_bucket"),
        "store latency is exported"
    );
}

#[tokio::test]
async fn metrics_move_to_their_own_port_when_configured() {
    let app = App::start(AppOptions::default().env("MEDIFLOW_METRICS_ADDR", "127.0.0.1:0")).await;
    assert_ne!(app.metrics_addr, app.addr, "a port of its own");
    let main = reqwest::get(app.url("/metrics")).await.expect("GET");
    assert_eq!(
        main.status(),
        StatusCode::NOT_FOUND,
        "not on the public port"
    );
    let own = reqwest::get(format!("http://{}/metrics", app.metrics_addr))
        .await
        .expect("GET");
    assert_eq!(own.status(), StatusCode::OK);
    assert!(
        own.text()
            .await
            .expect("text")
            .contains("# TYPE mediflow_http_requests counter")
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_http_function() {
    let app = spawn_app(Setup::default()).await;
    let spec = app.get_json("/openapi.json").await;
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let definitions = handler::definitions::Definitions::embedded().expect("definitions");
    for function in &definitions.functions {
        let Some(trigger) = function.http_trigger() else {
            continue;
        };
        if function.name == "openapi" {
            continue;
        }
        for method in trigger.methods {
            let operation = &spec["paths"][trigger.path.as_str()][method.as_str()];
            assert_eq!(
                operation["operationId"],
                function.name.as_str(),
                "{method} {} documented",
                trigger.path
            );
        }
    }
}

/// The slow-client tests' timeouts: short, so each waits a fraction of a second (the defaults
/// are 10 s; `handler::config::HttpTimeouts`).
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

fn short_timeout_ms() -> String {
    SHORT_TIMEOUT.as_millis().to_string()
}

/// A client that announces a body and stops sending it is answered 408 after the body timeout
/// (`MEDIFLOW_BODY_READ_TIMEOUT_MS`, short here), and the connection does not hang forever.
#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app =
        App::start(AppOptions::default().env("MEDIFLOW_BODY_READ_TIMEOUT_MS", short_timeout_ms()))
            .await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = "POST /records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"site_id\":";
    stream.write_all(head.as_bytes()).await.expect("write");
    let started = std::time::Instant::now();
    let mut answer = vec![0_u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await;
    let n = read
        .expect("answered within 5 s: the configured timeout, not the 10 s default")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_after_the_timeout(started.elapsed());
}

/// A slow client's answer came once the configured timeout had passed (less the moment between
/// the server's start of the wait and the test's), not before.
fn assert_after_the_timeout(elapsed: Duration) {
    assert!(
        elapsed + Duration::from_millis(100) >= SHORT_TIMEOUT,
        "after the timeout, not before: {elapsed:?}"
    );
}

/// A body declared larger than 1 MiB is refused from its headers, before any of it is read.
#[tokio::test]
async fn a_body_declared_over_1_mib_is_refused_with_413_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::standalone().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        1024 * 1024 + 1
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("answered and closed without waiting for the body")
    .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.contains("larger than the 1048576 bytes"), "{text}");
}

/// A body sent without a length (chunked) is cut off at 1 MiB too.
#[tokio::test]
async fn a_chunked_body_over_1_mib_is_refused_with_413() {
    let app = App::standalone().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..17).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let response = reqwest::Client::new()
        .post(app.url("/records"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE),
        // The server may close before the client has finished sending: also a refusal.
        Err(err) => assert!(err.is_request() || err.is_body(), "{err}"),
    }
}

/// A client that stops in the middle of its request head (slow loris) is disconnected after the
/// header-read timeout (`MEDIFLOW_HEADER_READ_TIMEOUT_MS`, short here) instead of holding a
/// connection for ever.
#[tokio::test]
async fn a_client_that_stalls_mid_head_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::start(
        AppOptions::default().env("MEDIFLOW_HEADER_READ_TIMEOUT_MS", short_timeout_ms()),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /records HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the connection is still open after 5 s: the configured timeout was not applied"
    );
    assert_after_the_timeout(started.elapsed());
}

async fn records_are_listed_by_site_a_page_at_a_time(backend: Backend) {
    let app = spawn_app(Setup::on(backend)).await;
    let site = format!("S{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut created = Vec::new();
    for date in ["2025-03-01", "2025-03-03", "2025-03-02"] {
        let mut body = valid_record();
        body["site_id"] = json!(site.to_ascii_lowercase());
        body["submission_date"] = json!(date);
        created.push(post(&app, &body).await.json());
    }
    let get = |query: String| {
        let call = app.get(&format!("/records?{query}"));
        async move { call.send().await }
    };
    let first = get(format!("site_id={site}&limit=2")).await;
    assert_eq!(first.status, StatusCode::OK);
    let first = first.json();
    assert_eq!(
        first["records"],
        json!([created[1], created[2]]),
        "newest submission date first, records exactly as created"
    );
    let token = first["continuation"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = get(format!("site_id={site}&limit=2&continuation={token}"))
        .await
        .json();
    assert_eq!(
        second,
        json!({"records": [created[0]], "continuation": null})
    );

    let tampered = format!(
        "{}{}",
        &token[..token.len() - 2],
        if token.ends_with("AA") { "BA" } else { "AA" }
    );
    for (query, field) in [
        (
            format!("site_id={site}&continuation={tampered}"),
            "continuation",
        ),
        (
            format!("site_id=OTHER1&continuation={token}"),
            "continuation",
        ),
        (format!("site_id={site}&limit=1001"), "limit"),
        (format!("site_id={site}&from=2025-13-01"), "from"),
        ("limit=5".to_owned(), "site_id"),
        (format!("site_id={site}&sort=asc"), "sort"),
    ] {
        let response = get(query.clone()).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let body = response.json();
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["query", field]),
            "{query}: {body}"
        );
        assert!(
            body["detail"][0]["msg"].is_string(),
            "{query}: the service's 422 shape"
        );
    }
}

#[tokio::test]
async fn probes_on_the_operations_port_answer_while_the_data_port_is_flooded() {
    let app = App::start(AppOptions::default().env("MEDIFLOW_METRICS_ADDR", "127.0.0.1:0")).await;
    // Hold every connection slot of the data port with connections that never send a request.
    let mut held = Vec::new();
    for _ in 0..handler::server::MAX_CONNECTIONS + 16 {
        held.push(
            tokio::net::TcpStream::connect(app.addr)
                .await
                .expect("connect"),
        );
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("client");
    let flooded = client.get(app.url("/health")).send().await;
    assert!(
        flooded.is_err(),
        "the data port is full (what the test sets up): {flooded:?}"
    );
    for path in ["/health", "/ready", "/metrics"] {
        let response = client
            .get(format!("http://{}{path}", app.metrics_addr))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} on the operations port: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    drop(held);
}

//! The binary as the Azure Functions host runs it (`FUNCTIONS_CUSTOMHANDLER_PORT`): the readiness
//! ping, forwarded HTTP functions, and the `{"Data","Metadata"}` invocations of `submit_batch`
//! and `ingest_batch`, with the payload shapes from the Functions docs and the host's quirks
//! (double-encoded strings, DequeueCount as a string, base64).

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::cosmos_emulator::{CosmosContainer, CosmosEmulator};
use crate::support::{App, AppOptions, Hosting, Lazy, valid_record, wait_until};

/// Turns a batch message into the shape the host delivers it in.
type Encoder = Box<dyn Fn(&Value) -> Value>;

async fn custom_handler(options: AppOptions) -> App {
    App::start(options.hosting(Hosting::CustomHandler)).await
}

/// A queue-trigger invocation as the host sends it (Microsoft Learn, "Azure Functions custom
/// handlers", section "Request payload").
fn queue_invocation(data: &Value, dequeue_count: &Value) -> Value {
    json!({
        "Data": { "batch": data },
        "Metadata": {
            "DequeueCount": dequeue_count,
            "ExpirationTime": "2019-10-16T17:58:31+00:00",
            "Id": "800ae4b3-bdd2-4c08-badd-f08e5a34b865",
            "InsertionTime": "2019-10-09T17:58:31+00:00",
            "NextVisibleTime": "2019-10-09T18:08:32+00:00",
            "PopReceipt": "AgAAAAMAAAAAAAAAAgtnj8x+1QE=",
            "sys": { "MethodName": "ingest_batch", "UtcNow": "2019-10-09T17:58:32.2205399Z", "RandGuid": "24ad4c06-24ad-4e5b-8294-3da9714877e9" }
        }
    })
}

fn http_invocation(headers: &Value, body: &str) -> Value {
    json!({
        "Data": { "req": {
            "Url": "http://localhost:7071/batches",
            "Method": "POST",
            "Query": {},
            "Headers": headers,
            "Params": {},
            "Identities": [],
            "Body": body
        }},
        "Metadata": {}
    })
}

/// The HTTP request of a `submit_batch` invocation with a JSON body and no key.
fn submit_invocation(message: &Value) -> Value {
    http_invocation(
        &json!({"Content-Type": ["application/json"]}),
        &message.to_string(),
    )
}

async fn invoke(app: &App, function: &str, invocation: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url(&format!("/{function}")))
        .header(
            "x-azure-functions-invocationid",
            uuid::Uuid::new_v4().to_string(),
        )
        .json(invocation)
        .send()
        .await
        .expect("invoke")
}

#[tokio::test]
async fn the_readiness_ping_and_forwarded_routes_work_on_the_host_port() {
    let app = custom_handler(AppOptions::default()).await;
    let ping = reqwest::get(app.url("/")).await.expect("GET /");
    assert_eq!(ping.status(), StatusCode::OK);
    app.wait_until_ready().await;
    // The host forwards the original request to the same path (routePrefix "").
    let created = reqwest::Client::new()
        .post(app.url("/records"))
        .json(&valid_record())
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let read: Value = app
        .get_json(&format!("/records/{}", created["id"].as_str().expect("id")))
        .await;
    assert_eq!(read, created);
    // The handler listens on 127.0.0.1 only, as the host calls it.
    assert!(app.addr.ip().is_loopback());
}

#[tokio::test]
async fn ingest_batch_accepts_every_message_shape_the_host_sends() {
    let app = custom_handler(AppOptions::default()).await;
    app.wait_until_ready().await;
    let shapes: Vec<(&str, Encoder, Value)> = vec![
        ("a JSON object", Box::new(|m: &Value| m.clone()), json!(1)),
        (
            "a JSON string",
            Box::new(|m: &Value| Value::from(m.to_string())),
            json!(1),
        ),
        (
            "a double-encoded JSON string",
            Box::new(|m: &Value| Value::from(Value::from(m.to_string()).to_string())),
            json!("1"),
        ),
        (
            "base64 of the JSON (binary data)",
            Box::new(|m: &Value| {
                Value::from(base64::engine::general_purpose::STANDARD.encode(m.to_string()))
            }),
            json!("\"2\""),
        ),
    ];
    for (shape, encode, dequeue_count) in shapes {
        let batch_id = uuid::Uuid::new_v4().to_string();
        let mut invalid = valid_record();
        invalid["trial_phase"] = json!("V");
        let message = json!({"batch_id": batch_id, "records": [valid_record(), invalid]});
        let response = invoke(
            &app,
            "ingest_batch",
            &queue_invocation(&encode(&message), &dequeue_count),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{shape}");
        let result: Value = response.json().await.expect("json");
        assert!(
            result["Logs"][0]
                .as_str()
                .is_some_and(|l| l.contains("1 accepted, 1 rejected")),
            "{shape}: {result}"
        );
        let report: Value = app.get_json(&format!("/batches/{batch_id}")).await;
        assert_eq!(
            (report["accepted"].as_u64(), report["rejected"].as_u64()),
            (Some(1), Some(1)),
            "{shape}"
        );
    }
}

#[tokio::test]
async fn a_redelivered_message_creates_no_duplicates() {
    let app = custom_handler(AppOptions::default()).await;
    app.wait_until_ready().await;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let message = json!({"batch_id": batch_id, "records": [valid_record(), valid_record()]});
    let mut reports = Vec::new();
    for attempt in 1..=3 {
        let response = invoke(
            &app,
            "ingest_batch",
            &queue_invocation(&message, &json!(attempt)),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let report: Value = app.get_json(&format!("/batches/{batch_id}")).await;
        reports.push(report);
    }
    assert!(
        reports.windows(2).all(|w| w[0] == w[1]),
        "the same report every time"
    );
    assert_eq!(reports[0]["record_ids"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn messages_that_can_never_succeed_fail_the_invocation_so_the_host_poisons_them() {
    let app = custom_handler(AppOptions::default()).await;
    app.wait_until_ready().await;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let first = json!({"batch_id": batch_id, "records": [valid_record()]});
    assert_eq!(
        invoke(&app, "ingest_batch", &queue_invocation(&first, &json!(1)))
            .await
            .status(),
        StatusCode::OK
    );
    for (what, data) in [
        ("not JSON", json!("hello there")),
        ("no batch_id", json!({"records": [valid_record()]})),
        (
            "no records",
            json!({"batch_id": uuid::Uuid::new_v4().to_string(), "records": []}),
        ),
        (
            "batch_id reused for other records",
            json!({"batch_id": batch_id, "records": [valid_record(), valid_record()]}),
        ),
    ] {
        let response = invoke(&app, "ingest_batch", &queue_invocation(&data, &json!(1))).await;
        assert!(
            !response.status().is_success(),
            "{what}: a failure makes the host retry, then poison"
        );
        assert!(response.status().is_client_error(), "{what}: not a 5xx");
    }
    for garbage in [&b"not json"[..], b"[]", b"{\"Data\": 5}"] {
        let response = reqwest::Client::new()
            .post(app.url("/ingest_batch"))
            .body(garbage.to_vec())
            .send()
            .await
            .expect("POST");
        assert!(response.status().is_client_error(), "{garbage:?}");
    }
}

#[tokio::test]
async fn submit_batch_answers_through_the_http_output_and_enqueues_through_the_queue_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "k1\n").expect("write");
    let app = custom_handler(
        AppOptions::default().env("MEDIFLOW_API_KEYS_FILE", keys.display().to_string()),
    )
    .await;
    app.wait_until_ready().await;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let message = json!({"batch_id": batch_id, "records": [valid_record()]});
    let headers = json!({"Content-Type": ["application/json"], "X-API-Key": ["k1"]});
    let response = invoke(
        &app,
        "submit_batch",
        &http_invocation(&headers, &message.to_string()),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the invocation itself succeeded"
    );
    let result: Value = response.json().await.expect("json");
    let res = &result["Outputs"]["res"];
    assert_eq!(
        res["statusCode"], "202",
        "status as a string, as the host expects"
    );
    assert_eq!(
        res["headers"]["location"],
        format!("/batches/{batch_id}").as_str()
    );
    let body: Value =
        serde_json::from_str(res["body"].as_str().expect("body string")).expect("json body");
    assert_eq!(body["status"], "queued");
    let queued = &result["Outputs"]["batch"];
    assert!(
        queued.is_object(),
        "the queue output is a JSON object (never a base64-looking string)"
    );
    assert_eq!(queued["batch_id"], batch_id.as_str());

    // The host then delivers that message to ingest_batch.
    let ingest = invoke(&app, "ingest_batch", &queue_invocation(queued, &json!(1))).await;
    assert_eq!(ingest.status(), StatusCode::OK);

    // Without a key, the HTTP output says 401 and nothing is enqueued.
    let response = invoke(
        &app,
        "submit_batch",
        &http_invocation(
            &json!({"Content-Type": ["application/json"]}),
            &message.to_string(),
        ),
    )
    .await;
    let result: Value = response.json().await.expect("json");
    assert_eq!(result["Outputs"]["res"]["statusCode"], "401");
    assert!(result["Outputs"].get("batch").is_none());
}

/// `mediflow_http_requests_total` series by (route, method, status), from the metrics listener.
async fn request_counts(app: &App) -> Vec<(String, String, String, u64)> {
    let page = app.metrics_text().await;
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("mediflow_http_requests_total{")?;
            let (labels, value) = rest.split_once("} ")?;
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            Some((
                label("route"),
                label("method"),
                label("status"),
                value.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// Each request counts once in the request metrics, in both hosts: `POST /batches` standalone
/// and the `submit_batch` invocation carrying it under the Functions host are both one
/// `route="/batches"` 202 (the invocation wrapper once counted it a second time as
/// `/submit_batch`); an `ingest_batch` invocation is one `/ingest_batch`.
#[tokio::test]
async fn each_request_is_counted_once_in_the_metrics_in_both_hosts() {
    const N: u64 = 3;
    for hosting in [Hosting::Standalone, Hosting::CustomHandler] {
        let app = App::start(
            AppOptions::default()
                .hosting(hosting)
                .env("MEDIFLOW_METRICS_ADDR", "127.0.0.1:0"),
        )
        .await;
        let mut queued = Vec::new();
        for _ in 0..N {
            let message =
                json!({"batch_id": uuid::Uuid::new_v4().to_string(), "records": [valid_record()]});
            match hosting {
                Hosting::Standalone => {
                    let response = reqwest::Client::new()
                        .post(app.url("/batches"))
                        .json(&message)
                        .send()
                        .await
                        .expect("POST /batches");
                    assert_eq!(response.status(), StatusCode::ACCEPTED);
                }
                Hosting::CustomHandler => {
                    let response = invoke(&app, "submit_batch", &submit_invocation(&message)).await;
                    let result: Value = response.json().await.expect("json");
                    assert_eq!(result["Outputs"]["res"]["statusCode"], "202");
                    queued.push(result["Outputs"]["batch"].clone());
                }
            }
        }
        for message in &queued {
            let ingest = invoke(&app, "ingest_batch", &queue_invocation(message, &json!(1))).await;
            assert_eq!(ingest.status(), StatusCode::OK);
        }
        let counts = request_counts(&app).await;
        let posts: Vec<_> = counts.iter().filter(|(_, m, _, _)| m == "POST").collect();
        let expected: Vec<(&str, &str, u64)> = match hosting {
            Hosting::Standalone => vec![("/batches", "202", N)],
            Hosting::CustomHandler => vec![("/batches", "202", N), ("/ingest_batch", "200", N)],
        };
        let mut found: Vec<(&str, &str, u64)> = posts
            .iter()
            .map(|(route, _, status, n)| (route.as_str(), status.as_str(), *n))
            .collect();
        found.sort_unstable();
        assert_eq!(found, expected, "{hosting:?}: {counts:?}");
    }
}

/// A custom-handler app on a dedicated Cosmos emulator (so that its store can be taken down),
/// with extra settings.
async fn custom_handler_on(container: &CosmosContainer, settings: &[(&str, &str)]) -> App {
    let options = AppOptions::default()
        .hosting(Hosting::CustomHandler)
        .envs(container.env())
        .envs(settings.iter().copied());
    App::start(options).await
}

/// `GET /batches/{id}`: the status code and the body.
async fn batch_report(app: &App, batch_id: &str) -> (StatusCode, Value) {
    let response = reqwest::get(app.url(&format!("/batches/{batch_id}")))
        .await
        .expect("GET /batches/{id}");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The store down while an `ingest_batch` invocation runs, for less than its wait (derived from
/// host.json's `functionTimeout`: 150 s): the invocation waits instead of failing (a failure
/// would count toward poisoning), and succeeds once the store is back.
#[tokio::test]
async fn an_ingest_invocation_waits_out_a_store_outage_shorter_than_its_bound() {
    let cosmos = CosmosEmulator::dedicated();
    let container = cosmos.fresh_container().await;
    // Its own metrics port: the failed store probes are counted there.
    let app = custom_handler_on(&container, &[("MEDIFLOW_METRICS_ADDR", "127.0.0.1:0")]).await;
    assert!(
        app.logs()
            .iter()
            .any(|l| l.contains("\"store_wait_s\":150")),
        "the wait is half of host.json's 5 min functionTimeout"
    );
    let batch_id = uuid::Uuid::new_v4().to_string();
    let mut invalid = valid_record();
    invalid["patient_count"] = json!(0);
    let message = json!({"batch_id": batch_id, "records": [valid_record(), invalid]});

    cosmos.down().await;
    let started = Instant::now();
    let invocation = tokio::spawn({
        let url = app.url("/ingest_batch");
        let body = queue_invocation(&message, &json!(1));
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("invoke")
        }
    });
    // The invocation met the outage and is waiting for the store.
    app.wait_for_logs(Duration::from_secs(30), |lines| {
        lines
            .iter()
            .any(|l| l.contains("store unavailable: waiting for it"))
    })
    .await;
    // The outage lasts until the waiting invocation has probed the store and found it down
    // twice (its probes are the only store checks of this process: no /ready meanwhile, no
    // queue trigger under the Functions host), far less than the wait.
    let failed_probes = || async { store_checks_failed(&app).await >= FAILED_PROBES_BEFORE_UP };
    wait_until(
        format!("{FAILED_PROBES_BEFORE_UP} failed store probes of the waiting invocation"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        failed_probes,
    )
    .await;
    assert!(!invocation.is_finished(), "it waits instead of failing");
    cosmos.up().await;
    let response = tokio::time::timeout(Duration::from_secs(60), invocation)
        .await
        .expect("the invocation ends once the store is back")
        .expect("task");
    assert_eq!(response.status(), StatusCode::OK, "{:?}", app.logs());
    eprintln!(
        "ingest_batch across a store outage: answered 200 after {:?}",
        started.elapsed()
    );
    let (status, report) = batch_report(&app, &batch_id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["status"], "completed");
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(1), Some(1))
    );
}

/// How many of its store probes the outage test lets fail before the store comes back.
const FAILED_PROBES_BEFORE_UP: u64 = 2;

/// Failed store checks (`mediflow_store_operation_duration_seconds_count{operation="check",
/// outcome="error"}`), from the metrics listener.
async fn store_checks_failed(app: &App) -> u64 {
    app.metrics_text()
        .await
        .lines()
        .filter(|l| {
            l.starts_with("mediflow_store_operation_duration_seconds_count{")
                && l.contains(r#"operation="check""#)
                && l.contains(r#"outcome="error""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `maxDequeueCount` 3 and `functionTimeout` 4 s (so a 2 s wait), through the Functions host's
/// app settings. An attempt that fails before the last leaves the batch alone (the host retries
/// it); the last one (`DequeueCount` 3) that fails marks it `failed` with the reason, here once
/// the store is back (it was down when the attempt failed). A conflicting `batch_id` on its last
/// attempt leaves the batch registered under that id as it was.
#[tokio::test]
async fn a_failed_last_attempt_marks_the_batch_failed_with_a_reason() {
    let cosmos = CosmosEmulator::dedicated();
    let container = cosmos.fresh_container().await;
    let app = custom_handler_on(
        &container,
        &[
            ("AzureFunctionsJobHost__functionTimeout", "00:00:04"),
            (
                "AzureFunctionsJobHost__extensions__queues__maxDequeueCount",
                "3",
            ),
        ],
    )
    .await;
    let batch_id = uuid::Uuid::new_v4().to_string();
    let message = json!({"batch_id": batch_id, "records": [valid_record()]});

    // Not the last attempt: failed after the wait, nothing marked.
    cosmos.down().await;
    let started = Instant::now();
    let response = invoke(
        &app,
        "ingest_batch",
        &queue_invocation(&message, &json!("2")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it waited for the store first: {:?}",
        started.elapsed()
    );
    cosmos.up().await;
    app.wait_until_ready().await;
    assert_eq!(
        batch_report(&app, &batch_id).await.0,
        StatusCode::NOT_FOUND,
        "an attempt the host will retry marks nothing"
    );

    // The last attempt, the store still down when it fails: marked once the store answers.
    cosmos.down().await;
    let response = invoke(
        &app,
        "ingest_batch",
        &queue_invocation(&message, &json!("3")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    app.wait_for_logs(Duration::from_secs(10), |lines| {
        lines
            .iter()
            .any(|l| l.contains("cannot mark the poisoned batch failed now"))
    })
    .await;
    cosmos.up().await;
    let report = wait_until(
        Lazy(|| format!("the poisoned batch to be marked; logs: {:?}", app.logs())),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let (status, report) = batch_report(&app, &batch_id).await;
            (status == StatusCode::OK).then_some(report)
        },
    )
    .await;
    assert_eq!(report["status"], "failed", "{report}");
    let failure = report["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("3 times") && failure.contains("mediflow-batches-poison"),
        "{report}"
    );

    // A conflicting message on its last attempt: the batch under that id keeps its report.
    let done_id = uuid::Uuid::new_v4().to_string();
    let first = json!({"batch_id": done_id, "records": [valid_record()]});
    let ok = invoke(&app, "ingest_batch", &queue_invocation(&first, &json!(1))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let other = json!({"batch_id": done_id, "records": [valid_record(), valid_record()]});
    let conflict = invoke(&app, "ingest_batch", &queue_invocation(&other, &json!(3))).await;
    assert!(conflict.status().is_client_error());
    let (_, kept) = batch_report(&app, &done_id).await;
    assert_eq!(kept["status"], "completed", "{kept}");
    assert_eq!(kept["accepted"].as_u64(), Some(1));
}

/// A batch left `queued` although its message is in the poison queue (its mark was lost: the
/// store was down when the last attempt failed, then the process restarted): `handler redrive
/// --mark-failed` marks it `failed` and moves nothing; a completed batch with a poisoned copy
/// keeps its report.
#[tokio::test]
async fn redrive_mark_failed_marks_batches_whose_message_is_in_the_poison_queue() {
    let azurite = crate::support::azurite::Azurite::start().await;
    let poison = azurite.queue("mediflow-batches-poison");
    poison.create().await;
    azurite.queue("mediflow-batches").create().await;
    let store_env = crate::support::cosmos_emulator::cosmos_app_env().await;
    let app = store_env.iter().fold(
        AppOptions::default().hosting(Hosting::CustomHandler),
        |options, (k, v)| options.env(k, v.clone()),
    );
    let app = App::start(app).await;

    // Registered as queued by submit_batch; its message ends in the poison queue unmarked.
    let lost_id = uuid::Uuid::new_v4().to_string();
    let lost = json!({"batch_id": lost_id, "records": [valid_record()]});
    let result: Value = invoke(&app, "submit_batch", &submit_invocation(&lost))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(result["Outputs"]["res"]["statusCode"], "202");
    poison
        .send_json(&result["Outputs"]["batch"].to_string())
        .await;
    // Completed, with a poisoned copy of its message.
    let done_id = uuid::Uuid::new_v4().to_string();
    let done = json!({"batch_id": done_id, "records": [valid_record()]});
    let ingested = invoke(&app, "ingest_batch", &queue_invocation(&done, &json!(1))).await;
    assert_eq!(ingested.status(), StatusCode::OK);
    poison.send_json(&done.to_string()).await;
    assert_eq!(batch_report(&app, &lost_id).await.1["status"], "queued");

    let output = std::process::Command::new(crate::support::binary())
        .args(["redrive", "--mark-failed"])
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| k == "PATH"))
        .envs(store_env.iter().cloned())
        .env("MEDIFLOW_QUEUE", azurite.connection_string())
        .output()
        .expect("run handler redrive --mark-failed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let (_, marked) = batch_report(&app, &lost_id).await;
    assert_eq!(marked["status"], "failed", "{marked}");
    assert!(
        marked["failure"]
            .as_str()
            .is_some_and(|f| f.contains("mediflow-batches-poison")),
        "{marked}"
    );
    assert_eq!(batch_report(&app, &done_id).await.1["status"], "completed");
    assert_eq!(poison.count().await, 2, "nothing was moved");
}

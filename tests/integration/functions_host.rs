//! The binary as the Azure Functions host runs it (`FUNCTIONS_CUSTOMHANDLER_PORT`): the readiness
//! ping, forwarded HTTP functions, and the `{"Data","Metadata"}` invocations of `submit_batch`
//! and `ingest_batch`, with the payload shapes from the Functions docs and the host's quirks
//! (double-encoded strings, DequeueCount as a string, base64).

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{App, AppOptions, Hosting, valid_record};

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

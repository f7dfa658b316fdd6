//! Who may do what, end to end with a client table (issue 22): a site-scoped submitter cannot
//! create, read or list another site's records; a reviewer reviews and the history names each
//! client with old value, new value and reason; idempotency keys and batch ids are each client's
//! own (these three through the router in process); queue messages must prove their client in
//! both hosts, and an unattributable one is never stored (the standalone trigger on Azurite and
//! the Functions host's invocation: processes).

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::azurite::Azurite;
use crate::support::router::{Setup, TestApp, spawn_app};
use crate::support::{App, AppOptions, Hosting, valid_record, wait_until};

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    handler::domain::audit::hex(bytes)
}

/// Two uploaders (one site each), a reader of SITE001, a reviewer and an auditor of every site.
fn table() -> String {
    let client = |id: &str, key: &str, roles: &[&str], sites: &[&str]| json!({"id": id, "key_sha256": [hex(&digest(key))], "roles": roles, "sites": sites});
    json!({"clients": [
        client("up1", "k-up1", &["submit"], &["SITE001"]),
        client("up2", "k-up2", &["submit"], &["SITE002"]),
        client("reader1", "k-reader1", &["read"], &["SITE001"]),
        client("monitor", "k-monitor", &["read", "review"], &["*"]),
        client("auditor", "k-auditor", &["audit", "read"], &["*"]),
    ]})
    .to_string()
}

/// The router in process with [`table`] in force.
async fn in_process() -> TestApp {
    spawn_app(Setup::default().keys(table())).await
}

/// A process with [`table`] in force (its key file in a folder of its own).
struct Deployment {
    app: TestApp,
    _dir: tempfile::TempDir,
}

async fn deployment(options: AppOptions) -> Deployment {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api-keys");
    std::fs::write(&path, table()).expect("table");
    let app = App::start(options.env("MEDIFLOW_API_KEYS_FILE", path.display().to_string())).await;
    Deployment {
        app: TestApp::from(app),
        _dir: dir,
    }
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app.request(method, path).key(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await;
    (answer.status, answer.json_or_null())
}

fn record_of(site: &str) -> Value {
    let mut record = valid_record();
    record["site_id"] = json!(site);
    record
}

#[tokio::test]
#[expect(clippy::too_many_lines, reason = "one table of cases, one row each")]
async fn a_site_scoped_client_cannot_create_read_or_list_another_sites_records() {
    let app = &in_process().await;
    let (status, own) = call(
        app,
        Method::POST,
        "/records",
        "k-up1",
        Some(record_of("site001")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    let (status, other) = call(
        app,
        Method::POST,
        "/records",
        "k-up2",
        Some(record_of("SITE002")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let own_path = format!("/records/{}", own["id"].as_str().expect("id"));
    let other_path = format!("/records/{}", other["id"].as_str().expect("id"));
    let mut validated = record_of("SITE001");
    validated["status"] = json!("validated");

    // (what the case proves, method, path, key, body, status, words the detail holds)
    let cases = [
        (
            "an uploader cannot create for another site",
            Method::POST,
            "/records".to_owned(),
            "k-up1",
            Some(record_of("SITE002")),
            StatusCode::FORBIDDEN,
            "may not access site SITE002",
        ),
        (
            "an uploader without review submits only pending",
            Method::POST,
            "/records".to_owned(),
            "k-up1",
            Some(validated.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            "a reviewer without the submit role cannot submit",
            Method::POST,
            "/records".to_owned(),
            "k-monitor",
            Some(validated),
            StatusCode::FORBIDDEN,
            "does not hold the role submit",
        ),
        (
            "a reader reads its site",
            Method::GET,
            own_path.clone(),
            "k-reader1",
            None,
            StatusCode::OK,
            "",
        ),
        (
            "another site's record is not found, not forbidden",
            Method::GET,
            other_path.clone(),
            "k-reader1",
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            "a reader lists its site",
            Method::GET,
            "/records?site_id=SITE001".to_owned(),
            "k-reader1",
            None,
            StatusCode::OK,
            "",
        ),
        (
            "a listing of another site is refused",
            Method::GET,
            "/records?site_id=SITE002".to_owned(),
            "k-reader1",
            None,
            StatusCode::FORBIDDEN,
            "may not access site SITE002",
        ),
        (
            "a reader cannot read the audit trail",
            Method::GET,
            format!("{other_path}/history"),
            "k-reader1",
            None,
            StatusCode::FORBIDDEN,
            "does not hold the role audit",
        ),
        (
            "a reader cannot review",
            Method::POST,
            format!("{own_path}/review"),
            "k-reader1",
            Some(json!({"status": "validated", "reason": "ok"})),
            StatusCode::FORBIDDEN,
            "does not hold the role review",
        ),
    ];
    for (proves, method, path, key, body, expected, words) in cases {
        let (status, answer) = call(app, method, &path, key, body).await;
        assert_eq!(status, expected, "{proves}: {answer}");
        if expected == StatusCode::NOT_FOUND {
            assert_eq!(
                answer,
                json!({"detail": "Record not found"}),
                "{proves}: no existence leak"
            );
        }
        if !words.is_empty() {
            let detail = answer["detail"].as_str().unwrap_or_default();
            assert!(detail.contains(words), "{proves}: {detail}");
        }
    }
    let (_, page) = call(
        app,
        Method::GET,
        "/records?site_id=SITE001",
        "k-reader1",
        None,
    )
    .await;
    assert!(
        page["records"]
            .as_array()
            .expect("records")
            .iter()
            .all(|r| r["site_id"] == "SITE001")
    );
}

#[tokio::test]
async fn a_reviewer_reviews_and_the_history_names_every_client() {
    let app = &in_process().await;
    let (_, created) = call(
        app,
        Method::POST,
        "/records",
        "k-up1",
        Some(record_of("SITE001")),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let review = json!({"status": "rejected", "reason": "Patient count does not match the source"});
    let (status, reviewed) = call(
        app,
        Method::POST,
        &format!("/records/{id}/review"),
        "k-monitor",
        Some(review.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reviewed}");
    assert_eq!(reviewed["status"], "rejected");
    let (status, _) = call(
        app,
        Method::POST,
        &format!("/records/{id}/review"),
        "k-monitor",
        Some(review),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "reviewed once");
    let (_, _) = call(app, Method::GET, "/records/x", "k-wrong", None).await;

    let (status, history) = call(
        app,
        Method::GET,
        &format!("/records/{id}/history"),
        "k-auditor",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let events = history["events"].as_array().expect("events");
    let by = |action: &str| {
        events
            .iter()
            .filter(|e| e["action"] == action)
            .collect::<Vec<_>>()
    };
    assert_eq!(by("create").len(), 1);
    assert_eq!(by("create")[0]["client"], "up1", "the creator");
    assert_eq!(
        by("review").len(),
        1,
        "the refused second review changed nothing"
    );
    let review = by("review")[0];
    assert_eq!(review["client"], "monitor");
    assert_eq!(
        (review["old_status"].as_str(), review["new_status"].as_str()),
        (Some("pending"), Some("rejected"))
    );
    assert_eq!(review["reason"], "Patient count does not match the source");

    // Refusals are buffered events: durable within a second.
    wait_until(
        "the refused request (401) in the audit trail",
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async {
            let (_, refused) = call(
                app,
                Method::GET,
                "/audit?client=unauthenticated",
                "k-auditor",
                None,
            )
            .await;
            refused["events"].as_array().is_some_and(|events| {
                events
                    .iter()
                    .any(|e| e["action"] == "refused" && e["outcome"] == "401")
            })
        },
    )
    .await;
    let (_, denied) = call(app, Method::GET, "/audit?client=monitor", "k-auditor", None).await;
    assert!(
        denied["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["action"] == "review")
    );
}

#[tokio::test]
async fn idempotency_keys_and_batch_ids_belong_to_their_client() {
    let app = &in_process().await;
    let post = |key: &'static str, site: &'static str| {
        app.post("/records")
            .key(key)
            .header("idempotency-key", "shared-key-1")
            .json(&record_of(site))
            .send()
    };
    let first = post("k-up1", "SITE001").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = post("k-up2", "SITE002").await;
    assert_eq!(
        second.status,
        StatusCode::CREATED,
        "the same key from another client is another write"
    );
    assert_ne!(first.json()["id"], second.json()["id"]);
    let replay = post("k-up1", "SITE001").await;
    assert_eq!(
        replay.header("idempotent-replayed"),
        "true",
        "its own key replays"
    );

    let batch_id = uuid::Uuid::new_v4().to_string();
    let batch = |site: &str| json!({"batch_id": batch_id, "records": [record_of(site)]});
    let (status, report) = call(
        app,
        Method::POST,
        "/batches",
        "k-up1",
        Some(batch("SITE001")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    let (status, report2) = call(
        app,
        Method::POST,
        "/batches",
        "k-up2",
        Some(batch("SITE002")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the same batch id from another client: {report2}"
    );
    let (status, _) = call(
        app,
        Method::POST,
        "/batches",
        "k-up1",
        Some(batch("SITE002")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a row of another site");
    let path = format!("/batches/{batch_id}");
    let (_, mine) = call(app, Method::GET, &path, "k-up1", None).await;
    let (_, theirs) = call(app, Method::GET, &path, "k-up2", None).await;
    assert_eq!(mine["client"], "up1");
    assert_eq!(theirs["client"], "up2");
    assert_ne!(
        mine["record_ids"], theirs["record_ids"],
        "each client's batch is its own"
    );
}

/// The envelope a client sends to the queue, built here from the contract (not the CLI's code).
fn envelope(client: &str, key: &str, message: &Value) -> String {
    let payload = message.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(&digest(key)).expect("any key length");
    mac.update(payload.as_bytes());
    json!({"client": client, "hmac_sha256": hex(&mac.finalize().into_bytes()), "payload": payload})
        .to_string()
}

#[tokio::test]
async fn the_standalone_trigger_stores_signed_batches_as_their_client_and_poisons_the_rest() {
    let azurite = Azurite::start().await;
    let queue = azurite.queue("mediflow-batches");
    queue.create().await;
    // A short poison budget: refused messages are tried maxDequeueCount (2) times, 1 s apart.
    let d = deployment(
        AppOptions::default()
            .env("MEDIFLOW_QUEUE", azurite.connection_string())
            .env(
                "AzureFunctionsJobHost__extensions__queues__visibilityTimeout",
                "00:00:01",
            )
            .env(
                "AzureFunctionsJobHost__extensions__queues__maxDequeueCount",
                "2",
            ),
    )
    .await;
    let app = &d.app;
    app.process().wait_until_ready().await;
    let message = |site: &str| json!({"batch_id": uuid::Uuid::new_v4().to_string(), "records": [record_of(site)]});
    let signed = message("SITE001");
    queue.send_text(&envelope("up1", "k-up1", &signed)).await;
    let unsigned = message("SITE001");
    queue.send_json(&unsigned.to_string()).await;
    let forged = message("SITE001");
    queue
        .send_text(&envelope("up1", "k-not-up1", &forged))
        .await;

    let path = format!("/batches/{}", signed["batch_id"].as_str().expect("id"));
    let report = wait_until(
        "the signed batch to be completed",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let (status, body) = call(app, Method::GET, &path, "k-up1", None).await;
            (status == StatusCode::OK && body["status"] == "completed").then_some(body)
        },
    )
    .await;
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["client"], "up1");
    let poison = azurite.queue("mediflow-batches-poison");
    wait_until(
        "the unsigned and the forged message in the poison queue",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { poison.count().await >= 2 },
    )
    .await;
    for refused in [&unsigned, &forged] {
        for key in ["k-up1", "k-up2"] {
            let (status, _) = call(
                app,
                Method::GET,
                &format!("/batches/{}", refused["batch_id"].as_str().expect("id")),
                key,
                None,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "an unattributable message stored nothing"
            );
        }
    }
    let record_id = report["record_ids"][0].as_str().expect("record id");
    let (_, history) = call(
        app,
        Method::GET,
        &format!("/records/{record_id}/history"),
        "k-auditor",
        None,
    )
    .await;
    assert_eq!(
        history["events"][0]["client"], "up1",
        "the batch record's creator is the signer"
    );
}

#[tokio::test]
async fn under_the_functions_host_an_unattributable_message_fails_and_a_signed_one_is_stored() {
    let d = deployment(AppOptions::default().hosting(Hosting::CustomHandler)).await;
    let app = &d.app;
    app.process().wait_until_ready().await;
    let invoke = |text: String| async move {
        let invocation =
            json!({"Data": {"batch": text}, "Metadata": {"DequeueCount": 1, "Id": "m-1"}});
        app.post("/ingest_batch")
            .header(
                "x-azure-functions-invocationid",
                &uuid::Uuid::new_v4().to_string(),
            )
            .json(&invocation)
            .send()
            .await
            .status
    };
    let unsigned =
        json!({"batch_id": uuid::Uuid::new_v4().to_string(), "records": [record_of("SITE001")]});
    let status = invoke(unsigned.to_string()).await;
    assert!(
        status.is_client_error(),
        "refused, so the host retries then poisons it: {status}"
    );
    let signed =
        json!({"batch_id": uuid::Uuid::new_v4().to_string(), "records": [record_of("SITE001")]});
    assert_eq!(
        invoke(envelope("up1", "k-up1", &signed)).await,
        StatusCode::OK
    );
    let (status, report) = call(
        app,
        Method::GET,
        &format!("/batches/{}", signed["batch_id"].as_str().expect("id")),
        "k-up1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["status"], "completed");
    assert_eq!(report["client"], "up1");
}

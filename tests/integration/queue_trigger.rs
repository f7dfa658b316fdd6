//! The standalone host's queue trigger against Azurite, end to end: the real binary (embedded
//! store) reads `mediflow-batches`, ingests, deletes, retries and poisons, across emulator
//! outages, `kill -9` and SIGTERM. Plus the batch message's published JSON Schema.
//!
//! Store outages (nothing poisoned; the trigger pauses, then completes the batch) and the redrive
//! of poisoned messages use the Cosmos emulator's fault injection (`support::cosmos_emulator`).

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::azurite::{Azurite, DeleteGate};
use crate::support::{App, AppOptions, Lazy, valid_record};

const QUEUE: &str = "mediflow-batches";
const POISON: &str = "mediflow-batches-poison";

/// Azurite with the batch queue created (as Terraform does).
async fn azurite() -> Azurite {
    let azurite = Azurite::start().await;
    azurite.queue(QUEUE).create().await;
    azurite
}

async fn app_on(connection: String) -> App {
    let app = App::start(AppOptions::default().env("MEDIFLOW_QUEUE", connection)).await;
    app.wait_until_ready().await;
    app
}

/// A batch message with `valid` valid records, then `invalid` records with patient_count 0.
fn batch(valid: usize, invalid: usize, tag: &str) -> (String, Value) {
    let batch_id = uuid::Uuid::new_v4().to_string();
    let mut records = Vec::new();
    for n in 0..valid {
        let mut record = valid_record();
        record["notes"] = json!(format!("{tag} record {n}"));
        records.push(record);
    }
    for _ in 0..invalid {
        let mut record = valid_record();
        record["patient_count"] = json!(0);
        records.push(record);
    }
    (
        batch_id.clone(),
        json!({"batch_id": batch_id, "records": records}),
    )
}

async fn report(app: &App, batch_id: &str) -> Option<Value> {
    let response = reqwest::get(app.url(&format!("/batches/{batch_id}")))
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    response.json().await.ok()
}

/// Waits until every batch's report says `completed`; returns the reports in order.
async fn completed(app: &App, batch_ids: &[String], within: Duration) -> Vec<Value> {
    let reports = std::cell::RefCell::new(vec![Value::Null; batch_ids.len()]);
    let done = || {
        reports
            .borrow()
            .iter()
            .filter(|r| r["status"] == "completed")
            .count()
    };
    let what = Lazy(|| {
        format!(
            "{} batches to be completed ({} were); logs:\n{}",
            batch_ids.len(),
            done(),
            app.logs().join("\n")
        )
    });
    crate::support::wait_until(what, within, Duration::from_millis(100), || async {
        for (n, id) in batch_ids.iter().enumerate() {
            if reports.borrow()[n]["status"] != "completed" {
                let now = report(app, id).await.unwrap_or(Value::Null);
                reports.borrow_mut()[n] = now;
            }
        }
        done() == batch_ids.len()
    })
    .await;
    reports.into_inner()
}

async fn queue_metric(app: &App, outcome: &str) -> u64 {
    let text = app.metrics_text().await;
    let prefix = format!("mediflow_queue_messages_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// No log line holds message content, the account key or a SAS signature (the SDK's own request
/// log writes `sig=REDACTED`).
fn assert_logs_are_clean(app: &App, content_markers: &[&str]) {
    for line in app.logs() {
        let signature_shown = line
            .split("sig=")
            .skip(1)
            .any(|rest| !rest.starts_with("REDACTED"));
        assert!(
            !line.contains(crate::support::azurite::KEY) && !signature_shown,
            "a secret was logged: {line}"
        );
        for marker in content_markers {
            assert!(!line.contains(marker), "message content was logged: {line}");
        }
    }
}

#[tokio::test]
async fn queue_messages_are_ingested_and_redelivery_or_resubmission_adds_nothing() {
    let azurite = azurite().await;
    let app = app_on(azurite.connection_string()).await;
    let queue = azurite.queue(QUEUE);
    let client = reqwest::Client::new();
    // (valid, invalid) records per message: all valid, mixed, all invalid, one record.
    let shapes = [(5, 0), (3, 2), (0, 4), (1, 0), (20, 5), (2, 1)];
    let mut messages = Vec::new();
    for (n, (valid, invalid)) in shapes.iter().enumerate() {
        let (id, message) = batch(*valid, *invalid, &format!("PATIENT-NOTE-{n}"));
        queue.send_json(&message.to_string()).await;
        messages.push((id, message));
    }
    let ids: Vec<String> = messages.iter().map(|(id, _)| id.clone()).collect();
    let reports = completed(&app, &ids, Duration::from_secs(30)).await;

    let invalid_detail: Value = {
        let mut record = valid_record();
        record["patient_count"] = json!(0);
        client
            .post(app.url("/records"))
            .json(&record)
            .send()
            .await
            .expect("POST /records")
            .json::<Value>()
            .await
            .expect("json")["detail"]
            .clone()
    };
    for ((report, (valid, invalid)), (_, message)) in reports.iter().zip(shapes).zip(&messages) {
        assert_report_matches(&app, report, (valid, invalid), message, &invalid_detail).await;
    }

    // Redelivery (the same message again on the queue) and resubmission (POST /batches).
    let (first_id, first) = &messages[1];
    queue.send_json(&first.to_string()).await;
    let resubmitted = client
        .post(app.url("/batches"))
        .json(first)
        .send()
        .await
        .expect("POST /batches");
    assert_eq!(resubmitted.status(), StatusCode::ACCEPTED);
    wait_until(
        "the batch queue to be empty (the redelivered message handled)",
        Duration::from_secs(20),
        || async { queue.count().await == 0 },
    )
    .await;
    let again = report(&app, first_id).await.expect("report");
    assert_eq!(
        again, reports[1],
        "same record ids, same counts after redelivery and resubmission"
    );
    // The redelivered message was received and deleted; the resubmission was answered from the
    // stored report without being queued again.
    assert_eq!(
        queue_metric(&app, "completed").await,
        shapes.len() as u64 + 1
    );
    assert_eq!(
        azurite.queue(POISON).count().await,
        0,
        "nothing was poisoned"
    );
    assert_logs_are_clean(&app, &["PATIENT-NOTE"]);
}

/// A completed report says what became of each record of `message` (`valid` valid records
/// first, then `invalid` ones): counts, readable records in input order, the rejection detail.
async fn assert_report_matches(
    app: &App,
    report: &Value,
    (valid, invalid): (usize, usize),
    message: &Value,
    invalid_detail: &Value,
) {
    assert_eq!(
        (
            report["received"].as_u64(),
            report["accepted"].as_u64(),
            report["rejected"].as_u64()
        ),
        (
            Some((valid + invalid) as u64),
            Some(valid as u64),
            Some(invalid as u64)
        ),
        "{report}"
    );
    let record_ids = report["record_ids"].as_array().expect("record_ids");
    assert_eq!(record_ids.len(), valid);
    for (n, id) in record_ids.iter().enumerate() {
        let stored = app
            .get_json(&format!("/records/{}", id.as_str().expect("id")))
            .await;
        assert_eq!(
            stored["notes"], message["records"][n]["notes"],
            "record {n} of {}",
            report["batch_id"]
        );
    }
    let rejected = report["rejected_records"]
        .as_array()
        .expect("rejected_records");
    for (k, rejected) in rejected.iter().enumerate() {
        assert_eq!(
            rejected["index"],
            json!(valid + k),
            "invalid records follow the valid ones"
        );
        assert_eq!(
            rejected["detail"], *invalid_detail,
            "the same detail POST /records gives"
        );
    }
}

/// Polls `condition` (queue counts, reports: each check is a request) every 100 ms until it
/// holds, failing the test after `within`, naming `what` was awaited.
async fn wait_until<F, Fut>(what: &str, within: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    crate::support::wait_until(what, within, Duration::from_millis(100), condition).await;
}

#[tokio::test]
async fn post_batches_with_a_queue_answers_202_queued_and_the_trigger_completes_it() {
    let azurite = azurite().await;
    // The account SAS URL form of MEDIFLOW_QUEUE.
    let app = app_on(azurite.sas_url()).await;
    let (batch_id, message) = batch(3, 1, "posted");
    let client = reqwest::Client::new();
    let response = client
        .post(app.url("/batches"))
        .json(&message)
        .send()
        .await
        .expect("POST /batches");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response.headers()["location"],
        format!("/batches/{batch_id}").as_str()
    );
    let answer: Value = response.json().await.expect("json");
    assert_eq!(
        (answer["status"].as_str(), answer["received"].as_u64()),
        (Some("queued"), Some(4))
    );
    let reports = completed(
        &app,
        std::slice::from_ref(&batch_id),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        (
            reports[0]["accepted"].as_u64(),
            reports[0]["rejected"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(
        azurite.queue(QUEUE).count().await,
        0,
        "deleted once ingested"
    );
}

/// One rule in both hosts (docs/adr/0011): a message that cannot succeed as it stands is tried
/// like any other and poisoned after `maxDequeueCount` attempts (here 2, 1 s apart), keeping its
/// original text; nothing of it is stored.
#[tokio::test]
async fn undecodable_and_conflicting_messages_are_poisoned_after_max_dequeue_count_with_nothing_half_stored()
 {
    let azurite = azurite().await;
    let app = App::start(
        AppOptions::default()
            .env("MEDIFLOW_QUEUE", azurite.connection_string())
            .envs(SHORT_POISON_BUDGET),
    )
    .await;
    app.wait_until_ready().await;
    let queue = azurite.queue(QUEUE);
    let (batch_id, original) = batch(2, 0, "original");
    queue.send_json(&original.to_string()).await;
    let before = completed(
        &app,
        std::slice::from_ref(&batch_id),
        Duration::from_secs(20),
    )
    .await
    .remove(0);

    // The same batch_id with different records; text that is not base64; base64 that is not a batch.
    let mut conflicting = original.clone();
    conflicting["records"][0]["notes"] = json!("changed");
    conflicting["records"]
        .as_array_mut()
        .expect("records")
        .push(valid_record());
    let poisoned_texts = [
        {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(conflicting.to_string())
        },
        "this is not base64 %%%".to_owned(),
        {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(r#"{"batch_id": "not-a-uuid", "records": []}"#)
        },
    ];
    for text in &poisoned_texts {
        queue.send_text(text).await;
    }
    let poison = azurite.queue(POISON);
    wait_until(
        "the three messages moved to the poison queue",
        Duration::from_secs(20),
        || async { poison.count().await == 3 && queue.count().await == 0 },
    )
    .await;
    let mut kept = poison.peek().await;
    kept.sort();
    let mut expected = poisoned_texts.to_vec();
    expected.sort();
    assert_eq!(kept, expected, "the poison queue keeps each original text");
    assert_eq!(
        queue_metric(&app, "invalid").await,
        3,
        "each is counted invalid once, when it is poisoned"
    );
    assert_eq!(
        queue_metric(&app, "retried").await,
        3,
        "each was tried maxDequeueCount (2) times: one retry, then the poison queue"
    );
    assert_eq!(
        report(&app, &batch_id).await.expect("report"),
        before,
        "the conflicting batch changed nothing"
    );
    for id in before["record_ids"].as_array().expect("ids") {
        let stored: Value = app
            .get_json(&format!("/records/{}", id.as_str().expect("id")))
            .await;
        assert_ne!(stored["notes"], "changed");
    }
}

#[tokio::test]
async fn the_trigger_survives_an_azurite_outage_and_ingests_what_is_sent_after() {
    let mut azurite = azurite().await;
    let app = app_on(azurite.connection_string()).await;
    azurite.stop();
    app.wait_for_logs(Duration::from_secs(30), |lines| {
        lines
            .iter()
            .any(|l| l.contains("cannot receive batch messages"))
    })
    .await;
    assert!(
        reqwest::get(app.url("/health"))
            .await
            .is_ok_and(|r| r.status().is_success()),
        "still serving"
    );
    azurite.restart().await;
    let (batch_id, message) = batch(2, 0, "after the outage");
    azurite.queue(QUEUE).send_json(&message.to_string()).await;
    // The trigger backs off at most 10 s between attempts while the queue is unreachable.
    completed(&app, &[batch_id], Duration::from_secs(40)).await;
    assert_logs_are_clean(&app, &["after the outage"]);
}

#[tokio::test]
async fn kill_9_mid_batch_then_restart_loses_nothing_and_doubles_nothing() {
    const MESSAGES: usize = 60;
    let azurite = azurite().await;
    let queue = azurite.queue(QUEUE);
    let mut messages = Vec::new();
    for n in 0..MESSAGES {
        let (id, message) = batch(240, 2, &format!("kill {n}"));
        queue.send_json(&message.to_string()).await;
        messages.push(id);
    }
    // The handler reaches Azurite through a gate that holds back message deletes: the first held
    // one says a batch is ingested while its message is still leased by this process, whatever
    // the speed of the machine. That is when the kill comes (other received messages may be
    // anywhere between receipt and delete).
    let gate = DeleteGate::start(&azurite);
    gate.hold();
    let mut app = app_on(gate.connection_string()).await;
    assert!(
        gate.wait_for_held(1, Duration::from_secs(60)).await,
        "no batch was ingested within 60 s; logs:\n{}",
        app.logs().join("\n")
    );
    app.kill_hard();
    let left = queue.count().await;
    assert!(
        left > 0,
        "the held message is still on the queue (the test proves nothing otherwise)"
    );

    gate.pass();
    let app = app.restart().await;
    // Messages leased by the killed process come back when their lease (30 s) ends; the held one
    // is then handled a second time.
    let reports = completed(&app, &messages, Duration::from_secs(180)).await;
    app.wait_for_logs(Duration::from_secs(90), |lines| {
        lines.iter().any(|line| {
            let line: Value = serde_json::from_str(line).unwrap_or_default();
            line["fields"]["message"] == "batch message completed"
                && line["fields"]["dequeue_count"].as_u64() >= Some(2)
        })
    })
    .await;
    let mut all_ids = HashSet::new();
    for report in &reports {
        assert_eq!(
            (
                report["received"].as_u64(),
                report["accepted"].as_u64(),
                report["rejected"].as_u64()
            ),
            (Some(242), Some(240), Some(2)),
            "{report}"
        );
        for id in report["record_ids"].as_array().expect("ids") {
            assert!(
                all_ids.insert(id.as_str().expect("id").to_owned()),
                "record id {id} appears twice"
            );
        }
    }
    assert_eq!(all_ids.len(), MESSAGES * 240);
    // A sample of the records is readable with the right content.
    for (n, report) in reports.iter().enumerate().step_by(10) {
        let id = report["record_ids"][7].as_str().expect("id");
        let stored: Value = app.get_json(&format!("/records/{id}")).await;
        assert_eq!(stored["notes"], format!("kill {n} record 7"));
    }
    wait_until(
        "the batch queue to be empty",
        Duration::from_secs(60),
        || async { queue.count().await == 0 },
    )
    .await;
    assert_eq!(
        azurite.queue(POISON).count().await,
        0,
        "nothing was poisoned"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_messages_and_exits_0_within_the_drain_time() {
    let azurite = azurite().await;
    let queue = azurite.queue(QUEUE);
    let mut messages = Vec::new();
    // Big batches keep the trigger busy, so SIGTERM lands with messages in flight.
    for n in 0..60 {
        let (id, message) = batch(240, 0, &format!("term {n}"));
        queue.send_json(&message.to_string()).await;
        messages.push(id);
    }
    let data = tempfile::tempdir().expect("temp dir");
    let options = AppOptions::default()
        .env("MEDIFLOW_QUEUE", azurite.connection_string())
        .data_dir(data.path());
    let mut app = App::start(options).await;
    app.wait_until_ready().await;
    wait_until(
        "a first message completed",
        Duration::from_secs(30),
        || async { queue_metric(&app, "completed").await > 0 },
    )
    .await;
    let started = Instant::now();
    app.send_sigterm();
    let status = app.wait_for_exit(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status after SIGTERM: {status:?}; logs:\n{}",
        app.logs().join("\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "exited within the drain time ({:?})",
        started.elapsed()
    );
    let in_flight_at_stop = app.logs().iter().find_map(|line| {
        let line: Value = serde_json::from_str(line).unwrap_or_default();
        let stopping = line["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("queue trigger stopping"));
        stopping
            .then(|| line["fields"]["in_flight"].as_u64())
            .flatten()
    });
    assert!(
        in_flight_at_stop.is_some_and(|n| n > 0),
        "no message was in flight at SIGTERM ({in_flight_at_stop:?}); the test proves nothing"
    );
    assert!(
        app.logs()
            .iter()
            .any(|l| l.contains("queue trigger stopped")),
        "the trigger drained"
    );

    // Every message is either done (batch completed, message deleted) or untouched on the queue:
    // nothing was left leased half-way.
    drop(app);
    let app = App::start(AppOptions::default().data_dir(data.path())).await; // no queue: only reads
    app.wait_until_ready().await;
    let mut done = 0;
    for id in &messages {
        if report(&app, id)
            .await
            .is_some_and(|r| r["status"] == "completed")
        {
            done += 1;
        }
    }
    let left = queue.count().await;
    assert!(
        left > 0,
        "SIGTERM came after every message was handled; the test proves nothing"
    );
    assert_eq!(
        done + usize::try_from(left).expect("count"),
        messages.len(),
        "{done} completed + {left} on the queue"
    );
    assert_eq!(
        queue.peek().await.len(),
        usize::try_from(left.min(32)).expect("count"),
        "no message is still leased"
    );
}

/// The published JSON Schema of the batch message names exactly the record fields the decoder
/// accepts, forbids others, and states the envelope's limits.
#[test]
fn the_batch_message_schema_matches_the_decoder() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/schemas/batch-message.schema.json"
    );
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the schema"))
            .expect("the schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], json!(["batch_id", "records"]));
    assert_eq!(schema["properties"]["batch_id"]["format"], "uuid");
    let records = &schema["properties"]["records"];
    assert_eq!(
        (records["minItems"].as_u64(), records["maxItems"].as_u64()),
        (
            Some(1),
            Some(handler::domain::BatchMessage::MAX_RECORDS as u64)
        )
    );
    let record = match records["items"].get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/$defs/")
                .expect("a local $defs reference");
            &schema["$defs"][name]
        }
        None => &records["items"],
    };
    assert_eq!(record["additionalProperties"], false);
    let named: Vec<&str> = record["properties"]
        .as_object()
        .expect("record properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        named,
        handler::domain::decode::FIELDS,
        "the same fields, in wire order"
    );
    let required: Vec<&str> = record["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        required,
        &handler::domain::decode::FIELDS[..5],
        "every field but notes is required"
    );
}

/// Receives the only message of the batch queue `times` times without deleting it, as consumers
/// that died would: its dequeue count is then `times`.
async fn receive_and_abandon(azurite: &Azurite, times: usize) {
    let consumer = handler::queue::client::BatchQueue::connect(
        &handler::config::QueueConfig::Connection(handler::secret::Secret::new(
            azurite.connection_string(),
        )),
        QUEUE,
        true,
    )
    .await
    .expect("queue client");
    let receptions = std::cell::Cell::new(0);
    crate::support::wait_until(
        format!("the message to be received {times} times (it reappears after each lease)"),
        Duration::from_secs(30),
        Duration::ZERO, // each receive waits itself, for a message to be visible again
        || async {
            let received = consumer
                .receive(1, Duration::from_secs(1))
                .await
                .expect("receive")
                .len();
            receptions.set(receptions.get() + received);
            receptions.get() >= times
        },
    )
    .await;
}

/// A short poison budget: `maxDequeueCount` 2 and a 1 s `visibilityTimeout` (the Functions
/// host's app-setting overrides, which the standalone host reads too).
const SHORT_POISON_BUDGET: [(&str, &str); 2] = [
    (
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout",
        "00:00:01",
    ),
    (
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount",
        "2",
    ),
];

/// An app on Cosmos and Azurite whose poison budget is short ([`SHORT_POISON_BUDGET`]).
async fn start_with_short_queue_settings(
    azurite: &Azurite,
    container: &crate::support::cosmos_emulator::CosmosContainer,
) -> App {
    let options = AppOptions::default()
        .env("MEDIFLOW_QUEUE", azurite.connection_string())
        .envs(container.env())
        .envs(SHORT_POISON_BUDGET);
    App::start(options).await
}

/// The store down (Cosmos emulator's fault injection) for longer than the poison budget
/// (`maxDequeueCount` 2 x `visibilityTimeout` 1 s, shortened through the Functions host's
/// app-setting overrides): nothing is poisoned, the trigger stops receiving until the store
/// answers, then the batch completes. A message that does reach the poison queue (here: received
/// more than `maxDequeueCount` times by consumers that died) marks its batch `failed` with a
/// reason, and `handler redrive` brings it back to completion.
#[tokio::test]
async fn a_store_outage_poisons_nothing_and_redrive_completes_what_was_poisoned() {
    let azurite = azurite().await;
    let cosmos = crate::support::cosmos_emulator::CosmosEmulator::dedicated();
    let container = cosmos.fresh_container().await;
    let (queue, poison) = (azurite.queue(QUEUE), azurite.queue(POISON));

    // A message whose earlier consumers died three times (dequeue count 3 > maxDequeueCount 2).
    let (abandoned_id, abandoned) = batch(2, 0, "abandoned");
    queue.send_json(&abandoned.to_string()).await;
    receive_and_abandon(&azurite, 3).await;
    let app = start_with_short_queue_settings(&azurite, &container).await;

    // Poisoned on arrival: the batch says failed, and why.
    wait_until(
        "the abandoned batch to be marked failed",
        Duration::from_secs(60),
        || async {
            report(&app, &abandoned_id)
                .await
                .is_some_and(|r| r["status"] == "failed")
        },
    )
    .await;
    let failed = report(&app, &abandoned_id).await.expect("report");
    assert!(
        failed["failure"]
            .as_str()
            .is_some_and(|f| f.contains(POISON)),
        "{failed}"
    );
    // The batch is marked before its message is moved: wait for the move.
    wait_until(
        "the abandoned message moved to the poison queue",
        Duration::from_secs(30),
        || async { poison.count().await == 1 },
    )
    .await;

    // Redrive: back on the queue, ingested, completed.
    let redrive = Command::new(crate::support::binary())
        .arg("redrive")
        .env_clear()
        .env("MEDIFLOW_QUEUE", azurite.connection_string())
        .output()
        .expect("run handler redrive");
    assert!(
        redrive.status.success(),
        "{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    let reports = completed(
        &app,
        std::slice::from_ref(&abandoned_id),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(reports[0]["accepted"].as_u64(), Some(2));
    assert!(reports[0].get("failure").is_none(), "{}", reports[0]);
    assert_eq!(poison.count().await, 0, "the poison queue was emptied");

    // An outage longer than the poison budget: the trigger pauses instead of burning attempts.
    cosmos.down().await;
    let (outage_id, outage) = batch(3, 1, "outage");
    queue.send_json(&outage.to_string()).await;
    // Five failed probes at doubling intervals (from 250 ms) span well over the 2 s budget.
    app.wait_for_logs(Duration::from_secs(60), |lines| {
        lines
            .iter()
            .filter(|l| l.contains("store still unavailable"))
            .count()
            >= 5
    })
    .await;
    assert_eq!(
        poison.count().await,
        0,
        "nothing was poisoned during the outage"
    );
    assert_eq!(queue.count().await, 1, "the batch waits on the queue");
    cosmos.up().await;
    let reports = completed(
        &app,
        std::slice::from_ref(&outage_id),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        (
            reports[0]["accepted"].as_u64(),
            reports[0]["rejected"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(poison.count().await, 0);
}

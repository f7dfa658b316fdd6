//! Reviews and the audit trail on the embedded store: a pending record is reviewed once (409
//! after, 412 on a stale If-Match), each action has its event with old value, new value and
//! reason, read events are durable within a second (these through the router in process); and,
//! processes, `kill -9` under load leaves no acknowledged record without its create event, and
//! `handler audit verify` names a changed event.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::router::{Setup, TestApp, spawn_app};
use crate::support::{App, valid_record, wait_until};

async fn create(app: &TestApp, status: &str) -> Value {
    let mut body = valid_record();
    body["status"] = Value::from(status);
    let response = app.post("/records").json(&body).send().await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    response.json()
}

async fn review(
    app: &TestApp,
    id: &str,
    body: &Value,
    if_match: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = app.post(&format!("/records/{id}/review")).json(body);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    let response = request.send().await;
    let etag = response
        .headers
        .get("etag")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (response.status, etag, response.json_or_null())
}

async fn etag_of(app: &TestApp, id: &str) -> String {
    let response = app.get(&format!("/records/{id}")).send().await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.header("cache-control"),
        "no-store",
        "record data is never cached"
    );
    response.header("etag").to_owned()
}

/// The record's history once the read events of its GETs are in it: they are buffered, durable
/// within a second.
async fn history_with_reads(app: &TestApp, id: &str) -> Value {
    let path = format!("/records/{id}/history");
    wait_until(
        "the GETs' read events (buffered) in the record's history",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let history = app.get_json(&path).await;
            let read = history["events"]
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e["action"] == "read"));
            read.then_some(history)
        },
    )
    .await
}

#[tokio::test]
async fn a_pending_record_is_reviewed_once_with_its_reason_in_the_history() {
    let app = spawn_app(Setup::default()).await;
    let record = create(&app, "pending").await;
    let id = record["id"].as_str().expect("id");
    let before = etag_of(&app, id).await;

    let verdict = json!({"status": "validated", "reason": "Source documents verified"});
    let (status, after, body) = review(&app, id, &verdict, Some(&before)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "validated");
    assert_eq!(body["site_id"], record["site_id"], "the other fields stay");
    let after = after.expect("a new ETag");
    assert_ne!(after, before, "the version changed");
    assert_eq!(etag_of(&app, id).await, after, "GET agrees");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    let old: Vec<&String> = record.as_object().expect("object").keys().collect();
    assert_eq!(keys, old, "the body keeps today's fields, nothing more");

    // (what the second request proves, body, If-Match, expected status)
    let again = json!({"status": "rejected", "reason": "second opinion"});
    for (proves, body, if_match, expected) in [
        (
            "a second review is refused",
            &again,
            None,
            StatusCode::CONFLICT,
        ),
        (
            "a stale If-Match is refused",
            &again,
            Some(before.as_str()),
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            "a review without a reason is refused",
            &json!({"status": "rejected"}),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "pending is not a review verdict",
            &json!({"status": "pending", "reason": "x"}),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "a reason over 500 characters is refused",
            &json!({"status": "rejected", "reason": "x".repeat(501)}),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, _, answer) = review(&app, id, body, if_match).await;
        assert_eq!(status, expected, "{proves}: {answer}");
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, _, answer) = review(&app, &unknown, &verdict, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer, json!({"detail": "Record not found"}));

    let history = history_with_reads(&app, id).await;
    let events = history["events"].as_array().expect("events");
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "create").count(),
        1,
        "{actions:?}"
    );
    let reviews: Vec<&Value> = events.iter().filter(|e| e["action"] == "review").collect();
    assert_eq!(
        reviews.len(),
        1,
        "only the applied review is a review event"
    );
    let event = reviews[0];
    assert_eq!(event["old_status"], "pending");
    assert_eq!(event["new_status"], "validated");
    assert_eq!(event["reason"], "Source documents verified");
    assert_eq!(
        event["client"], "anonymous",
        "auth off: audited as anonymous"
    );
    assert!(event["request_id"].is_string());
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    assert!(
        !event.to_string().contains("patient_count"),
        "events hold ids and the reviewed field, never record content"
    );
}

#[tokio::test]
async fn the_audit_listing_filters_and_pages() {
    let app = spawn_app(Setup::default()).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            create(&app, "pending").await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut query = "/audit?limit=2&client=anonymous".to_owned();
    loop {
        let page = app.get_json(&query).await;
        let events = page["events"].as_array().expect("events").clone();
        assert!(events.len() <= 2);
        seen.extend(events);
        match page["continuation"].as_str() {
            Some(token) => query = format!("/audit?limit=2&client=anonymous&continuation={token}"),
            None => break,
        }
    }
    for id in &ids {
        assert!(
            seen.iter()
                .any(|e| e["action"] == "create" && e["record_ids"][0] == *id),
            "the create of {id} is listed"
        );
    }
    let keys: Vec<(String, u64)> = seen
        .iter()
        .map(|e| {
            (
                e["time"].as_str().unwrap_or_default().to_owned(),
                e["seq"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "each event once, oldest first"
    );
    let nobody = app.get_json("/audit?client=nobody").await;
    assert_eq!(nobody["events"], json!([]));
    let by_record = app.get_json(&format!("/audit?record_id={}", ids[2])).await;
    let named: Vec<&Value> = by_record["events"]
        .as_array()
        .expect("events")
        .iter()
        .collect();
    assert!(!named.is_empty());
    assert!(named.iter().all(|e| {
        e["record_ids"]
            .as_array()
            .is_some_and(|r| r.contains(&json!(ids[2])))
    }));
    for bad in [
        "from=yesterday",
        "limit=0",
        "record_id=x",
        "continuation=%%",
        "colour=red",
    ] {
        let response = app.get(&format!("/audit?{bad}")).send().await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn kill_9_under_load_leaves_no_acknowledged_record_without_its_create_event() {
    let mut app = App::standalone().await;
    let client = reqwest::Client::new();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut writers = Vec::new();
    for _ in 0..6 {
        let (client, url, acked) = (client.clone(), app.url("/records"), acked_tx.clone());
        writers.push(tokio::spawn(async move {
            loop {
                match client.post(&url).json(&valid_record()).send().await {
                    Ok(response) if response.status() == StatusCode::CREATED => {
                        let Ok(record) = response.json::<Value>().await else {
                            return;
                        };
                        let _ = acked.send(record["id"].as_str().unwrap_or_default().to_owned());
                    }
                    _ => return,
                }
            }
        }));
    }
    drop(acked_tx);
    let mut acked = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while acked.len() < 60 {
            acked.push(acked_rx.recv().await.expect("writers stopped early"));
        }
    })
    .await
    .expect("60 acknowledged writes within 30 s");
    app.kill_hard();
    for writer in writers {
        let _ = writer.await;
    }
    while let Some(id) = acked_rx.recv().await {
        acked.push(id);
    }
    let app = app.restart().await;
    let mut created = std::collections::HashSet::new();
    let mut query = "/audit?limit=1000".to_owned();
    loop {
        let page = app.get_json(&query).await;
        for event in page["events"].as_array().expect("events") {
            if event["action"] == "create" {
                created.insert(
                    event["record_ids"][0]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
        match page["continuation"].as_str() {
            Some(token) => query = format!("/audit?limit=1000&continuation={token}"),
            None => break,
        }
    }
    let missing: Vec<&String> = acked.iter().filter(|id| !created.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records have no create event: {missing:?}",
        missing.len(),
        acked.len()
    );
}

/// Runs `handler audit verify` with the app's environment (its data folder).
async fn verify(data_dir: &std::path::Path) -> crate::support::Finished {
    let mut command = std::process::Command::new(crate::support::BINARY);
    command
        .arg("audit")
        .arg("verify")
        .env("MEDIFLOW_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn");
    crate::support::run_to_end(&mut command, Duration::from_secs(60)).await
}

/// The journal's frames: (offset of the frame, table tag, payload range).
fn frames(journal: &[u8]) -> Vec<(usize, u8, std::ops::Range<usize>)> {
    let mut at = 0;
    let mut found = Vec::new();
    while at + 8 <= journal.len() {
        let len = u32::from_le_bytes(journal[at..at + 4].try_into().expect("4 bytes")) as usize;
        let payload = at + 8..at + 8 + len;
        if payload.end > journal.len() {
            break;
        }
        found.push((at, journal[at + 8], payload.clone()));
        at = payload.end;
    }
    found
}

#[tokio::test]
async fn audit_verify_passes_then_names_the_event_whose_stored_byte_was_changed() {
    let mut app = App::standalone().await;
    let client = reqwest::Client::new();
    let create_three = |app: &App| {
        let (client, url) = (client.clone(), app.url("/records"));
        async move {
            for _ in 0..3 {
                let response = client
                    .post(&url)
                    .json(&valid_record())
                    .send()
                    .await
                    .expect("POST /records");
                assert_eq!(response.status(), StatusCode::CREATED);
            }
        }
    };
    create_three(&app).await;
    let data_dir = app.data_dir.clone();
    app.kill_hard();
    let intact = verify(&data_dir).await;
    assert!(intact.status.success(), "{:?}", intact.stderr);
    assert!(
        intact
            .stdout
            .iter()
            .any(|l| l.contains("audit trail intact")),
        "{:?}",
        intact.stdout
    );

    // More events, left in the journal by a kill (opening the store moves the journal into redb).
    let mut app = app.restart().await;
    create_three(&app).await;
    app.kill_hard();
    // Change one byte of the second audit event as an intruder with file access would: inside
    // the value, with the frame's checksum recomputed so the file still opens.
    let path = data_dir.join("mediflow.journal");
    let mut journal = std::fs::read(&path).expect("journal");
    let audit_frames: Vec<_> = frames(&journal)
        .into_iter()
        .filter(|(_, tag, _)| *tag == 3)
        .collect();
    assert!(
        audit_frames.len() >= 3,
        "the events are in the journal: {}",
        audit_frames.len()
    );
    let (at, _, payload) = audit_frames[1].clone();
    let value = payload.start + 17..payload.end;
    let text = String::from_utf8(journal[value.clone()].to_vec()).expect("json");
    let seq = serde_json::from_str::<Value>(&text).expect("event")["seq"]
        .as_u64()
        .expect("seq");
    let offset = text.find("anonymous").expect("the client is in the event") + value.start;
    journal[offset] = b'A';
    let crc = crc32fast::hash(&journal[payload.clone()]);
    journal[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &journal).expect("write");

    let broken = verify(&data_dir).await;
    assert_eq!(broken.status.code(), Some(1), "{:?}", broken.stderr);
    assert!(
        broken
            .stderr
            .iter()
            .any(|l| l.contains(&format!("broken at event {seq}"))),
        "names the changed event {seq}: {:?}",
        broken.stderr
    );
}

/// The value of an unlabelled metric in a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn read_events_are_written_within_a_second_and_counted() {
    let app = spawn_app(Setup::default()).await;
    let record = create(&app, "pending").await;
    let id = record["id"].as_str().expect("id").to_owned();
    for _ in 0..5 {
        etag_of(&app, &id).await;
    }
    let started = std::time::Instant::now();
    wait_until(
        "the five read events written (mediflow_audit_events_written_total)",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let page = app.metrics_text().await;
            metric(&page, "mediflow_audit_events_written_total").is_some_and(|n| n >= 5.0)
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "buffered read events are durable within 1 s: {:?}",
        started.elapsed()
    );
    let page = app.metrics_text().await;
    assert_eq!(
        metric(&page, "mediflow_audit_buffer_events"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "mediflow_audit_write_failures_total"),
        Some(0.0)
    );
    let history = app.get_json(&format!("/records/{id}/history")).await;
    let reads = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["action"] == "read")
        .count();
    assert_eq!(reads, 5, "one event per GET");
}

#[tokio::test]
async fn every_response_with_record_data_says_no_store() {
    let app = spawn_app(Setup::default()).await;
    let created = app.post("/records").json(&valid_record()).send().await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header("cache-control"), "no-store", "POST /records");
    let record = created.json();
    let batch_id = uuid::Uuid::new_v4().to_string();
    let submitted = app
        .post("/batches")
        .json(&json!({"batch_id": batch_id, "records": [valid_record()]}))
        .send()
        .await;
    assert_eq!(
        submitted.header("cache-control"),
        "no-store",
        "POST /batches"
    );
    let site = record["site_id"].as_str().expect("site");
    let id = record["id"].as_str().expect("id");
    for path in [
        format!("/records/{id}"),
        format!("/records?site_id={site}"),
        format!("/batches/{batch_id}"),
        format!("/records/{id}/history"),
        "/audit".to_owned(),
    ] {
        let response = app.get(&path).send().await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert_eq!(response.header("cache-control"), "no-store", "{path}");
    }
}

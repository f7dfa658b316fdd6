//! What was acknowledged stays: `kill -9` with no chance to flush, then restart.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{App, valid_record};

#[tokio::test]
async fn every_acknowledged_record_survives_kill_9_and_restart() {
    let mut app = App::standalone().await;
    let client = reqwest::Client::new();
    // Writers keep posting while the process is killed: whatever got a 201 must be on disk.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (client, url, acked) = (client.clone(), app.url("/records"), acked_tx.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let mut body = valid_record();
                body["notes"] = Value::from(format!("writer {writer} record {n}"));
                match client.post(&url).json(&body).send().await {
                    Ok(response) if response.status() == StatusCode::CREATED => {
                        let record: Value = match response.json().await {
                            Ok(record) => record,
                            Err(_) => return, // killed while the body was in flight: not acknowledged
                        };
                        let _ = acked.send(record["id"].as_str().unwrap_or_default().to_owned());
                    }
                    _ => return, // the process is gone
                }
            }
        }));
    }
    drop(acked_tx);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    app.kill_hard();
    for writer in writers {
        let _ = writer.await;
    }
    let mut acked = Vec::new();
    while let Some(id) = acked_rx.recv().await {
        acked.push(id);
    }
    assert!(
        acked.len() > 20,
        "the load produced acknowledged writes before the kill ({})",
        acked.len()
    );

    let app = app.restart().await;
    app.wait_until_ready().await;
    for id in &acked {
        let response = client
            .get(app.url(&format!("/records/{id}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "acknowledged record {id} lost after kill -9"
        );
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_exits_cleanly() {
    let mut app = App::standalone().await;
    let client = reqwest::Client::new();
    let mut requests = Vec::new();
    for _ in 0..64 {
        let (client, url) = (client.clone(), app.url("/records"));
        requests.push(tokio::spawn(async move {
            client
                .post(&url)
                .json(&valid_record())
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = app.terminate(std::time::Duration::from_secs(30));
        (status, app)
    })
    .await
    .expect("join");
    let (status, app) = status;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status after SIGTERM: {status:?}"
    );
    for request in requests {
        match request.await.expect("join") {
            // Answered: it must have been answered fully and correctly.
            Ok(status) => assert_eq!(status, StatusCode::CREATED),
            // Refused: it arrived after the listener closed, and was never accepted.
            Err(err) => assert!(err.is_connect() || err.is_request(), "{err}"),
        }
    }
    assert!(
        app.logs().iter().any(|l| l.contains("shutting down")),
        "the drain is logged"
    );
}

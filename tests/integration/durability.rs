//! What was acknowledged stays: `kill -9` with no chance to flush, then restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    // Kill once the load has produced acknowledged writes (a condition, not a guess at timing);
    // the writers are still posting, so the kill lands mid-write.
    let mut acked = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while acked.len() < 50 {
            acked.push(
                acked_rx
                    .recv()
                    .await
                    .expect("writers stopped before 50 writes"),
            );
        }
    })
    .await
    .expect("50 acknowledged writes within 30 s");
    app.kill_hard();
    for writer in writers {
        let _ = writer.await;
    }
    while let Some(id) = acked_rx.recv().await {
        acked.push(id);
    }

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
    // A request the server is provably handling when SIGTERM arrives: it asks for
    // `Expect: 100-continue`, and hyper answers `100 Continue` only once the handler reads the
    // body. The body is sent after the drain has begun.
    let body = serde_json::to_vec(&valid_record()).expect("JSON");
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /records HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let interim = read_until_blank_line(&mut stream).await;
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "the handler asked for the body: {interim}"
    );

    app.send_sigterm();
    app.wait_for_logs(Duration::from_secs(10), |lines| {
        lines.iter().any(|l| l.contains("shutting down"))
    })
    .await;
    stream.write_all(&body).await.expect("send body");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered within 10 s")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the in-flight request finished after SIGTERM: {answer}"
    );
    let record: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default())
        .expect("the record in the body");

    let status = app.wait_for_exit(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status after SIGTERM: {status:?}"
    );
    // What was answered 201 during the drain is stored.
    let app = app.restart().await;
    let id = record["id"].as_str().expect("id");
    let stored = reqwest::get(app.url(&format!("/records/{id}")))
        .await
        .expect("GET");
    assert_eq!(stored.status(), StatusCode::OK);
}

/// Reads one response head (up to the blank line).
async fn read_until_blank_line(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.expect("read");
            head.push(byte[0]);
        }
    })
    .await
    .expect("a response head within 10 s");
    String::from_utf8_lossy(&head).into_owned()
}

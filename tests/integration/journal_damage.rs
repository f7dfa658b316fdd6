//! A damaged journal never silently drops acknowledged writes: `kill -9`, one flipped byte in
//! the middle of `mediflow.journal`, and the service refuses to start (naming the offset) until
//! `handler store salvage` has kept every valid frame; then every acknowledged record is served
//! but the one in the damaged frame, if that frame held a record.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{App, binary, run_to_end, valid_record};

/// Records acknowledged before the kill: a few hundred stay in the journal (it is emptied only
/// past 16 MiB).
const RECORDS: usize = 240;

/// The binary with `args` on `data_dir`, standalone on a free port.
fn handler(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| k == "PATH"))
        .env("MEDIFLOW_ADDR", "127.0.0.1:0")
        .env("MEDIFLOW_DATA_DIR", data_dir)
        .env("LOG_FORMAT", "json");
    command
}

/// A frame of the journal (docs/adr/0006): where it starts and ends, its table tag and key.
struct Frame {
    start: usize,
    end: usize,
    tag: u8,
    key: u128,
}

/// The journal's frames, read by the format (u32 LE length, u32 LE CRC, tag, u128 LE key, value).
fn frames(journal: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 8 <= journal.len() {
        let len = u32::from_le_bytes(journal[at..at + 4].try_into().expect("4 bytes"));
        let end = at + 8 + usize::try_from(len).expect("small");
        let payload = &journal[at + 8..end];
        frames.push(Frame {
            start: at,
            end,
            tag: payload[0],
            key: u128::from_le_bytes(payload[1..17].try_into().expect("16 bytes")),
        });
        at = end;
    }
    assert_eq!(at, journal.len(), "the journal ends on a whole frame");
    frames
}

/// Posts [`RECORDS`] records one after the other; their ids, each acknowledged with 201.
async fn acknowledge(app: &App, client: &reqwest::Client) -> Vec<String> {
    let mut acked = Vec::with_capacity(RECORDS);
    for n in 0..RECORDS {
        let mut body = valid_record();
        body["notes"] = Value::from(format!("record {n}"));
        let response = client
            .post(app.url("/records"))
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), StatusCode::CREATED);
        let record: Value = response.json().await.expect("record");
        acked.push(record["id"].as_str().expect("id").to_owned());
    }
    acked
}

/// Flips the middle byte of the journal; the frame it hit, the number of frames, and the
/// journal's bytes as they now are.
fn flip_the_middle_byte(journal_path: &Path) -> (Frame, usize, Vec<u8>) {
    let mut journal = std::fs::read(journal_path).expect("journal");
    let mut frames = frames(&journal);
    assert!(
        frames.iter().filter(|f| f.tag == 1).count() >= RECORDS,
        "every acknowledged record is still in the journal ({} frames)",
        frames.len()
    );
    let count = frames.len();
    let middle = journal.len() / 2;
    let hit = frames.swap_remove(
        frames
            .iter()
            .position(|f| (f.start..f.end).contains(&middle))
            .expect("a frame holds the middle byte"),
    );
    journal[middle] ^= 0xff;
    std::fs::write(journal_path, &journal).expect("write journal");
    (hit, count, journal)
}

/// The acknowledged ids `app` does not serve.
async fn missing(app: &App, client: &reqwest::Client, acked: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for id in acked {
        let response = client
            .get(app.url(&format!("/records/{id}")))
            .send()
            .await
            .expect("GET");
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => missing.push(id.clone()),
            other => panic!("GET {id}: {other}"),
        }
    }
    missing
}

/// The copies `handler store salvage` set aside in `data_dir`.
fn copies_aside(data_dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("mediflow.journal.damaged-")
        })
        .map(|e| e.path())
        .collect()
}

async fn run(data_dir: &Path, args: &[&str]) -> crate::support::Finished {
    run_to_end(&mut handler(data_dir, args), Duration::from_secs(30)).await
}

#[tokio::test]
async fn a_flipped_byte_refuses_the_start_until_salvage_keeps_every_other_record() {
    let mut app = App::standalone().await;
    let client = reqwest::Client::new();
    let acked = acknowledge(&app, &client).await;
    app.kill_hard();
    let journal_path = app.data_dir.join("mediflow.journal");
    let (hit, frames, journal) = flip_the_middle_byte(&journal_path);
    let lost: Vec<String> = if hit.tag == 1 {
        vec![uuid::Uuid::from_u128(hit.key).to_string()]
    } else {
        Vec::new() // an audit event's frame: no record lost
    };

    // The service refuses to start, names the offset, and changes nothing.
    let refused = run(&app.data_dir, &[]).await;
    let stderr = refused.stderr.join("\n");
    assert!(
        !refused.status.success(),
        "a damaged journal does not start: {stderr}"
    );
    assert!(
        stderr.contains(&format!("damaged at byte {}", hit.start)),
        "the error names the first bad frame's offset {}: {stderr}",
        hit.start
    );
    assert!(
        stderr.contains("handler store salvage"),
        "and the way out: {stderr}"
    );
    assert_eq!(
        std::fs::read(&journal_path).expect("journal"),
        journal,
        "the refused start left the journal as found"
    );

    // `store check` reports the damage (exit 1) and changes nothing.
    let check = run(&app.data_dir, &["store", "check"]).await;
    let report = check.stdout.join("\n");
    assert_eq!(check.status.code(), Some(1), "check: damaged: {report}");
    assert!(
        report.contains(&format!("damaged: offset {} length", hit.start)),
        "check lists the region: {report}"
    );
    assert_eq!(std::fs::read(&journal_path).expect("journal"), journal);

    // `store salvage` copies the journal aside and keeps every valid frame.
    let salvage = run(&app.data_dir, &["store", "salvage"]).await;
    let report = [salvage.stdout.join("\n"), salvage.stderr.join("\n")].join("\n");
    assert_eq!(salvage.status.code(), Some(0), "salvage: {report}");
    assert!(
        report.contains(&format!("kept frames: {}", frames - 1)),
        "every frame but the damaged one kept: {report}"
    );
    let aside = copies_aside(&app.data_dir);
    assert_eq!(aside.len(), 1, "one copy aside");
    assert_eq!(
        std::fs::read(&aside[0]).expect("copy"),
        journal,
        "the copy is the journal as found"
    );

    // The service starts and serves every acknowledged record but the damaged frame's.
    let app = app.restart().await;
    assert_eq!(
        missing(&app, &client, &acked).await,
        lost,
        "only the record of the one damaged frame is lost ({} acknowledged)",
        acked.len()
    );

    // While the service holds the store, salvage refuses.
    let busy = run(&app.data_dir, &["store", "salvage"]).await;
    let stderr = busy.stderr.join("\n");
    assert_eq!(busy.status.code(), Some(1), "salvage refuses: {stderr}");
    assert!(stderr.contains("stop the service"), "{stderr}");
}

/// The closed journal segment (left when the process dies after the writer closed a segment and
/// before redb held it durably) is the journal's older half: damage in it refuses the start like
/// damage in the journal, `store check` and `store salvage` name it, and once salvaged the
/// service replays it, serves every record but the damaged frame's, and deletes it.
#[tokio::test]
async fn damage_in_the_closed_segment_is_found_salvaged_and_replayed() {
    let mut app = App::standalone().await;
    let client = reqwest::Client::new();
    let acked = acknowledge(&app, &client).await;
    app.kill_hard();
    // The state a kill leaves right after the writer's roll: everything in the closed segment,
    // an empty journal beside it.
    let closed = app.data_dir.join("mediflow.journal.closed");
    std::fs::rename(app.data_dir.join("mediflow.journal"), &closed).expect("roll");
    std::fs::write(app.data_dir.join("mediflow.journal"), b"").expect("new segment");
    let (hit, frames, journal) = flip_the_middle_byte(&closed);
    let lost: Vec<String> = if hit.tag == 1 {
        vec![uuid::Uuid::from_u128(hit.key).to_string()]
    } else {
        Vec::new()
    };

    let refused = run(&app.data_dir, &[]).await;
    let stderr = refused.stderr.join("\n");
    assert!(
        !refused.status.success(),
        "damage refuses the start: {stderr}"
    );
    assert!(
        stderr.contains(&format!("damaged at byte {}", hit.start)),
        "the error names the offset {}: {stderr}",
        hit.start
    );
    assert_eq!(std::fs::read(&closed).expect("closed"), journal);

    let check = run(&app.data_dir, &["store", "check"]).await;
    let report = check.stdout.join("\n");
    assert_eq!(check.status.code(), Some(1), "check: damaged: {report}");
    assert!(
        report.contains(&format!("journal: {}", closed.display()))
            && report.contains(&format!("damaged: offset {} length", hit.start)),
        "check names the closed segment and its region: {report}"
    );

    let salvage = run(&app.data_dir, &["store", "salvage"]).await;
    let report = [salvage.stdout.join("\n"), salvage.stderr.join("\n")].join("\n");
    assert_eq!(salvage.status.code(), Some(0), "salvage: {report}");
    assert!(
        report.contains(&format!("kept frames: {}", frames - 1)),
        "every frame of the closed segment but the damaged one kept: {report}"
    );
    let aside: Vec<_> = std::fs::read_dir(&app.data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("mediflow.journal.closed.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the closed segment copied aside once");

    let app = app.restart().await;
    assert_eq!(
        missing(&app, &client, &acked).await,
        lost,
        "only the damaged frame's record is lost"
    );
    assert!(!closed.exists(), "replayed, the closed segment is deleted");
}

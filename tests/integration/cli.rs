//! The `mediflow` command line (crate `cli/`), run as a process against the running `handler`
//! over real sockets: a large file with bad rows, an interrupted run resumed, every kind of
//! malformed input, the read commands, and the queue path through Azurite.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::azurite::Azurite;
use crate::support::{App, AppOptions, wait_until};

/// The `mediflow` binary, built next to `handler` by `cargo nextest run --workspace`.
fn mediflow_binary() -> PathBuf {
    let path = Path::new(crate::support::BINARY).with_file_name("mediflow");
    assert!(
        path.exists(),
        "{} is missing: build it with the workspace (`cargo nextest run --workspace` or `cargo build -p mediflow-cli`)",
        path.display()
    );
    path
}

fn mediflow(args: &[&str]) -> Command {
    let mut command = Command::new(mediflow_binary());
    command
        .args(args)
        .env_remove("MEDIFLOW_URL")
        .env_remove("MEDIFLOW_API_KEY_FILE")
        .stdin(Stdio::null());
    command
}

fn run(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = mediflow(args).output().expect("run mediflow");
    (
        status.code().expect("exited, not killed"),
        String::from_utf8(stdout).expect("utf-8"),
        String::from_utf8(stderr).expect("utf-8"),
    )
}

const HEADER: &str = "site_id,trial_phase,submission_date,status,patient_count,notes";

/// Row `i` of a generated file: every 37th is invalid, in one of five ways (the API's field).
fn row(site: &str, i: usize) -> (String, Option<&'static str>) {
    let date = format!("2025-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
    let phase = ["I", "II", "III", "IV"][i % 4];
    if i.is_multiple_of(37) {
        let (line, field) = match (i / 37) % 5 {
            0 => (
                format!("{site},{phase},{date},pending,0,zero patients"),
                "patient_count",
            ),
            1 => (
                format!("{site},V,{date},pending,5,bad phase"),
                "trial_phase",
            ),
            2 => (
                format!("{site},{phase},2025-02-30,pending,5,no such day"),
                "submission_date",
            ),
            3 => (format!("{site},{phase},{date},done,5,bad status"), "status"),
            _ => (format!("x,{phase},{date},pending,5,short site"), "site_id"),
        };
        return (line, Some(field));
    }
    (
        format!(
            "{site},{phase},{date},pending,{},\"row {i}, quoted\"",
            1 + i % 500
        ),
        None,
    )
}

/// Writes a CSV of `rows` rows; returns its path and the expected (line, field) of each bad row.
fn csv_file(dir: &Path, site: &str, rows: usize) -> (PathBuf, Vec<(u64, &'static str)>) {
    let mut text = String::with_capacity(rows * 64);
    text.push_str(HEADER);
    text.push('\n');
    let mut bad = Vec::new();
    for i in 0..rows {
        let (line, field) = row(site, i);
        text.push_str(&line);
        text.push('\n');
        if let Some(field) = field {
            bad.push((i as u64 + 2, field));
        }
    }
    let path = dir.join(format!("{site}.csv"));
    std::fs::write(&path, text).expect("write csv");
    (path, bad)
}

fn rejected_lines(file: &Path) -> Vec<Value> {
    let path = PathBuf::from(format!("{}.rejected.jsonl", file.display()));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect()
}

/// Every record of `site`, through `mediflow list` (JSON output).
fn listed(app: &App, site: &str) -> Vec<Value> {
    let (code, stdout, stderr) = run(&["list", "--url", &app.url(""), "--site", site]);
    assert_eq!(code, 0, "list failed: {stderr}");
    serde_json::from_str(&stdout).expect("a JSON array")
}

fn summary_value(stdout: &str, label: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` in:\n{stdout}"))
}

#[tokio::test]
async fn fifty_thousand_rows_with_bad_ones_are_counted_and_returned_exactly() {
    let app = App::standalone().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let site = "BIG50K";
    let (file, bad) = csv_file(dir.path(), site, 50_000);
    let started = Instant::now();
    let (code, stdout, stderr) = run(&[
        "submit",
        "--url",
        &app.url(""),
        file.to_str().expect("utf-8"),
    ]);
    eprintln!("50,000 rows submitted in {:?}", started.elapsed());
    assert_eq!(code, 2, "some rows rejected: exit 2\n{stdout}\n{stderr}");
    assert_eq!(summary_value(&stdout, "rows read:"), 50_000);
    assert_eq!(summary_value(&stdout, "accepted:"), 50_000 - bad.len());
    assert_eq!(summary_value(&stdout, "rejected:"), bad.len());
    assert!(
        stderr.contains("progress: 50000/50000 rows (100%)"),
        "plain progress lines off a terminal:\n{stderr}"
    );
    let rejected = rejected_lines(&file);
    let got: Vec<(u64, u64, String)> = rejected
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().expect("line"),
                r["data_row"].as_u64().expect("data_row"),
                r["errors"][0]["loc"][1].as_str().expect("field").to_owned(),
            )
        })
        .collect();
    // One line per row after the header: data row n is line n + 1.
    let expected: Vec<(u64, u64, String)> = bad
        .iter()
        .map(|(l, f)| (*l, *l - 1, (*f).to_owned()))
        .collect();
    assert_eq!(
        got, expected,
        "each bad row once, in file order, with the API's field error"
    );
    assert_eq!(
        rejected[0]["row"]["notes"], "zero patients",
        "the row as read"
    );
    assert_eq!(rejected[0]["errors"][0]["type"], "greater_than_equal");
    let records = listed(&app, site);
    assert_eq!(
        records.len(),
        50_000
            - bad.iter().filter(|(_, f)| *f != "site_id").count()
            - bad.iter().filter(|(_, f)| *f == "site_id").count()
    );
}

#[tokio::test]
async fn rejected_rows_name_the_line_an_editor_shows_and_the_data_row() {
    let app = App::standalone().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A Windows export: CRLF line ends, a blank line, a note with a quoted line break.
    let lines = [
        HEADER,                                                 // line 1
        "LINES01,II,2025-03-15,pending,4,ok",                   // 2, data row 1
        "LINES01,II,2025-03-15,pending,0,zero patients",        // 3, data row 2: rejected
        "",                                                     // 4
        "LINES01,II,2025-03-15,pending,4,\"two\r\nline note\"", // 5-6, data row 3
        "LINES01,V,2025-03-15,pending,4,bad phase",             // 7, data row 4: rejected
    ];
    let file = dir.path().join("windows.csv");
    std::fs::write(&file, lines.join("\r\n") + "\r\n").expect("write");
    let (code, stdout, stderr) = run(&[
        "submit",
        "--url",
        &app.url(""),
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let got: Vec<(u64, u64, String)> = rejected_lines(&file)
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().expect("line"),
                r["data_row"].as_u64().expect("data_row"),
                r["row"]["notes"]
                    .as_str()
                    .expect("the row as read")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (3, 2, "zero patients".to_owned()),
            (7, 4, "bad phase".to_owned())
        ]
    );
}

#[tokio::test]
async fn an_interrupted_submission_resumes_without_duplicates() {
    let app = App::standalone().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let site = "RESUME1";
    let (file, bad) = csv_file(dir.path(), site, 20_000);
    let file_arg = file.to_str().expect("utf-8");
    let mut first = mediflow(&["submit", "--quiet", "--url", &app.url(""), file_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mediflow");
    // Kill it (no chance to clean up) as soon as the service has stored part of the file: checked
    // often, so the kill lands early in a run that takes seconds.
    let first_page = format!("/records?site_id={site}&limit=1");
    wait_until(
        "the first run to have stored part of the file",
        Duration::from_secs(60),
        Duration::from_millis(5),
        || {
            let running = first.try_wait().expect("wait").is_none();
            let first_page = &first_page;
            let app = &app;
            async move {
                let page = app.get_json(first_page).await;
                let stored = page["records"].as_array().is_some_and(|r| !r.is_empty());
                assert!(stored || running, "mediflow ended before storing anything");
                stored
            }
        },
    )
    .await;
    let interrupted = first.try_wait().expect("wait").is_none();
    first.kill().expect("kill");
    first.wait().expect("reap");
    assert!(
        interrupted,
        "the first run was cut short (the file is large enough to take a while)"
    );
    let partial = listed(&app, site).len();
    assert!(
        partial < 20_000 - bad.len(),
        "the first run stored only part ({partial})"
    );

    let (code, stdout, stderr) = run(&["submit", "--url", &app.url(""), file_arg]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert_eq!(summary_value(&stdout, "accepted:"), 20_000 - bad.len());
    let records = listed(&app, site);
    let ids: HashSet<&str> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        records.len(),
        20_000 - bad.len(),
        "every accepted row stored once"
    );
    assert_eq!(ids.len(), records.len(), "no duplicate ids");
    assert_eq!(rejected_lines(&file).len(), bad.len());
    // A third run changes nothing.
    let (code, stdout, _) = run(&["submit", "--quiet", "--url", &app.url(""), file_arg]);
    assert_eq!(
        (code, summary_value(&stdout, "accepted:")),
        (2, 20_000 - bad.len())
    );
    assert_eq!(listed(&app, site).len(), records.len());
}

/// Malformed files, each with the one-line reason it must be refused with: (name, content, reason).
fn malformed_files() -> Vec<(&'static str, String, &'static str)> {
    let good = "MALF01,II,2025-03-15,pending,4,ok";
    let huge = format!(
        "{{\"site_id\":\"MALF01\",\"notes\":\"{}\"}}",
        "n".repeat(60_000)
    );
    vec![
        (
            "quoting.csv",
            format!("{HEADER}\n{good}\n\"MALF01,II,2025-03-15,pending,4,ok\n{good}\n"),
            "quoting.csv:3: expected 6 fields",
        ),
        (
            "crlf.csv",
            format!("{HEADER}\r\n{good}\r\n\r\n{good},extra\r\n"),
            "crlf.csv:4: expected 6 fields",
        ),
        (
            "fields.csv",
            format!("{HEADER}\n{good}\n{good},extra\n"),
            "fields.csv:3: expected 6 fields",
        ),
        (
            "columns.csv",
            format!("{HEADER},colour\n{good},red\n"),
            "columns.csv:1: unknown column `colour`",
        ),
        (
            "missing.csv",
            "site_id,status\nMALF01,pending\n".to_owned(),
            "missing.csv:1: the header lacks column(s) trial_phase, submission_date, patient_count",
        ),
        (
            "empty.csv",
            String::new(),
            "empty.csv: no records to submit (the file is empty",
        ),
        (
            "header.csv",
            format!("{HEADER}\n"),
            "or has only a header row",
        ),
        (
            "array.jsonl",
            "{\"site_id\":\"MALF01\"}\n[1,2,3]\n".to_owned(),
            "array.jsonl:2: expected a JSON object (one record per line), found an array",
        ),
        (
            "broken.jsonl",
            "{\"site_id\":\"MALF01\"}\n{\"site_id\":\n".to_owned(),
            "broken.jsonl:2: not valid JSON",
        ),
        (
            "empty.jsonl",
            "\n\n".to_owned(),
            "empty.jsonl: no records to submit",
        ),
        (
            "huge.jsonl",
            format!("{{\"site_id\":\"MALF01\"}}\n{huge}\n"),
            "huge.jsonl:2: the row is 60031 bytes as JSON; a batch message holds at most 49152 bytes",
        ),
        (
            "records.txt",
            format!("{HEADER}\n{good}\n"),
            "records.txt: cannot tell the format from the extension",
        ),
    ]
}

#[tokio::test]
async fn malformed_input_is_refused_naming_the_line_and_nothing_is_sent() {
    let app = App::standalone().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = malformed_files();
    for (name, content, expected) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        let (code, stdout, stderr) = run(&[
            "submit",
            "--url",
            &app.url(""),
            path.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 1, "{name}: exit 1\n{stderr}");
        assert!(stdout.is_empty(), "{name}: no summary");
        let message = stderr.trim_end();
        assert!(
            message.starts_with("mediflow: ") && !message.contains('\n'),
            "{name}: one line: {message}"
        );
        assert!(message.contains(expected), "{name}: {message}");
        assert!(!message.contains("panicked"), "{name}");
    }
    let (code, _, stderr) = run(&[
        "submit",
        "--url",
        &app.url(""),
        dir.path().join("absent.csv").to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("absent.csv: cannot read the file"),
        "{stderr}"
    );
    assert!(
        listed(&app, "MALF01").is_empty(),
        "nothing of a malformed file was sent"
    );
}

#[tokio::test]
async fn read_commands_print_json_or_tables_and_fail_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, "k-cli\n").expect("write");
    let app = App::start(
        AppOptions::default().env("MEDIFLOW_API_KEYS_FILE", key_file.display().to_string()),
    )
    .await;
    let url = app.url("");
    let key = key_file.to_str().expect("utf-8");
    // A command with the service's URL and API key, then `rest`.
    let keyed = |command: &str, rest: &[&str]| {
        let mut args = vec![command, "--url", url.as_str(), "--api-key-file", key];
        args.extend_from_slice(rest);
        run(&args)
    };
    let file = dir.path().join("few.jsonl");
    std::fs::write(
        &file,
        "{\"site_id\":\"read01\",\"trial_phase\":\"I\",\"submission_date\":\"2025-01-02\",\"status\":\"pending\",\"patient_count\":3}\n\
         {\"site_id\":\"read01\",\"trial_phase\":\"II\",\"submission_date\":\"2025-01-05\",\"status\":\"validated\",\"patient_count\":7,\"notes\":\"second\"}\n",
    )
    .expect("write");
    let stale = PathBuf::from(format!("{}.rejected.jsonl", file.display()));
    std::fs::write(&stale, "{}\n").expect("a stale file from an earlier run");

    let (code, stdout, stderr) = run(&["submit", "--url", &url, file.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "no key: {stdout}");
    assert!(stderr.contains("refused the API key (401)"), "{stderr}");

    let (code, stdout, stderr) = keyed("submit", &[file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "all accepted: {stdout}{stderr}");
    assert!(
        !stale.exists(),
        "the stale rejected file of an earlier run is removed"
    );

    let (code, stdout, _) = keyed("list", &["--site", "READ01"]);
    assert_eq!(code, 0);
    let records: Vec<Value> = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        records
            .iter()
            .map(|r| r["submission_date"].clone())
            .collect::<Vec<_>>(),
        [json!("2025-01-05"), json!("2025-01-02")]
    );
    let (_, table, _) = keyed("list", &["--site", "read01", "--table", "--limit", "1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "header and one row:\n{table}");
    assert!(lines[0].starts_with("submission_date  site_id"));
    assert!(
        lines[1].starts_with("2025-01-05       READ01   II"),
        "{table}"
    );

    let id = records[0]["id"].as_str().expect("id");
    let mut get = mediflow(&["get", id, "--table"]);
    get.env("MEDIFLOW_URL", &url)
        .env("MEDIFLOW_API_KEY_FILE", key);
    let out = get.output().expect("run");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("notes            second"),
        "env vars stand for the flags"
    );
    let (code, stdout, _) = keyed("get", &[id]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).expect("json"),
        records[0]
    );

    let (code, _, stderr) = keyed("get", &["00000000-0000-0000-0000-000000000000"]);
    assert_eq!(
        (code, stderr.trim_end()),
        (
            1,
            "mediflow: no record with id 00000000-0000-0000-0000-000000000000"
        )
    );
    let (code, _, stderr) = keyed("batch", &["nope"]);
    assert_eq!(
        (code, stderr.trim_end()),
        (1, "mediflow: no batch with id nope")
    );
    let (code, _, stderr) = keyed("list", &["--site", "READ01", "--from", "2025-13-01"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("422") && stderr.contains("from"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["list", "--url", "http://127.0.0.1:9", "--site", "READ01"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("mediflow: cannot reach http://127.0.0.1:9/"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["list", "--site", "READ01"]);
    assert_eq!(
        (code, stderr.trim_end()),
        (
            1,
            "mediflow: no service URL: pass --url URL or set MEDIFLOW_URL"
        )
    );
}

#[tokio::test]
async fn the_queue_path_sends_to_the_storage_queue_and_follows_results_over_http() {
    let azurite = Azurite::start().await;
    azurite.queue("mediflow-batches").create().await;
    let app =
        App::start(AppOptions::default().env("MEDIFLOW_QUEUE", azurite.connection_string())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let site = "QUEUE01";
    let (file, bad) = csv_file(dir.path(), site, 2_000);
    let file_arg = file.to_str().expect("utf-8");
    // The queue URL: the account SAS URL with the queue's name appended to its path.
    let mut queue_url = url::Url::parse(&azurite.sas_url()).expect("url");
    let path = format!(
        "{}/mediflow-batches",
        queue_url.path().trim_end_matches('/')
    );
    queue_url.set_path(&path);

    let (code, stdout, stderr) = run(&["submit", "--queue-url", queue_url.as_str(), file_arg]);
    assert_eq!(code, 0, "enqueued only: {stdout}{stderr}");
    assert!(stdout.contains("enqueued:   2000 rows"), "{stdout}");
    assert!(!stdout.contains("sig="), "the SAS is never printed");

    let (code, stdout, stderr) = run(&[
        "submit",
        "--queue-url",
        queue_url.as_str(),
        "--url",
        &app.url(""),
        file_arg,
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(summary_value(&stdout, "accepted:"), 2_000 - bad.len());
    assert_eq!(rejected_lines(&file).len(), bad.len());
    let records = listed(&app, site);
    assert_eq!(records.len(), 2_000 - bad.len(), "sent twice, stored once");

    let (code, _, stderr) = run(&[
        "submit",
        "--queue-url",
        "http://127.0.0.1:1/acct/q",
        file_arg,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Entra ID needs https://"), "{stderr}");
}

#[tokio::test]
async fn signed_queue_messages_carry_an_envelope_the_service_can_verify() {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    let azurite = Azurite::start().await;
    let queue = azurite.queue("signed-batches");
    queue.create().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, _) = csv_file(dir.path(), "SIGNED1", 2_000);
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "  site-key-42\n").expect("write key");
    let mut queue_url = url::Url::parse(&azurite.sas_url()).expect("url");
    let path = format!("{}/signed-batches", queue_url.path().trim_end_matches('/'));
    queue_url.set_path(&path);
    let submit = |extra: &[&str]| {
        let mut args = vec!["submit", "--queue-url", queue_url.as_str()];
        args.extend_from_slice(extra);
        args.push(file.to_str().expect("utf-8"));
        run(&args)
    };

    let (code, _, stderr) = submit(&["--client", "site001-uploader"]);
    assert_eq!(code, 1, "--client without a key");
    assert!(stderr.contains("--api-key-file"), "{stderr}");
    assert_eq!(queue.count().await, 0, "nothing sent");

    let key_arg = key_file.to_str().expect("utf-8");
    let (code, stdout, stderr) =
        submit(&["--client", "site001-uploader", "--api-key-file", key_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let texts = queue.peek().await;
    assert!(texts.len() > 1, "several messages: {}", texts.len());
    let mac_key = Sha256::digest(b"site-key-42");
    let mut records = 0;
    for text in &texts {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64, as the queue trigger expects");
        assert!(
            decoded.len() <= handler::domain::BatchMessage::MAX_JSON_BYTES,
            "the whole envelope is under the limit: {}",
            decoded.len()
        );
        let envelope: Value = serde_json::from_slice(&decoded).expect("an envelope");
        assert_eq!(envelope["client"], "site001-uploader");
        let payload = envelope["payload"]
            .as_str()
            .expect("the payload as a string");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&mac_key).expect("key");
        mac.update(payload.as_bytes());
        let expected = handler::domain::audit::hex(&mac.finalize().into_bytes());
        assert_eq!(
            envelope["hmac_sha256"],
            expected.as_str(),
            "verifiable with the key's SHA-256 only"
        );
        let message = handler::domain::BatchMessage::from_slice(payload.as_bytes())
            .expect("the payload is a batch message");
        records += message.records.len();
    }
    assert_eq!(records, 2_000, "every row once");
}

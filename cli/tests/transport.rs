//! Where the API key may go, proved on real sockets with the `mediflow` binary: never over plain
//! http:// to a host that is not loopback (refused before any connection), never along a
//! redirect (a 3xx ends the command naming its `Location`).

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::thread;

fn key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("key");
    std::fs::write(&path, "secret-key-123\n").expect("write key");
    path
}

fn mediflow(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mediflow"));
    command
        .args(args)
        .env_remove("MEDIFLOW_URL")
        .env_remove("MEDIFLOW_API_KEY_FILE")
        .env_remove("MEDIFLOW_CLIENT")
        .stdin(Stdio::null());
    command
}

/// Whether anything connected to `listener` (non-blocking: the kernel has queued every
/// connection a finished process made).
fn was_connected(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).expect("non-blocking");
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

/// Reads one request head from the first connection to `listener`, answers with `response`,
/// and returns the head's lines.
fn answer_once(listener: TcpListener, response: String) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        (&stream).write_all(response.as_bytes()).expect("write");
        head
    })
}

fn one_line_failure(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "exit 1: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_owned();
    assert!(
        stderr.starts_with("mediflow: ") && !stderr.contains('\n'),
        "one line: {stderr}"
    );
    stderr
}

#[test]
fn a_redirect_is_an_error_naming_the_location_and_the_key_is_not_sent_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = key_file(dir.path());
    let first = TcpListener::bind("127.0.0.1:0").expect("bind");
    let second = TcpListener::bind("127.0.0.1:0").expect("bind");
    let location = format!(
        "http://{}/records?site_id=SITE001",
        second.local_addr().expect("addr")
    );
    let url = format!("http://{}", first.local_addr().expect("addr"));
    let served = answer_once(
        first,
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    let output = mediflow(&[
        "list",
        "--url",
        &url,
        "--api-key-file",
        key.to_str().expect("utf-8"),
        "--site",
        "SITE001",
    ])
    .output()
    .expect("run mediflow");
    let head = served.join().expect("the first listener answered");
    assert!(
        head.iter()
            .any(|h| h.eq_ignore_ascii_case("x-api-key: secret-key-123")),
        "the first listener got the request with its key: {head:?}"
    );
    let stderr = one_line_failure(&output);
    assert!(
        stderr.contains("307") && stderr.contains(&location),
        "names the status and the Location: {stderr}"
    );
    assert!(
        !was_connected(&second),
        "the redirect target never received a connection"
    );
}

#[test]
fn plain_http_to_a_host_that_is_not_loopback_is_refused_before_any_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = key_file(dir.path());
    // Every plain-http request of the process would go to this proxy: if it stays untouched,
    // nothing was sent anywhere (reqwest honours HTTP_PROXY/ALL_PROXY).
    let proxy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    for url in ["http://example.invalid", "http://10.255.255.1:8080/api"] {
        let output = mediflow(&[
            "list",
            "--url",
            url,
            "--api-key-file",
            key.to_str().expect("utf-8"),
            "--site",
            "SITE001",
        ])
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("ALL_PROXY", &proxy_url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run mediflow");
        let stderr = one_line_failure(&output);
        assert!(
            stderr.contains("refusing to send the API key") && stderr.contains("https://"),
            "{url}: names the fix: {stderr}"
        );
        assert!(!was_connected(&proxy), "{url}: no connection was made");
    }
}

#[test]
fn the_proxy_probe_sees_a_request_that_is_allowed() {
    // The counterpart of the test above: the same setup does see a connection when the URL is
    // allowed (https to a name goes through the proxy as CONNECT), so the probe can fail.
    let proxy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let served = answer_once(
        proxy,
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    );
    let output = mediflow(&[
        "list",
        "--url",
        "https://example.invalid",
        "--site",
        "SITE001",
    ])
    .env("HTTPS_PROXY", &proxy_url)
    .env("https_proxy", &proxy_url)
    .env("ALL_PROXY", &proxy_url)
    .env_remove("NO_PROXY")
    .env_remove("no_proxy")
    .output()
    .expect("run mediflow");
    let head = served.join().expect("the proxy was reached");
    assert!(
        head.first()
            .is_some_and(|l| l.starts_with("CONNECT example.invalid:443")),
        "{head:?}"
    );
    assert_eq!(output.status.code(), Some(1));
}

//! Starting the real binary for a test: `App::start(...)` gives a running `handler` process with
//! its own data folder, killed when dropped (the router in process, for the tests that need no
//! process: [`router`]). The process binds port 0 (the kernel picks a free
//! port, so parallel tests cannot race for one) and the test reads the real addresses from the
//! process's `listening` start-up line, as zero2prod's `spawn_app` does.

#![allow(
    dead_code,
    reason = "each test module uses a different part of the support code"
)]

pub mod azurite;
pub mod router;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub mod cosmos_emulator;

/// Everything a child process wrote (stdout and stderr, line by line), and a signal each time a
/// line arrives or a stream ends, so tests wait for a line instead of sleeping.
#[derive(Default)]
pub struct LogBook {
    lines: Mutex<Vec<String>>,
    /// Bumped on every line and on every stream end.
    changed: Notify,
    streams_open: AtomicUsize,
}

impl LogBook {
    /// Collects `streams` on one reader thread each.
    pub fn collect(streams: Vec<Box<dyn std::io::Read + Send>>) -> Arc<Self> {
        let book = Arc::new(Self::default());
        book.streams_open.store(streams.len(), Ordering::SeqCst);
        for stream in streams {
            let book = Arc::clone(&book);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    book.lines.lock().expect("logs").push(line);
                    book.changed.notify_waiters();
                }
                book.streams_open.fetch_sub(1, Ordering::SeqCst);
                book.changed.notify_waiters();
            });
        }
        book
    }

    /// Starts `command` with its stdout and stderr collected.
    pub fn spawn(command: &mut Command) -> (Child, Arc<Self>) {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start handler");
        let streams = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        (child, Self::collect(streams))
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("logs").clone()
    }

    /// Waits (at most `within`) until `found` returns `Some` for the lines so far; `None` if the
    /// process closed its output first or the time ran out.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        mut found: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before the check, so a line that arrives in between still wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(value) = found(&self.lines.lock().expect("logs")) {
                return Some(value);
            }
            if self.streams_open.load(Ordering::SeqCst) == 0 {
                return None;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}

/// What a polled probe answers: `bool` (whether the condition holds) or `Option<T>` (the value
/// awaited, once it is there).
pub trait Probed {
    type Value;
    fn done(self) -> Option<Self::Value>;
}

impl Probed for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Probed for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// A description formatted only if it is shown (a wait that fails): `Lazy(|| app.logs()...)`.
pub struct Lazy<F>(pub F);

impl<F: Fn() -> String> std::fmt::Display for Lazy<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}

/// The one polling loop of the tests: asks `probe` every `every` until it answers `true` (or a
/// value, returned), and fails the test once `within` has passed, naming `what` was awaited. For
/// state only reachable by asking (an HTTP answer, a queue count, a metric); a process's own
/// output is waited on without polling ([`LogBook::wait_for`], [`App::wait_for_logs`]).
pub async fn wait_until<P, F, Fut>(
    what: impl std::fmt::Display,
    within: Duration,
    every: Duration,
    mut probe: F,
) -> P::Value
where
    P: Probed,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let started = Instant::now();
    let mut asked = 0_u32;
    loop {
        asked += 1;
        if let Some(value) = probe().await.done() {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "waited {within:?} (asked {asked} times) for {what}, in vain"
        );
        tokio::time::sleep(every).await;
    }
}

/// How a process that ran to its end ended, and what it wrote on each stream.
#[derive(Debug)]
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// Runs `command` to its end, waiting at most `within` (plus the start slack of an emulated
/// machine); a process still running then is killed and the test fails with what it wrote.
pub async fn run_to_end(command: &mut Command, within: Duration) -> Finished {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the process");
    let stream =
        |s: Option<Box<dyn std::io::Read + Send>>| LogBook::collect(s.into_iter().collect());
    let stdout = stream(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = stream(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + within + start_slack();
    for book in [&stdout, &stderr] {
        // Returns when the stream closes (the process exited) or the time is up.
        book.wait_for(deadline.saturating_duration_since(Instant::now()), |_| {
            None::<()>
        })
        .await;
    }
    if stdout.streams_open.load(Ordering::SeqCst) + stderr.streams_open.load(Ordering::SeqCst) > 0 {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the process did not end within {within:?}; stdout:\n{}\nstderr:\n{}",
            stdout.lines().join("\n"),
            stderr.lines().join("\n")
        );
    }
    Finished {
        status: child.wait().expect("exit status"),
        stdout: stdout.lines(),
        stderr: stderr.lines(),
    }
}

/// The addresses in a `handler` start-up line (`"message":"listening"` in the JSON log).
fn listening_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &value["fields"];
    if fields["message"] != "listening" {
        return None;
    }
    let addr = |name: &str| fields[name].as_str()?.parse::<SocketAddr>().ok();
    Some((addr("http_addr")?, addr("metrics_addr")?))
}

/// How the binary is hosted in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosting {
    /// `MEDIFLOW_ADDR=127.0.0.1:<port>`.
    Standalone,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT=<port>`, as the Functions host starts it.
    CustomHandler,
}

/// A running `handler` process.
pub struct App {
    pub addr: SocketAddr,
    /// Where `/metrics` is served: `addr` unless `MEDIFLOW_METRICS_ADDR` gave it its own port.
    pub metrics_addr: SocketAddr,
    pub hosting: Hosting,
    pub data_dir: PathBuf,
    child: Child,
    logs: Arc<LogBook>,
    env: HashMap<String, String>,
    temp_dir: Option<tempfile::TempDir>,
}

/// Settings for [`App::start`].
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub hosting: Hosting,
    pub env: Vec<(String, String)>,
    /// Reuse a data folder (restart tests); a fresh temp folder otherwise.
    pub data_dir: Option<PathBuf>,
    /// Wait for `/ready` (the store open) before returning; off for tests of a store that is down.
    pub wait_ready: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            hosting: Hosting::Standalone,
            env: Vec::new(),
            data_dir: None,
            wait_ready: true,
        }
    }
}

impl AppOptions {
    #[must_use]
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Every `(name, value)` of `pairs`, as [`AppOptions::env`] would add them one by one.
    #[must_use]
    pub fn envs<N: AsRef<str>, V: Into<String>>(
        mut self,
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        for (name, value) in pairs {
            self = self.env(name.as_ref(), value);
        }
        self
    }

    #[must_use]
    pub fn hosting(mut self, hosting: Hosting) -> Self {
        self.hosting = hosting;
        self
    }

    #[must_use]
    pub fn no_wait_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    #[must_use]
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }
}

pub const BINARY: &str = env!("CARGO_BIN_EXE_handler");

/// The program a test starts: [`BINARY`], or `MEDIFLOW_TEST_BINARY` when set, a launcher that runs
/// another build of the handler with the same environment (the arm64 stage of scripts/test.sh
/// points it at the arm64 binary booted in an emulated machine: scripts/arm64-guest.sh).
pub fn binary() -> String {
    std::env::var("MEDIFLOW_TEST_BINARY").unwrap_or_else(|_| BINARY.to_owned())
}

/// Extra seconds a start may take on top of the usual deadlines: `MEDIFLOW_TEST_START_SLACK_SECS`
/// (an emulated machine boots before the handler starts), 0 by default.
fn start_slack() -> Duration {
    Duration::from_secs(
        std::env::var("MEDIFLOW_TEST_START_SLACK_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(0),
    )
}

impl App {
    /// Starts the binary on port 0 and waits for its `listening` line (and `/ready` unless
    /// told not to).
    pub async fn start(options: AppOptions) -> Self {
        let (temp, data_dir) = if let Some(dir) = options.data_dir {
            (None, dir)
        } else {
            let temp = tempfile::tempdir().expect("temp dir");
            let dir = temp.path().join("data");
            (Some(temp), dir)
        };
        let wait_ready = options.wait_ready;
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("MEDIFLOW_DATA_DIR".into(), data_dir.display().to_string());
        // The full access log (a line per request, off by default): the log tests read it.
        env.insert(
            "RUST_LOG".into(),
            "info,handler::api::middleware=debug".into(),
        );
        env.insert("LOG_FORMAT".into(), "json".into());
        match options.hosting {
            Hosting::Standalone => env.insert("MEDIFLOW_ADDR".into(), "127.0.0.1:0".into()),
            Hosting::CustomHandler => {
                // Without a key file the handler refuses to start under the Functions host unless
                // told so; a test that sets a key file gets auth.
                env.insert("MEDIFLOW_AUTH".into(), "off".into());
                env.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "0".into())
            }
        };
        env.extend(options.env);
        let (mut child, logs) = LogBook::spawn(
            Command::new(binary())
                .env_clear()
                .envs(
                    std::env::vars().filter(|(k, _)| k == "PATH" || k.starts_with("AZURE_COSMOS_")),
                )
                .envs(&env),
        );
        let listening = logs
            .wait_for(Duration::from_secs(20) + start_slack(), |lines| {
                lines.iter().find_map(|l| listening_line(l))
            })
            .await;
        let Some((addr, metrics_addr)) = listening else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "handler did not report `listening`; logs:\n{}",
                logs.lines().join("\n")
            );
        };
        let app = Self {
            addr,
            metrics_addr,
            hosting: options.hosting,
            data_dir,
            child,
            logs,
            env,
            temp_dir: temp,
        };
        if wait_ready {
            app.wait_until_ready().await;
        }
        app
    }

    pub async fn standalone() -> Self {
        Self::start(AppOptions::default()).await
    }

    /// Waits until `/ready` says the store is open.
    pub async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        let url = self.url("/ready");
        wait_until(
            Lazy(|| format!("/ready to answer 200; logs:\n{}", self.logs().join("\n"))),
            Duration::from_secs(30),
            Duration::from_millis(25),
            || async {
                client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path` (no API key), answered with a JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.url(path))
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON body")
    }

    /// The Prometheus text of `/metrics`, where the process serves it (`metrics_addr`).
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Every line the process wrote so far (stdout and stderr).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lines()
    }

    /// Waits (at most `within`) until the lines written so far satisfy `done`; panics with the
    /// logs otherwise.
    pub async fn wait_for_logs(&self, within: Duration, done: impl Fn(&[String]) -> bool) {
        if self
            .logs
            .wait_for(within, |lines| done(lines).then_some(()))
            .await
            .is_none()
        {
            panic!(
                "the expected log lines did not appear within {within:?}; logs:\n{}",
                self.logs().join("\n")
            );
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to flush or drain.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (the process starts its drain).
    pub fn send_sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits (at most `within`) for the process to exit; its status, or `None` if it did not.
    pub async fn wait_for_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        // The output streams close when the process exits (nothing else holds them); then the
        // exit status is there, or about to be.
        self.logs.wait_for(within, |_| None::<()>).await;
        if self.logs.streams_open.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.child.wait().ok()
    }

    /// Restarts the process with the same settings and data folder (after a kill).
    pub async fn restart(mut self) -> Self {
        self.kill_hard();
        let env: Vec<(String, String)> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let temp = self.temp_dir.take();
        let options = AppOptions {
            hosting: self.hosting,
            env,
            data_dir: Some(self.data_dir.clone()),
            wait_ready: true,
        };
        let mut app = Self::start(options).await;
        app.temp_dir = temp;
        app
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A valid record body (the seed contract's example).
pub fn valid_record() -> serde_json::Value {
    serde_json::json!({
        "site_id": "site001",
        "trial_phase": "II",
        "submission_date": "2025-03-15",
        "status": "pending",
        "patient_count": 42,
        "notes": "Initial submission"
    })
}

/// Which store a test's app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Embedded,
    Cosmos,
}

impl Backend {
    /// Starts an app on this backend, ready to serve (fails when the backend's emulator cannot
    /// run here).
    pub async fn start(self, options: AppOptions) -> App {
        let options = match self {
            Self::Embedded => options,
            Self::Cosmos => {
                let env = cosmos_emulator::cosmos_app_env().await;
                env.into_iter().fold(options, |o, (k, v)| o.env(&k, v))
            }
        };
        App::start(options).await
    }
}

//! Starting the real binary for a test: `App::start(...)` gives a running `handler` process on a
//! free port, with its own data folder, killed when dropped.

#![allow(
    dead_code,
    reason = "each test module uses a different part of the support code"
)]

pub mod azurite;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod cosmos_emulator;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether the emulator tests must run (CI: a missing emulator is a failure, not a skip).
pub fn emulators_required() -> bool {
    std::env::var("MEDIFLOW_REQUIRE_EMULATORS").is_ok_and(|v| v == "1")
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
    pub hosting: Hosting,
    pub data_dir: PathBuf,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
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
    /// Starts the binary and waits until `/health` answers (or `/` under the custom-handler host).
    pub async fn start(options: AppOptions) -> Self {
        let (temp, data_dir) = if let Some(dir) = options.data_dir {
            (None, dir)
        } else {
            let temp = tempfile::tempdir().expect("temp dir");
            let dir = temp.path().join("data");
            (Some(temp), dir)
        };
        let wait_ready = options.wait_ready;
        let port = free_port();
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("MEDIFLOW_DATA_DIR".into(), data_dir.display().to_string());
        env.insert("RUST_LOG".into(), "info".into());
        env.insert("LOG_FORMAT".into(), "json".into());
        match options.hosting {
            Hosting::Standalone => env.insert("MEDIFLOW_ADDR".into(), format!("127.0.0.1:{port}")),
            Hosting::CustomHandler => {
                env.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string())
            }
        };
        env.extend(options.env);
        let mut child = Command::new(binary())
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| k == "PATH" || k.starts_with("AZURE_COSMOS_")))
            .envs(&env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start handler");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
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
        {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let app = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            hosting: options.hosting,
            data_dir,
            child,
            logs,
            env,
            temp_dir: temp,
        };
        app.wait_until_serving().await;
        if wait_ready {
            app.wait_until_ready().await;
        }
        app
    }

    pub async fn standalone() -> Self {
        Self::start(AppOptions::default()).await
    }

    async fn wait_until_serving(&self) {
        let path = match self.hosting {
            Hosting::Standalone => "/health",
            Hosting::CustomHandler => "/",
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20) + start_slack();
        while Instant::now() < deadline {
            if client
                .get(self.url(path))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("handler did not start; logs:\n{}", self.logs().join("\n"));
    }

    /// Waits until `/ready` says the store is open.
    pub async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client
                .get(self.url("/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "handler never became ready; logs:\n{}",
            self.logs().join("\n")
        );
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

    /// Every line the process wrote so far (stdout and stderr).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to flush or drain.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
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
        let mut options = AppOptions {
            hosting: self.hosting,
            env,
            data_dir: Some(self.data_dir.clone()),
            wait_ready: true,
        };
        options
            .env
            .retain(|(k, _)| k != "MEDIFLOW_ADDR" && k != "FUNCTIONS_CUSTOMHANDLER_PORT");
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Cosmos,
}

impl Backend {
    /// Starts an app on this backend, ready to serve; `None` when the backend's emulator is not
    /// installed and the run does not require it (a skip notice is printed).
    pub async fn start(self, options: AppOptions) -> Option<App> {
        let options = match self {
            Self::Embedded => options,
            Self::Cosmos => {
                let env = cosmos_emulator::cosmos_app_env().await?;
                env.into_iter().fold(options, |o, (k, v)| o.env(&k, v))
            }
        };
        Some(App::start(options).await)
    }
}

//! The Cosmos DB emulator for tests: `tests/emulators/cosmos-emulator.js` (see its README) started
//! as a child process, with its control API (fault injection, request counts) and one fresh
//! database + container per test.
//!
//! * [`CosmosEmulator::shared`]: one emulator per test process, started on first use. Tests share
//!   it by each using their own database, so they must not inject faults. Its stores and apps run
//!   with a longer operation timeout ([`SHARED_OPERATION_TIMEOUT_MS`]).
//! * [`CosmosEmulator::dedicated`]: an emulator for one test alone, for throttling and outages
//!   (a fault hits the whole emulator).
//!
//! Both are spawned with `--exit-on-stdin-eof` and a piped stdin held open: if the test process
//! dies without cleaning up, the pipe closes and the emulator exits instead of lingering.
//!
//! Without `node`, without `tests/emulators/node_modules`, or in a build without the `emulator`
//! feature, the emulator tests fail, saying what is missing (`scripts/test.sh` installs the
//! emulators and builds with `--all-features`): a skipped test would pass without proving
//! anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

/// The emulator's well-known key (the emulator accepts any key; this one is public).
pub const EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

/// `MEDIFLOW_COSMOS_TIMEOUT_MS` of the stores and apps on the shared emulator. The emulator is one
/// Node process serving every test of the run at once, on CI's two cores beside the tests
/// themselves: there one `audit_page` query took over the production default of 5 s (CI,
/// 2026-12-07; the query then took 3 s even alone, since made 20 times cheaper). The shared
/// emulator's tests are about correctness, not latency, so they wait longer (still under the
/// apps' 30 s request timeout). The fault-injection tests run on dedicated emulators with the
/// production default, which they test.
pub const SHARED_OPERATION_TIMEOUT_MS: u64 = 20_000;

/// How long the launcher may take to print `ready` (about 1 s idle, several under load).
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn emulators_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/emulators")
}

/// Why the emulator cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !cfg!(feature = "emulator") {
        return Some(
            "the test binary was built without the `emulator` feature (use --all-features)".into(),
        );
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("`node` is not on PATH".into());
    }
    let package = emulators_dir().join("node_modules/@vercel/cosmosdb-server");
    if !package.is_dir() {
        return Some(format!(
            "{} is missing (run `npm ci` in tests/emulators)",
            package.display()
        ));
    }
    None
}

/// Panics, saying why, when the emulator cannot run here.
fn check_prerequisites() {
    if let Some(reason) = missing_prerequisite() {
        panic!("the Cosmos emulator cannot run: {reason}");
    }
}

/// A running `cosmos-emulator.js`.
#[derive(Debug)]
pub struct CosmosEmulator {
    pub data_port: u16,
    pub control_port: u16,
    /// `MEDIFLOW_COSMOS_TIMEOUT_MS` of its containers; `None`: the production default.
    operation_timeout_ms: Option<u64>,
    child: Child,
    /// Held open: the emulator exits when it closes (`--exit-on-stdin-eof`).
    _stdin: ChildStdin,
}

impl CosmosEmulator {
    /// The emulator shared by this test process.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<CosmosEmulator> = OnceLock::new();
        check_prerequisites();
        SHARED.get_or_init(|| {
            Self::start(Some(SHARED_OPERATION_TIMEOUT_MS))
                .unwrap_or_else(|e| panic!("cannot start the Cosmos emulator: {e}"))
        })
    }

    /// An emulator for one test alone (for fault injection); stopped when dropped.
    pub fn dedicated() -> Self {
        check_prerequisites();
        Self::start(None).unwrap_or_else(|e| panic!("cannot start the Cosmos emulator: {e}"))
    }

    fn start(operation_timeout_ms: Option<u64>) -> Result<Self, String> {
        let mut child = Command::new("node")
            .arg(emulators_dir().join("cosmos-emulator.js"))
            .args([
                "--http",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--control-port",
                "0",
                "--exit-on-stdin-eof",
                "--quiet",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot spawn node: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        // Read the ready-line protocol on a thread so a stuck launcher cannot hang the test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut control = None;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut words = line.split_whitespace();
                let port = |w: Option<&str>| w.and_then(|p| p.parse::<u16>().ok());
                match words.next() {
                    Some("control") => control = port(words.next()),
                    Some("ready") => {
                        let _ = tx.send(control.zip(port(words.next())));
                        return;
                    }
                    _ => {}
                }
            }
            let _ = tx.send(None);
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some((control_port, data_port))) => Ok(Self {
                data_port,
                control_port,
                operation_timeout_ms,
                child,
                _stdin: stdin,
            }),
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                Err(match outcome {
                    Ok(_) => "the launcher exited without a `control`/`ready` line".into(),
                    Err(_) => format!("no `ready` line within {START_TIMEOUT:?}"),
                })
            }
        }
    }

    /// `http://127.0.0.1:<data port>/`, the `COSMOS_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/", self.data_port)
    }

    /// Calls the control API (`GET` without a body, `POST` with one) and returns its JSON answer.
    pub async fn control(&self, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.control_port);
        let client = reqwest::Client::new();
        let request = match body {
            Some(body) => client.post(&url).json(&body),
            None => client.get(&url),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("control {path}: {e}"));
        assert!(
            response.status().is_success(),
            "control {path} answered {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("control {path}: {e}"))
    }

    /// Request counts by kind (`read_doc`, `query_docs`, `create_doc`...) for one database.
    pub async fn kinds(&self, database: &str) -> BTreeMap<String, u64> {
        let stats = self.control("/stats", None).await;
        stats["dbs"][database]
            .as_object()
            .map(|kinds| {
                kinds
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many 429s the emulator injected so far.
    pub async fn throttled(&self) -> u64 {
        self.control("/stats", None).await["throttled"]
            .as_u64()
            .unwrap_or(0)
    }

    /// The next `count` document operations (of `kinds`, or any) answer 429 with
    /// `x-ms-retry-after-ms: retry_after_ms`; `count` 0 clears it.
    pub async fn throttle(&self, count: u32, retry_after_ms: u64, kinds: Option<&[&str]>) {
        self.control(
            "/fault/throttle",
            Some(json!({ "count": count, "retry_after_ms": retry_after_ms, "kinds": kinds })),
        )
        .await;
    }

    /// Closes the data port (connections refused); data is kept.
    pub async fn down(&self) {
        self.control("/fault/down", Some(json!({}))).await;
    }

    /// Listens again on the same port, with all data still there.
    pub async fn up(&self) {
        self.control("/fault/up", Some(json!({}))).await;
    }

    /// A new, uniquely named database with its containers in this emulator: the data container
    /// (partition key `/id`, the production indexing policy) and the audit container (`/chain`).
    #[cfg(feature = "emulator")]
    pub async fn fresh_container(&self) -> CosmosContainer {
        use azure_data_cosmos::models::{ContainerProperties, IndexingPolicy};

        let unique = uuid::Uuid::new_v4().simple().to_string();
        let container = CosmosContainer {
            endpoint: self.endpoint(),
            database: format!("mediflow-test-{}", &unique[..12]),
            container: "records".into(),
            audit_container: "audit".into(),
            operation_timeout_ms: self.operation_timeout_ms,
        };
        let client = handler::store::cosmos::client(&container.config())
            .await
            .unwrap_or_else(|e| panic!("cannot reach the emulator: {e}"));
        client
            .create_database(&container.database, None)
            .await
            .unwrap_or_else(|e| panic!("create database: {e}"));
        let policy_file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../infra/policies/cosmos-indexing-policy.json");
        let policy: IndexingPolicy =
            serde_json::from_slice(&std::fs::read(&policy_file).expect("indexing policy file"))
                .expect(
                    "infra/policies/cosmos-indexing-policy.json is a valid Cosmos indexing policy",
                );
        let properties = ContainerProperties::new(container.container.clone(), "/id".into())
            .with_indexing_policy(policy);
        client
            .database_client(container.database.as_str())
            .create_container(properties, None)
            .await
            .unwrap_or_else(|e| panic!("create container: {e}"));
        client
            .database_client(container.database.as_str())
            .create_container(
                ContainerProperties::new(container.audit_container.clone(), "/chain".into())
                    .with_indexing_policy(
                        serde_json::from_value(audit_indexing_policy())
                            .expect("a valid Cosmos indexing policy"),
                    ),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("create the audit container: {e}"));
        container
    }

    #[cfg(not(feature = "emulator"))]
    pub async fn fresh_container(&self) -> CosmosContainer {
        unreachable!(
            "check_prerequisites refuses to start the emulator without the `emulator` feature"
        )
    }
}

impl Drop for CosmosEmulator {
    fn drop(&mut self) {
        // Only dedicated emulators are dropped (the shared one lives in a static and ends with the
        // process, through its stdin). Data is in memory: nothing to flush.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The audit container's indexing policy: every path, plus the two composite indexes its ordered
/// queries need (the emulator, like Cosmos, refuses an ORDER BY on several fields without one):
/// `(time, chain, seq)` for `audit_page`, `(chain, seq)` for `audit_chain`. Terraform's audit
/// container must carry the same two.
fn audit_indexing_policy() -> Value {
    let ascending = |paths: &[&str]| -> Vec<Value> {
        paths
            .iter()
            .map(|path| json!({ "path": path, "order": "ascending" }))
            .collect()
    };
    json!({
        "indexingMode": "consistent",
        "automatic": true,
        "includedPaths": [{ "path": "/*" }],
        "excludedPaths": [{ "path": "/\"_etag\"/?" }],
        "compositeIndexes": [
            ascending(&["/time", "/chain", "/seq"]),
            ascending(&["/chain", "/seq"]),
        ],
    })
}

/// One test's database and container.
#[derive(Debug, Clone)]
pub struct CosmosContainer {
    pub endpoint: String,
    pub database: String,
    pub container: String,
    /// The audit trail's container (partition key `/chain`).
    pub audit_container: String,
    /// `MEDIFLOW_COSMOS_TIMEOUT_MS`, when not the production default.
    pub operation_timeout_ms: Option<u64>,
}

impl CosmosContainer {
    /// The environment a `handler` process needs to use this container.
    pub fn env(&self) -> Vec<(String, String)> {
        let timeout = self.operation_timeout_ms.map(|ms| ms.to_string());
        let timeout = timeout
            .as_deref()
            .map(|ms| ("MEDIFLOW_COSMOS_TIMEOUT_MS", ms));
        [
            ("MEDIFLOW_STORE", "cosmos"),
            ("COSMOS_ENDPOINT", self.endpoint.as_str()),
            ("COSMOS_DATABASE", self.database.as_str()),
            ("COSMOS_CONTAINER", self.container.as_str()),
            ("COSMOS_AUDIT_CONTAINER", self.audit_container.as_str()),
            ("COSMOS_CREDENTIAL", "key"),
            ("COSMOS_KEY", EMULATOR_KEY),
            // The store turns HTTP/2 off for key auth itself; this keeps any other SDK use honest.
            ("AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED", "false"),
        ]
        .into_iter()
        .chain(timeout)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The same settings, parsed the way the binary parses them.
    pub fn config(&self) -> handler::config::CosmosConfig {
        let env: std::collections::HashMap<String, String> = self.env().into_iter().collect();
        handler::config::CosmosConfig::from_source(&env).expect("valid Cosmos settings")
    }

    /// An in-process store on this container (for the contract suite).
    pub async fn store(&self) -> handler::store::cosmos::CosmosStore {
        handler::store::cosmos::CosmosStore::connect(&self.config())
            .await
            .unwrap_or_else(|e| panic!("cannot open the test container: {e}"))
    }
}

/// The environment for a `handler` process on a fresh container of the shared emulator.
pub async fn cosmos_app_env() -> Vec<(String, String)> {
    CosmosEmulator::shared().fresh_container().await.env()
}

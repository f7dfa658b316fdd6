//! Azurite (Microsoft's Storage emulator, `tests/emulators`, pinned 3.35.0), queue service only:
//! started on a free 127.0.0.1 port with its own data folder, which survives `stop()` /
//! `restart()` (outage tests). Gives the child `handler` its `MEDIFLOW_QUEUE` and the test a
//! client of its own (create queues, send as a Functions producer would, peek, count).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azure_storage_queue::models::{
    QueueClientGetPropertiesResultHeaders, QueueClientPeekMessagesOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueServiceClient};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Azurite's well-known development account and key (public).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn emulators_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/emulators"))
}

/// A running (or stopped, for an outage) Azurite queue service.
pub struct Azurite {
    pub port: u16,
    child: Option<Child>,
    location: tempfile::TempDir,
}

impl Azurite {
    /// Starts Azurite; `None` (with a skip notice) when node or the npm packages are missing,
    /// unless `MEDIFLOW_REQUIRE_EMULATORS=1`, which makes that a failure.
    pub async fn start() -> Option<Self> {
        let bin = emulators_dir().join("node_modules/.bin/azurite-queue");
        let node = Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !node.is_ok_and(|s| s.success()) || !bin.exists() {
            let why = format!(
                "Azurite unavailable: needs `node` on PATH and `npm ci` in {} ({} missing)",
                emulators_dir().display(),
                if bin.exists() {
                    "node"
                } else {
                    "node_modules/.bin/azurite-queue"
                }
            );
            assert!(
                !super::emulators_required(),
                "{why} (MEDIFLOW_REQUIRE_EMULATORS=1)"
            );
            eprintln!("SKIP: {why}");
            return None;
        }
        let mut azurite = Self {
            port: super::free_port(),
            child: None,
            location: tempfile::tempdir().expect("temp dir"),
        };
        azurite.spawn().await;
        Some(azurite)
    }

    async fn spawn(&mut self) {
        let child = Command::new(emulators_dir().join("node_modules/.bin/azurite-queue"))
            .args([
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                &self.port.to_string(),
                "--silent",
                "--skipApiVersionCheck",
            ])
            .arg("--location")
            .arg(self.location.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite-queue");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Azurite did not listen on {} within 60 s",
                self.port
            );
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("Azurite exited at start: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the emulator (SIGINT, then SIGKILL after 5 s); its data stays in the folder.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// The queue endpoint (no trailing slash).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// A connection string with the account key: the handler signs its own SAS from it.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};QueueEndpoint={}",
            self.endpoint()
        )
    }

    /// An account SAS URL (the other form `MEDIFLOW_QUEUE` takes).
    pub fn sas_url(&self) -> String {
        let secret = handler::secret::Secret::new(self.connection_string());
        handler::queue::client::connection_service_url(&secret)
            .expect("sign a SAS")
            .to_string()
    }

    /// The test's own client for `queue`.
    pub fn queue(&self, name: &str) -> TestQueue {
        let url = azure_core::http::Url::parse(&self.sas_url()).expect("url");
        let client = QueueServiceClient::new(url, None, None)
            .expect("service client")
            .queue_client(name)
            .expect("queue client");
        TestQueue {
            client,
            name: name.to_owned(),
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One queue, seen from the test (a producer, an operator peeking at the poison queue).
pub struct TestQueue {
    client: QueueClient,
    pub name: String,
}

impl TestQueue {
    pub async fn create(&self) {
        self.client.create(None).await.expect("create queue");
    }

    /// Sends `json` base64-encoded, as a Functions producer must.
    pub async fn send_json(&self, json: &str) {
        self.send_text(&B64.encode(json)).await;
    }

    /// Sends the text exactly as given.
    pub async fn send_text(&self, text: &str) {
        let message = QueueMessage {
            message_text: Some(text.to_owned()),
        }
        .try_into()
        .expect("message");
        self.client
            .send_message(message, None)
            .await
            .expect("send message");
    }

    /// The visible messages' texts (up to 32), without receiving them.
    pub async fn peek(&self) -> Vec<String> {
        let options = QueueClientPeekMessagesOptions {
            number_of_messages: Some(32),
            ..Default::default()
        };
        match self.client.peek_messages(Some(options)).await {
            Ok(response) => response
                .into_model()
                .expect("peek body")
                .items
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.message_text)
                .collect(),
            Err(err) if err.http_status() == Some(azure_core::http::StatusCode::NotFound) => {
                Vec::new()
            }
            Err(err) => panic!("peek {}: {}", self.name, err.kind()),
        }
    }

    /// Every message, visible or leased (approximate count; exact on Azurite). 0 if no queue.
    pub async fn count(&self) -> i64 {
        match self.client.get_properties(None).await {
            Ok(response) => response
                .approximate_messages_count()
                .expect("count header")
                .unwrap_or(0),
            Err(err) if err.http_status() == Some(azure_core::http::StatusCode::NotFound) => 0,
            Err(err) => panic!("properties of {}: {}", self.name, err.kind()),
        }
    }
}

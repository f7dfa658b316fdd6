//! Azurite (Microsoft's Storage emulator, `tests/emulators`, pinned 3.35.0), queue service only:
//! started on port 0 (it reports the port it bound in its start-up line) with its own data folder,
//! which survives `stop()` / `restart()` (outage tests; a restart binds the same port again, which
//! the stopped emulator has just released). Gives the child `handler` its `MEDIFLOW_QUEUE` and the test a
//! client of its own (create queues, send as a Functions producer would, peek, count). A
//! [`DeleteGate`] in front of it holds back the handler's message deletes on demand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    /// Starts Azurite; fails, saying what is missing, when node or the npm packages are not
    /// installed (`scripts/test.sh` installs them).
    pub async fn start() -> Self {
        let bin = emulators_dir().join("node_modules/.bin/azurite-queue");
        let node = Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            node.is_ok_and(|s| s.success()) && bin.exists(),
            "Azurite unavailable: needs `node` on PATH and `npm ci` in {} ({} missing)",
            emulators_dir().display(),
            if bin.exists() {
                "node"
            } else {
                "node_modules/.bin/azurite-queue"
            }
        );
        let mut azurite = Self {
            port: 0,
            child: None,
            location: tempfile::tempdir().expect("temp dir"),
        };
        azurite.spawn().await;
        azurite
    }

    /// Starts the process on `self.port` (0: any free port) and waits for its
    /// "successfully listens on http://127.0.0.1:<port>" line.
    async fn spawn(&mut self) {
        let mut child = Command::new(emulators_dir().join("node_modules/.bin/azurite-queue"))
            .args([
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                &self.port.to_string(),
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ])
            .arg("--location")
            .arg(self.location.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite-queue");
        let stdout = child.stdout.take().expect("stdout pipe");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok);
            let port = lines.by_ref().find_map(|line| {
                line.split_once("successfully listens on http://127.0.0.1:")
                    .and_then(|(_, port)| port.trim().parse::<u16>().ok())
            });
            let _ = tx.send(port);
            // Keep draining so Azurite never blocks on a full pipe.
            lines.for_each(drop);
        });
        let port = tokio::time::timeout(Duration::from_secs(60), rx).await;
        match port {
            Ok(Ok(Some(port))) => self.port = port,
            Ok(_) => panic!(
                "Azurite exited before listening: {:?}",
                child.try_wait().ok().flatten()
            ),
            Err(tokio::time::error::Elapsed { .. }) => {
                panic!("Azurite did not report listening within 60 s")
            }
        }
        self.child = Some(child);
    }

    /// Stops the emulator (SIGINT, then SIGKILL after 5 s); its data stays in the folder. Waits
    /// for the exit itself (a thread reaps the child), not by polling.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let (exited, exit) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = child.wait();
            let _ = exited.send(());
        });
        if exit.recv_timeout(Duration::from_secs(5)).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let _ = exit.recv();
        }
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
        handler::queue::connection::connection_service_url(&secret)
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

/// A TCP proxy in front of Azurite that can hold back message deletes: while holding, a request
/// `DELETE …/messages/<id>?popreceipt=…` is never forwarded nor answered (its connection stays
/// open until the client goes away). A handler that sends one has ingested that message's batch
/// and still holds its lease: the state a crash must not turn into a loss or a duplicate. Every
/// other request passes through untouched.
pub struct DeleteGate {
    pub port: u16,
    holding: Arc<AtomicBool>,
    held: tokio::sync::watch::Receiver<usize>,
}

impl DeleteGate {
    /// Listens on a free port and forwards to `azurite`; passes everything until [`Self::hold`].
    pub fn start(azurite: &Azurite) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let port = listener.local_addr().expect("gate address").port();
        let upstream = azurite.port;
        let holding = Arc::new(AtomicBool::new(false));
        let (held_tx, held) = tokio::sync::watch::channel(0);
        let held_tx = Arc::new(held_tx);
        let gate_holding = Arc::clone(&holding);
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (holding, held_tx) = (Arc::clone(&gate_holding), Arc::clone(&held_tx));
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) {
                        forward(client, server, &holding, &held_tx);
                    }
                });
            }
        });
        Self {
            port,
            holding,
            held,
        }
    }

    /// The handler's `MEDIFLOW_QUEUE`, through the gate.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};QueueEndpoint=http://127.0.0.1:{}/{ACCOUNT}",
            self.port
        )
    }

    /// From now on, message deletes are held back.
    pub fn hold(&self) {
        self.holding.store(true, Ordering::SeqCst);
    }

    /// From now on, everything passes again (deletes held so far stay held).
    pub fn pass(&self) {
        self.holding.store(false, Ordering::SeqCst);
    }

    /// Waits (at most `within`) until `count` deletes are held; `false` if they were not.
    pub async fn wait_for_held(&self, count: usize, within: Duration) -> bool {
        let mut held = self.held.clone();
        tokio::time::timeout(within, held.wait_for(|n| *n >= count))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }
}

/// Copies `server`'s answers back to `client`, and `client`'s requests to `server` one by one
/// (HTTP/1.1: a head, then a `Content-Length` body), except a message delete while holding.
fn forward(
    client: TcpStream,
    mut server: TcpStream,
    holding: &AtomicBool,
    held_count: &tokio::sync::watch::Sender<usize>,
) {
    let (Ok(mut answers), Ok(mut to_client)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut answers, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut requests = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            match requests.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown(Shutdown::Write);
                    return;
                }
                Ok(_) => head.extend_from_slice(&line),
            }
            if line == b"\r\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let header = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
                .map(str::to_owned)
        };
        if header("transfer-encoding").is_some() {
            // Not what the SDK sends; pass the rest of this connection through unread.
            let _ = server.write_all(&head);
            let _ = std::io::copy(&mut requests, &mut server);
            return;
        }
        let length = header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        if (&mut requests).take(length).read_to_end(&mut body).is_err() {
            return;
        }
        let request_line = text.lines().next().unwrap_or_default();
        if holding.load(Ordering::SeqCst)
            && request_line.starts_with("delete ")
            && request_line.contains("/messages/")
            && request_line.contains("popreceipt=")
        {
            held_count.send_modify(|n| *n += 1);
            // Never answered: wait for the client to go away (its process killed).
            let _ = std::io::copy(&mut requests, &mut std::io::sink());
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if server
            .write_all(&head)
            .and_then(|()| server.write_all(&body))
            .is_err()
        {
            return;
        }
    }
}

//! The batch queue over Azure Storage queues (`azure_storage_queue`, the official crate): the queue
//! `mediflow-batches` and its poison queue `mediflow-batches-poison`.
//!
//! The crate authenticates only with an Entra ID token (HTTPS) or a SAS in the URL, so:
//! - `MEDIFLOW_QUEUE__queueServiceUri` (production): the process's Entra ID identity, by the one
//!   policy of `config::AzureIdentity` (the same credential builder as Cosmos DB's).
//! - `MEDIFLOW_QUEUE` (Azurite, local): an account SAS URL, used as is, or a connection string with
//!   an account key, from which an account SAS is signed here (HMAC-SHA256, never sent or logged).
//!
//! Nothing secret reaches a log line: errors are described by kind and status only (the SDK's
//! transport errors can carry the request URL, which holds the SAS).

use std::sync::Arc;

use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, StatusCode, Url};
use azure_storage_queue::models::{
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueServiceClient, QueueServiceClientOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};

use crate::config::{AzureIdentity, QueueConfig};
use crate::credential::token_credential;
use crate::domain::BatchMessage;
use crate::secret::Secret;

/// Azurite's well-known development account (public, documented by Microsoft).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";

/// The account SAS signed from an account key: version 2019-02-02 (the string-to-sign before the
/// 2020-12-06 change), queue service only, every permission the trigger needs (create the poison
/// queue, send, receive, update, delete). It lives only in this process's memory, like the key it
/// is derived from; its expiry is far away so a long-running process never sees it lapse.
const SAS_VERSION: &str = "2019-02-02";
const SAS_SERVICES: &str = "q";
const SAS_RESOURCE_TYPES: &str = "sco";
const SAS_PERMISSIONS: &str = "rwdlacup";
const SAS_EXPIRY: &str = "2099-12-31T23:59:59Z";

/// One message received from the queue, leased to us until `pop_receipt` is used or expires.
/// `Debug` omits the text (patient data) and the pop receipt.
#[derive(Clone)]
pub struct Received {
    pub id: String,
    pub pop_receipt: String,
    /// How many times the message has been received, this time included.
    pub dequeue_count: u32,
    /// The message text exactly as stored (base64 when the producer encoded it).
    pub text: String,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("id", &self.id)
            .field("dequeue_count", &self.dequeue_count)
            .field("text_len", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// A queue operation that failed; says which and how, never with the URL or the message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("queue {operation} failed: {kind}")]
pub struct QueueError {
    pub operation: &'static str,
    /// The SDK's error kind, e.g. `Connection` or `HttpResponse(404, "QueueNotFound")`.
    pub kind: String,
    pub status: Option<u16>,
}

impl QueueError {
    fn new(operation: &'static str, err: &azure_core::Error) -> Self {
        Self {
            operation,
            kind: err.kind().to_string(),
            status: err.http_status().map(u16::from),
        }
    }

    /// The message is gone or someone else holds it (404, or 400 pop-receipt mismatch): the
    /// Functions host treats both as "nothing left to do" on delete and release.
    pub fn is_message_gone(&self) -> bool {
        matches!(self.status, Some(404))
            || (self.status == Some(400) && self.kind.contains("PopReceiptMismatch"))
    }
}

/// The queue clients cannot be built from the configuration (the process does not start).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct QueueSetupError(String);

/// How the client authenticates (for `Debug` and the start log; no secret in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthKind {
    WorkloadIdentity,
    ManagedIdentity,
    Sas,
    SignedAccountKey,
}

struct Inner {
    queue: QueueClient,
    poison: QueueClient,
    queue_name: String,
    poison_name: String,
    /// Scheme, host and path of the service: no query, so no SAS.
    endpoint: String,
    auth: AuthKind,
    base64: bool,
    /// How long poison messages are kept; `None`: never expire.
    poison_retention: Option<std::time::Duration>,
}

/// The batch queue and its poison queue. Cheap to clone.
#[derive(Clone)]
pub struct BatchQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BatchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchQueue")
            .field("endpoint", &self.inner.endpoint)
            .field("queue", &self.inner.queue_name)
            .field("auth", &self.inner.auth)
            .field("base64", &self.inner.base64)
            .finish()
    }
}

impl BatchQueue {
    /// Connects to the queue named `queue_name` (and `<queue_name>-poison`). Builds the clients
    /// only: no request is made, so an unreachable queue service does not stop the process (the
    /// trigger retries). `base64`: encode sent messages as the Functions default expects.
    #[expect(
        clippy::unused_async,
        reason = "the server awaits it; a connection check may be added"
    )]
    pub async fn connect(
        config: &QueueConfig,
        queue_name: &str,
        base64: bool,
    ) -> Result<Self, QueueSetupError> {
        let (service_url, credential, auth) = match config {
            QueueConfig::Identity {
                service_uri,
                identity,
            } => {
                let url = Url::parse(service_uri.trim_end_matches('/')).map_err(|e| {
                    config_error(format!("MEDIFLOW_QUEUE__queueServiceUri is not a URL: {e}"))
                })?;
                let credential =
                    token_credential(identity).map_err(|e| config_error(e.to_string()))?;
                let auth = match identity {
                    AzureIdentity::WorkloadIdentity => AuthKind::WorkloadIdentity,
                    AzureIdentity::ManagedIdentity { .. } => AuthKind::ManagedIdentity,
                };
                (url, Some(credential), auth)
            }
            QueueConfig::Connection(secret) => {
                let (url, auth) = sas_service_url(secret)?;
                (url, None, auth)
            }
        };
        let endpoint = format!(
            "{}://{}{}",
            service_url.scheme(),
            service_url.host_str().unwrap_or_default(),
            service_url
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default()
        ) + service_url.path();
        let service = QueueServiceClient::new(service_url, credential, Some(client_options()))
            .map_err(|e| {
                config_error(format!(
                    "the queue service client cannot be built: {}",
                    e.kind()
                ))
            })?;
        let poison_name = format!("{queue_name}-poison");
        let client = |name: &str| {
            service
                .queue_client(name)
                .map_err(|e| config_error(format!("no client for queue {name}: {}", e.kind())))
        };
        let inner = Inner {
            queue: client(queue_name)?,
            poison: client(&poison_name)?,
            queue_name: queue_name.to_owned(),
            poison_name,
            endpoint,
            auth,
            base64,
            poison_retention: None,
        };
        tracing::info!(endpoint = %inner.endpoint, queue = %inner.queue_name, auth = ?inner.auth, "batch queue configured");
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub fn queue_name(&self) -> &str {
        &self.inner.queue_name
    }

    pub fn poison_queue_name(&self) -> &str {
        &self.inner.poison_name
    }

    /// Whether message text is base64 (host.json `messageEncoding`).
    pub fn base64(&self) -> bool {
        self.inner.base64
    }

    /// Puts a batch message on the queue (POST /batches).
    pub async fn send(&self, message: &BatchMessage) -> Result<(), QueueError> {
        let json = message.to_json();
        let text = if self.inner.base64 {
            B64.encode(json)
        } else {
            json
        };
        self.send_text(
            &self.inner.queue,
            "send",
            text,
            std::time::Duration::ZERO,
            None,
        )
        .await
    }

    /// Receives up to `max` messages (1..=32), each invisible to others for `lease`.
    pub async fn receive(
        &self,
        max: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<Received>, QueueError> {
        receive_from(&self.inner.queue, max, lease).await
    }
}

/// Receives up to `max` messages (1..=32) of `queue`, each invisible to others for `lease`.
async fn receive_from(
    queue: &QueueClient,
    max: u32,
    lease: std::time::Duration,
) -> Result<Vec<Received>, QueueError> {
    let options = QueueClientReceiveMessagesOptions {
        number_of_messages: Some(i32::try_from(max.clamp(1, 32)).unwrap_or(32)),
        visibility_timeout: Some(seconds(lease)),
        ..Default::default()
    };
    let response = queue
        .receive_messages(Some(options))
        .await
        .map_err(|e| QueueError::new("receive", &e))?;
    let messages = response
        .into_model()
        .map_err(|e| QueueError::new("receive", &e))?;
    Ok(messages
        .items
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            Some(Received {
                id: m.message_id?,
                pop_receipt: m.pop_receipt?,
                dequeue_count: m
                    .dequeue_count
                    .and_then(|c| u32::try_from(c).ok())
                    .unwrap_or(1),
                text: m.message_text.unwrap_or_default(),
            })
        })
        .collect())
}

impl BatchQueue {
    /// Deletes a handled message. A message already gone (or taken over) is not an error.
    pub async fn delete(&self, message: &Received) -> Result<(), QueueError> {
        match self
            .inner
            .queue
            .delete_message(&message.id, &message.pop_receipt, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => ignore_gone(QueueError::new("delete", &e)),
        }
    }

    /// Makes a message visible again after `delay` (for a retry), or extends its lease; returns
    /// the new pop receipt (`None` if the message is gone or someone else holds it).
    pub async fn set_visibility(
        &self,
        message: &Received,
        delay: std::time::Duration,
    ) -> Result<Option<String>, QueueError> {
        match self
            .inner
            .queue
            .update_message(&message.id, &message.pop_receipt, seconds(delay), None)
            .await
        {
            Ok(response) => Ok(response
                .headers()
                .get_optional_string(&"x-ms-popreceipt".into())),
            Err(e) => ignore_gone(QueueError::new("update", &e)).map(|()| None),
        }
    }

    /// Puts a fresh copy of a message back on the queue, visible after `delay`, and deletes the
    /// original: the copy's dequeue count starts again (an attempt that failed because the store
    /// was down does not count toward poisoning). A crash between the two leaves two copies
    /// (ingestion is idempotent), never none.
    pub async fn requeue(
        &self,
        message: &Received,
        delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        self.send_text(
            &self.inner.queue,
            "requeue",
            message.text.clone(),
            delay,
            None,
        )
        .await?;
        self.delete(message).await
    }

    /// Receives up to `max` messages of the poison queue, each invisible to others for `lease`.
    pub async fn receive_poison(
        &self,
        max: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<Received>, QueueError> {
        receive_from(&self.inner.poison, max, lease).await
    }

    /// Moves a message received from the poison queue back to the batch queue (redrive): added
    /// there with a fresh dequeue count, then deleted from the poison queue.
    pub async fn redrive(&self, message: &Received) -> Result<(), QueueError> {
        self.send_text(
            &self.inner.queue,
            "redrive",
            message.text.clone(),
            std::time::Duration::ZERO,
            None,
        )
        .await?;
        match self
            .inner
            .poison
            .delete_message(&message.id, &message.pop_receipt, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => ignore_gone(QueueError::new("delete poison", &e)),
        }
    }

    /// Sets how long poison messages this client writes are kept (`MEDIFLOW_POISON_RETENTION_DAYS`).
    #[must_use]
    pub fn with_poison_retention(mut self, retention: std::time::Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.poison_retention = Some(retention);
        }
        self
    }

    /// Moves a message to the poison queue: its original text is added there (creating the
    /// queue if needed, as the Functions host does), then it is deleted here. A crash between
    /// the two leaves a copy in both, never in neither. The copy is kept for the poison
    /// retention (`MEDIFLOW_POISON_RETENTION_DAYS`).
    pub async fn poison(&self, message: &Received) -> Result<(), QueueError> {
        let retention = self.inner.poison_retention;
        let send = || {
            self.send_text(
                &self.inner.poison,
                "poison",
                message.text.clone(),
                std::time::Duration::ZERO,
                retention,
            )
        };
        match send().await {
            Err(err) if err.status == Some(404) => {
                match self.inner.poison.create(None).await {
                    Ok(_) => {}
                    Err(e) if e.http_status() == Some(StatusCode::Conflict) => {}
                    Err(e) => return Err(QueueError::new("create poison queue", &e)),
                }
                tracing::info!(queue = %self.inner.poison_name, "poison queue created");
                send().await?;
            }
            other => other?,
        }
        self.delete(message).await
    }

    /// Adds a message, visible after `delay`, kept for `ttl` (`None`: never expires).
    async fn send_text(
        &self,
        queue: &QueueClient,
        operation: &'static str,
        text: String,
        delay: std::time::Duration,
        ttl: Option<std::time::Duration>,
    ) -> Result<(), QueueError> {
        let content = QueueMessage {
            message_text: Some(text),
        }
        .try_into()
        .map_err(|e| QueueError::new(operation, &e))?;
        // Batch messages never expire (-1), as Terraform's producers expect: nothing is lost
        // silently after the 7-day default. Poison messages are kept for the poison retention.
        let options = QueueClientSendMessageOptions {
            message_time_to_live: Some(ttl.map_or(-1, seconds)),
            visibility_timeout: (!delay.is_zero()).then(|| seconds(delay)),
            ..Default::default()
        };
        queue
            .send_message(content, Some(options))
            .await
            .map_err(|e| QueueError::new(operation, &e))?;
        Ok(())
    }
}

fn ignore_gone(err: QueueError) -> Result<(), QueueError> {
    if err.is_message_gone() {
        Ok(())
    } else {
        Err(err)
    }
}

fn seconds(duration: std::time::Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

fn config_error(reason: String) -> QueueSetupError {
    QueueSetupError(reason)
}

/// A few quick SDK retries per call; the trigger's own backoff handles longer outages.
fn client_options() -> QueueServiceClientOptions {
    let retry = ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(200),
        max_retries: 2,
        max_total_elapsed: azure_core::time::Duration::seconds(10),
        max_delay: azure_core::time::Duration::seconds(2),
    };
    QueueServiceClientOptions {
        client_options: ClientOptions {
            retry: RetryOptions::exponential(retry),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `MEDIFLOW_QUEUE` (a connection string or an account SAS URL) as the queue service URL with a
/// SAS in its query: what the clients are built from. Public for test tooling; the URL is a
/// secret (never log it).
pub fn connection_service_url(connection: &Secret) -> Result<Url, QueueSetupError> {
    sas_service_url(connection).map(|(url, _)| url)
}

/// `MEDIFLOW_QUEUE` as a service URL carrying a SAS.
fn sas_service_url(connection: &Secret) -> Result<(Url, AuthKind), QueueSetupError> {
    let parsed = ConnectionString::parse(connection.expose()).map_err(|reason| {
        config_error(format!(
            "MEDIFLOW_QUEUE is neither an account SAS URL nor a usable connection string: {reason}"
        ))
    })?;
    let auth = match parsed.auth {
        ConnectionAuth::Sas(_) => AuthKind::Sas,
        ConnectionAuth::Key { .. } => AuthKind::SignedAccountKey,
    };
    let url = parsed
        .service_url()
        .map_err(|reason| config_error(format!("MEDIFLOW_QUEUE: {reason}")))?;
    Ok((url, auth))
}

/// What `MEDIFLOW_QUEUE` says: the queue service endpoint and how to sign requests to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConnectionString {
    /// No trailing slash (the SDK appends `/<queue>`).
    endpoint: String,
    auth: ConnectionAuth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ConnectionAuth {
    /// A SAS query string (without the `?`).
    Sas(Secret),
    /// An account key (base64), to sign an account SAS with.
    Key { account: String, key: Secret },
}

impl ConnectionString {
    /// Accepts an account SAS URL (`http(s)://…?sv=…&sig=…`), `UseDevelopmentStorage=true`, or
    /// `Name=value;…` with `AccountName` + `AccountKey` (or `SharedAccessSignature`) and either
    /// `QueueEndpoint` or `DefaultEndpointsProtocol` + `EndpointSuffix`. The reason for a refusal
    /// never quotes a value.
    fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let (base, query) = raw
                .split_once('?')
                .ok_or("the URL has no SAS query (?sv=…&sig=…)")?;
            if !query.split('&').any(|pair| pair.starts_with("sig=")) {
                return Err("the URL's query has no sig= (not a SAS)".into());
            }
            return Ok(Self {
                endpoint: base.trim_end_matches('/').to_owned(),
                auth: ConnectionAuth::Sas(Secret::new(query.to_owned())),
            });
        }
        let mut settings = std::collections::HashMap::new();
        for part in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or("a setting without `=`")?;
            settings.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        if settings
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(Self {
                endpoint: DEV_QUEUE_ENDPOINT.to_owned(),
                auth: ConnectionAuth::Key {
                    account: DEV_ACCOUNT.to_owned(),
                    key: Secret::new(DEV_KEY.to_owned()),
                },
            });
        }
        let account = settings.remove("accountname");
        let endpoint = match (settings.remove("queueendpoint"), &account) {
            (Some(endpoint), _) => endpoint,
            (None, Some(account)) => {
                let protocol = settings
                    .remove("defaultendpointsprotocol")
                    .unwrap_or_else(|| "https".into());
                let suffix = settings
                    .remove("endpointsuffix")
                    .unwrap_or_else(|| "core.windows.net".into());
                format!("{protocol}://{account}.queue.{suffix}")
            }
            (None, None) => return Err("neither QueueEndpoint nor AccountName is set".into()),
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err("the queue endpoint is not an http(s) URL".into());
        }
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let auth = match (
            settings.remove("sharedaccesssignature"),
            settings.remove("accountkey"),
            account,
        ) {
            (Some(sas), _, _) => {
                ConnectionAuth::Sas(Secret::new(sas.trim_start_matches('?').to_owned()))
            }
            (None, Some(key), Some(account)) => ConnectionAuth::Key {
                account,
                key: Secret::new(key),
            },
            (None, Some(_), None) => return Err("AccountKey without AccountName".into()),
            (None, None, _) => {
                return Err("neither AccountKey nor SharedAccessSignature is set".into());
            }
        };
        Ok(Self { endpoint, auth })
    }

    /// The service URL with a SAS query: given, or signed now from the account key.
    fn service_url(&self) -> Result<Url, String> {
        let query = match &self.auth {
            ConnectionAuth::Sas(sas) => sas.expose().to_owned(),
            ConnectionAuth::Key { account, key } => {
                account_sas(account, key, SAS_EXPIRY)?.expose().to_owned()
            }
        };
        Url::parse(&format!("{}?{query}", self.endpoint))
            .map_err(|e| format!("the queue endpoint is not a URL: {e}"))
    }
}

/// The string an account SAS (version 2019-02-02) signs.
fn account_sas_string_to_sign(account: &str, expiry: &str) -> String {
    // account, permissions, services, resource types, start, expiry, IP, protocol, version.
    format!(
        "{account}\n{SAS_PERMISSIONS}\n{SAS_SERVICES}\n{SAS_RESOURCE_TYPES}\n\n{expiry}\n\n\n{SAS_VERSION}\n"
    )
}

/// An account SAS query string (`sv=…&sig=…`, form-encoded) signed with the account key.
fn account_sas(account: &str, key: &Secret, expiry: &str) -> Result<Secret, String> {
    let key = B64
        .decode(key.expose().trim())
        .map_err(|_| "AccountKey is not base64".to_owned())?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key)
        .map_err(|_| "AccountKey is unusable".to_owned())?;
    mac.update(account_sas_string_to_sign(account, expiry).as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", SAS_SERVICES)
        .append_pair("srt", SAS_RESOURCE_TYPES)
        .append_pair("sp", SAS_PERMISSIONS)
        .append_pair("se", expiry)
        .append_pair("sig", &signature)
        .finish();
    Ok(Secret::new(query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: &str, key: &str) -> ConnectionAuth {
        ConnectionAuth::Key {
            account: account.into(),
            key: Secret::new(key.into()),
        }
    }

    /// (what the case proves, MEDIFLOW_QUEUE, expected endpoint and auth, or part of the refusal)
    type Case = (
        &'static str,
        &'static str,
        Result<(&'static str, ConnectionAuth), &'static str>,
    );

    fn connection_cases() -> Vec<Case> {
        vec![
            (
                "the development shortcut is Azurite's well-known account",
                "UseDevelopmentStorage=true",
                Ok((DEV_QUEUE_ENDPOINT, key(DEV_ACCOUNT, DEV_KEY))),
            ),
            (
                "an explicit endpoint wins; the key keeps its trailing `==`",
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5==;QueueEndpoint=http://127.0.0.1:41001/devstoreaccount1;",
                Ok((
                    "http://127.0.0.1:41001/devstoreaccount1",
                    key("devstoreaccount1", "a2V5=="),
                )),
            ),
            (
                "protocol and suffix build the public endpoint",
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn",
                Ok((
                    "https://acct.queue.core.chinacloudapi.cn",
                    key("acct", "a2V5"),
                )),
            ),
            (
                "names are case-insensitive and the suffix defaults to Azure public",
                "accountname=acct;ACCOUNTKEY=a2V5",
                Ok(("https://acct.queue.core.windows.net", key("acct", "a2V5"))),
            ),
            (
                "a trailing slash on the endpoint is dropped (else the SDK builds `//queue`)",
                "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1/;AccountName=a;AccountKey=a2V5",
                Ok(("http://127.0.0.1:10001/devstoreaccount1", key("a", "a2V5"))),
            ),
            (
                "a SAS connection string",
                "QueueEndpoint=https://acct.queue.core.windows.net;SharedAccessSignature=?sv=1&sig=x",
                Ok((
                    "https://acct.queue.core.windows.net",
                    ConnectionAuth::Sas(Secret::new("sv=1&sig=x".into())),
                )),
            ),
            (
                "an account SAS URL is used as is",
                "http://127.0.0.1:10001/devstoreaccount1?sv=2019-02-02&sig=abc%2B",
                Ok((
                    "http://127.0.0.1:10001/devstoreaccount1",
                    ConnectionAuth::Sas(Secret::new("sv=2019-02-02&sig=abc%2B".into())),
                )),
            ),
            (
                "a URL without a SAS is refused",
                "https://acct.queue.core.windows.net",
                Err("no SAS"),
            ),
            (
                "a URL whose query is not a SAS is refused",
                "https://acct.queue.core.windows.net/?a=b",
                Err("no sig="),
            ),
            (
                "a key needs an account",
                "QueueEndpoint=http://h/a;AccountKey=a2V5",
                Err("without AccountName"),
            ),
            (
                "no credential at all",
                "AccountName=acct",
                Err("neither AccountKey"),
            ),
            (
                "no endpoint at all",
                "AccountKey=a2V5",
                Err("neither QueueEndpoint"),
            ),
            ("garbage", "not a connection string", Err("without `=`")),
        ]
    }

    #[test]
    fn connection_strings_parse_to_an_endpoint_and_a_way_to_sign() {
        for (proves, raw, expected) in connection_cases() {
            let got = ConnectionString::parse(raw);
            match expected {
                Ok((endpoint, auth)) => {
                    assert_eq!(
                        got,
                        Ok(ConnectionString {
                            endpoint: endpoint.into(),
                            auth
                        }),
                        "{proves}"
                    );
                }
                Err(reason) => {
                    let err = got.expect_err(proves);
                    assert!(err.contains(reason), "{proves}: {err}");
                    assert!(
                        !err.contains("a2V5"),
                        "{proves}: a refusal must not quote the key"
                    );
                }
            }
        }
    }

    /// The vector was computed independently of this code:
    /// `printf 'devstoreaccount1\nrwdlacup\nq\nsco\n\n2099-01-01T00:00:00Z\n\n\n2019-02-02\n' |
    ///  openssl dgst -sha256 -mac HMAC -macopt hexkey:$(echo "$DEV_KEY" | base64 -d | xxd -p -c 256) -binary | base64`.
    #[test]
    fn the_account_sas_signature_matches_an_independent_computation() {
        let expiry = "2099-01-01T00:00:00Z";
        assert_eq!(
            account_sas_string_to_sign(DEV_ACCOUNT, expiry),
            "devstoreaccount1\nrwdlacup\nq\nsco\n\n2099-01-01T00:00:00Z\n\n\n2019-02-02\n"
        );
        let query = account_sas(DEV_ACCOUNT, &Secret::new(DEV_KEY.into()), expiry).expect("signs");
        let pairs: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.expose().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(pairs["sig"], KNOWN_SIGNATURE);
        assert_eq!(
            (
                pairs["sv"].as_str(),
                pairs["ss"].as_str(),
                pairs["srt"].as_str(),
                pairs["sp"].as_str(),
                pairs["se"].as_str()
            ),
            ("2019-02-02", "q", "sco", "rwdlacup", expiry)
        );
        assert!(
            query.expose().contains("se=2099-01-01T00%3A00%3A00Z"),
            "the query is form-encoded"
        );
    }

    const KNOWN_SIGNATURE: &str = "LIcNKGiTHmizayNKoLvGcan7ILVLZAdq8ba1M4rydsY=";

    #[test]
    fn a_key_that_is_not_base64_is_refused_without_quoting_it() {
        let err = account_sas("acct", &Secret::new("not base64!".into()), SAS_EXPIRY)
            .expect_err("refused");
        assert!(!err.contains("not base64!"));
    }

    #[test]
    fn debug_output_holds_no_secret_and_no_message_text() {
        let parsed = ConnectionString::parse("UseDevelopmentStorage=true").expect("parses");
        assert!(!format!("{parsed:?}").contains(DEV_KEY));
        let received = Received {
            id: "m1".into(),
            pop_receipt: "pr".into(),
            dequeue_count: 1,
            text: "patient".into(),
        };
        let shown = format!("{received:?}");
        assert!(shown.contains("m1") && !shown.contains("patient") && !shown.contains("pr\""));
    }

    #[tokio::test]
    async fn connect_keeps_the_sas_out_of_debug_output() {
        let config = QueueConfig::Connection(Secret::new("UseDevelopmentStorage=true".into()));
        let queue = BatchQueue::connect(&config, "mediflow-batches", true)
            .await
            .expect("builds clients without a request");
        let shown = format!("{queue:?}");
        assert!(
            shown.contains("http://127.0.0.1:10001/devstoreaccount1") && !shown.contains("sig"),
            "{shown}"
        );
        assert_eq!(queue.poison_queue_name(), "mediflow-batches-poison");
    }
}

//! The batch queue over Azure Storage queues (`azure_storage_queue`, the official crate): the queue
//! `mediflow-batches` and its poison queue `mediflow-batches-poison`.
//!
//! The crate authenticates only with an Entra ID token (HTTPS) or a SAS in the URL, so:
//! - `MEDIFLOW_QUEUE__queueServiceUri` (production): the process's Entra ID identity, by the one
//!   policy of `config::AzureIdentity` (the same credential builder as Cosmos DB's).
//! - `MEDIFLOW_QUEUE` (Azurite, local; builds with the `emulator` feature only): see
//!   [`super::connection`].
//!
//! Nothing secret reaches a log line: errors are described by kind and status only (the SDK's
//! transport errors can carry the request URL, which holds the SAS).

use std::sync::Arc;

use azure_core::http::{
    ClientOptions, ExponentialRetryOptions, RetryOptions, StatusCode, Transport, Url,
};
use azure_storage_queue::models::{
    QueueClientReceiveMessagesOptions, QueueClientSendMessageOptions, QueueMessage,
};
use azure_storage_queue::{QueueClient, QueueServiceClient, QueueServiceClientOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::{AzureIdentity, QueueConfig};
use crate::credential::{http_transport, token_credential_with};

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
pub struct QueueSetupError(pub(super) String);

/// How the client authenticates (for `Debug` and the start log; no secret in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthKind {
    WorkloadIdentity,
    ManagedIdentity,
    #[cfg(feature = "emulator")]
    Sas,
    #[cfg(feature = "emulator")]
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
    /// trigger retries); a machine where no HTTP client can be built (no CA root certificates)
    /// does. `base64`: encode sent messages as the Functions default expects.
    #[expect(
        clippy::unused_async,
        reason = "the server awaits it; a connection check may be added"
    )]
    pub async fn connect(
        config: &QueueConfig,
        queue_name: &str,
        base64: bool,
    ) -> Result<Self, QueueSetupError> {
        // One HTTP client for the credential and the queue clients.
        let transport = http_transport().map_err(|e| config_error(e.to_string()))?;
        let (service_url, credential, auth) = match config {
            QueueConfig::Identity {
                service_uri,
                identity,
            } => {
                let url = Url::parse(service_uri.trim_end_matches('/')).map_err(|e| {
                    config_error(format!("MEDIFLOW_QUEUE__queueServiceUri is not a URL: {e}"))
                })?;
                let credential = token_credential_with(identity, transport.clone())
                    .map_err(|e| config_error(e.to_string()))?;
                let auth = match identity {
                    AzureIdentity::WorkloadIdentity => AuthKind::WorkloadIdentity,
                    AzureIdentity::ManagedIdentity { .. } => AuthKind::ManagedIdentity,
                };
                (url, Some(credential), auth)
            }
            #[cfg(feature = "emulator")]
            QueueConfig::Connection(secret) => {
                let (url, auth) = super::connection::sas_service_url(secret)?;
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
        let service =
            QueueServiceClient::new(service_url, credential, Some(client_options(transport)))
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
    pub async fn send(&self, json: String) -> Result<(), QueueError> {
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
fn client_options(transport: Transport) -> QueueServiceClientOptions {
    let retry = ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(200),
        max_retries: 2,
        max_total_elapsed: azure_core::time::Duration::seconds(10),
        max_delay: azure_core::time::Duration::seconds(2),
    };
    QueueServiceClientOptions {
        client_options: ClientOptions {
            retry: RetryOptions::exponential(retry),
            transport: Some(transport),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_secret_and_no_message_text() {
        let received = Received {
            id: "m1".into(),
            pop_receipt: "pr".into(),
            dequeue_count: 1,
            text: "patient".into(),
        };
        let shown = format!("{received:?}");
        assert!(shown.contains("m1") && !shown.contains("patient") && !shown.contains("pr\""));
    }

    #[cfg(feature = "emulator")]
    #[tokio::test]
    async fn connect_keeps_the_sas_out_of_debug_output() {
        let config = QueueConfig::Connection(crate::secret::Secret::new(
            "UseDevelopmentStorage=true".into(),
        ));
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

//! Sending batch messages straight to the Storage queue (`--queue-url`), for submitters who have
//! queue access only. Authentication is Entra ID (`azure_identity`): the Azure CLI's login at a
//! desk, workload or managed identity in Azure. A URL that carries a SAS (`...?sv=...&sig=...`)
//! is used as is, without a credential (local Azurite, or a SAS an operator handed out).
//!
//! Messages are base64-encoded JSON, as the Functions queue trigger expects (host.json
//! `messageEncoding`), and never expire (`ttl -1`), like the service's own sends.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::Url;
use azure_storage_queue::models::{QueueClientSendMessageOptions, QueueMessage};
use azure_storage_queue::{QueueClient, QueueServiceClient};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Which Entra ID credential to use for the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Credential {
    /// The account logged in with `az login` (the default at a desk).
    AzureCli,
    /// AKS workload identity (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`;
    /// the default when `AZURE_FEDERATED_TOKEN_FILE` is set).
    WorkloadIdentity,
    /// The VM's or App Service's managed identity (`AZURE_CLIENT_ID` picks a user-assigned one).
    ManagedIdentity,
}

/// The queue the batches go to.
pub struct BatchQueue {
    client: QueueClient,
    /// For messages: scheme, host and path, never the SAS.
    pub display: String,
}

impl BatchQueue {
    /// `queue_url` names the queue: `https://<account>.queue.core.windows.net/mediflow-batches`.
    pub fn connect(queue_url: &str, credential: Option<Credential>) -> Result<Self, String> {
        let url = Url::parse(queue_url).map_err(|e| format!("--queue-url is not a URL: {e}"))?;
        let display = format!(
            "{}://{}{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            url.path()
        );
        let mut segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let Some(queue_name) = segments.pop() else {
            return Err(format!(
                "--queue-url {display} names no queue: end it with the queue's name, e.g. /mediflow-batches"
            ));
        };
        let mut service_url = url.clone();
        service_url.set_path(&segments.join("/"));
        let has_sas = url.query_pairs().any(|(k, _)| k == "sig");
        let credential = if has_sas {
            None
        } else {
            if url.scheme() != "https" {
                return Err(format!(
                    "--queue-url {display}: Entra ID needs https:// (or give a SAS in the URL)"
                ));
            }
            Some(entra_credential(credential)?)
        };
        let service = QueueServiceClient::new(service_url, credential, None)
            .map_err(|e| format!("cannot set up the queue client: {}", e.kind()))?;
        let client = service
            .queue_client(&queue_name)
            .map_err(|e| format!("cannot set up the queue client: {}", e.kind()))?;
        Ok(Self { client, display })
    }

    /// Puts one batch message (its JSON) on the queue.
    pub async fn send(&self, json: &str) -> Result<(), String> {
        let message = QueueMessage {
            message_text: Some(B64.encode(json)),
        };
        let content = message
            .try_into()
            .map_err(|e: azure_core::Error| format!("cannot encode the message: {}", e.kind()))?;
        let options = QueueClientSendMessageOptions {
            message_time_to_live: Some(-1),
            ..Default::default()
        };
        self.client
            .send_message(content, Some(options))
            .await
            .map(|_| ())
            .map_err(|e| {
                // The SDK's error can quote the request URL, which may hold a SAS: kind and status only.
                format!("sending to {} failed: {}", self.display, e.kind())
            })
    }
}

impl std::fmt::Debug for BatchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchQueue")
            .field("queue", &self.display)
            .finish_non_exhaustive()
    }
}

fn entra_credential(choice: Option<Credential>) -> Result<Arc<dyn TokenCredential>, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let choice = choice.unwrap_or(if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        Credential::WorkloadIdentity
    } else {
        Credential::AzureCli
    });
    let credential: Arc<dyn TokenCredential> = match choice {
        Credential::AzureCli => azure_identity::AzureCliCredential::new(None)
            .map_err(|e| format!("Azure CLI credential: {e}"))?,
        Credential::WorkloadIdentity => azure_identity::WorkloadIdentityCredential::new(None)
            .map_err(|e| format!("workload identity: {e}"))?,
        Credential::ManagedIdentity => {
            let options = azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id: env("AZURE_CLIENT_ID")
                    .map(azure_identity::UserAssignedId::ClientId),
                ..Default::default()
            };
            azure_identity::ManagedIdentityCredential::new(Some(options))
                .map_err(|e| format!("managed identity: {e}"))?
        }
    };
    Ok(credential)
}

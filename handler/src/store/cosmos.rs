//! Azure Cosmos DB for NoSQL backend (`MEDIFLOW_STORE=cosmos`).

use crate::config::{ConfigError, Source};
use crate::secret::Secret;

/// How the service authenticates to Cosmos DB (`COSMOS_CREDENTIAL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CosmosCredential {
    /// `workload-identity` (AKS): `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and
    /// `AZURE_FEDERATED_TOKEN_FILE`, injected by the workload-identity webhook.
    WorkloadIdentity,
    /// `managed-identity`: the VM/App Service identity; `AZURE_CLIENT_ID` picks a user-assigned one.
    ManagedIdentity { client_id: Option<String> },
    /// `key` with `COSMOS_KEY`: only in builds with the `emulator` feature, for the emulator.
    #[cfg(feature = "emulator")]
    Key(Secret),
}

/// `MEDIFLOW_STORE=cosmos` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosmosConfig {
    /// `COSMOS_ENDPOINT`, e.g. `https://<account>.documents.azure.com:443/`.
    pub endpoint: String,
    /// `COSMOS_DATABASE` (default `mediflow`).
    pub database: String,
    /// `COSMOS_CONTAINER` (default `records`), partition key `/id`.
    pub container: String,
    pub credential: CosmosCredential,
}

impl CosmosConfig {
    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let endpoint = env
            .var("COSMOS_ENDPOINT")
            .ok_or_else(|| ConfigError("MEDIFLOW_STORE=cosmos needs COSMOS_ENDPOINT".into()))?;
        let credential = match env.var("COSMOS_CREDENTIAL").as_deref() {
            None | Some("workload-identity") => CosmosCredential::WorkloadIdentity,
            Some("managed-identity") => CosmosCredential::ManagedIdentity { client_id: env.var("AZURE_CLIENT_ID") },
            #[cfg(feature = "emulator")]
            Some("key") => CosmosCredential::Key(Secret::new(
                env.var("COSMOS_KEY").ok_or_else(|| ConfigError("COSMOS_CREDENTIAL=key needs COSMOS_KEY".into()))?,
            )),
            Some(other) => {
                return Err(ConfigError(format!(
                    "COSMOS_CREDENTIAL must be `workload-identity` or `managed-identity`, not `{other}` \
                     (`key` exists only in builds with the `emulator` feature)"
                )));
            }
        };
        Ok(Self {
            endpoint,
            database: env.var("COSMOS_DATABASE").unwrap_or_else(|| "mediflow".into()),
            container: env.var("COSMOS_CONTAINER").unwrap_or_else(|| "records".into()),
            credential,
        })
    }
}

#[cfg(not(feature = "emulator"))]
const _: Option<Secret> = None;

/// Connects to the configured account and container. Being written: see the Cosmos issue.
pub async fn connect(_config: &CosmosConfig) -> Result<super::SharedStore, super::StoreError> {
    Err(super::StoreError::unavailable("the Cosmos backend is not built yet"))
}

//! The one builder of Entra ID credentials, shared by the Cosmos DB store and the Storage queue
//! client: the process's [`AzureIdentity`] (chosen once by the policy documented on it in
//! `config`) becomes an `azure_core` token credential here and nowhere else.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_identity::{
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential,
};

use crate::config::AzureIdentity;

/// The credential could not be set up (e.g. the workload-identity variables are missing).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the {kind} credential: {source}")]
pub struct CredentialError {
    kind: &'static str,
    source: azure_core::Error,
}

/// A token credential for `identity`.
pub fn token_credential(
    identity: &AzureIdentity,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    match identity {
        AzureIdentity::WorkloadIdentity => {
            let credential =
                WorkloadIdentityCredential::new(None).map_err(|source| CredentialError {
                    kind: "workload identity",
                    source,
                })?;
            Ok(credential)
        }
        AzureIdentity::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                ..Default::default()
            };
            let credential = ManagedIdentityCredential::new(Some(options)).map_err(|source| {
                CredentialError {
                    kind: "managed identity",
                    source,
                }
            })?;
            Ok(credential)
        }
    }
}

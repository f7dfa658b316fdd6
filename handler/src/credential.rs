//! The one builder of what the Azure SDK clients share: the process's [`AzureIdentity`] (chosen
//! once by the policy documented on it in `config`) becomes an `azure_core` token credential here
//! and nowhere else, and [`http_transport`] builds the HTTP client the credentials and the Storage
//! queue client send through.
//!
//! The SDK would build its default HTTP client itself, and panics when that fails (it cannot on a
//! machine without CA root certificates: rustls with the platform's roots refuses to start without
//! any, even for plain-http Azurite). Built here, the failure is a start error that says what to do.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use crate::config::AzureIdentity;

/// The settings the SDK gives its own default client (`typespec_client_core`'s reqwest client):
/// the same here, so only where the failure goes changes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client for the Azure SDK cannot be built: in practice, no CA root certificate was
/// found (none in the system bundle, or none where `SSL_CERT_FILE` / `SSL_CERT_DIR` point).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for Azure: {reason}")]
pub struct TransportError {
    reason: String,
}

/// The credential could not be set up (e.g. the workload-identity variables are missing).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot set up the {kind} credential: {source}")]
    Identity {
        kind: &'static str,
        source: azure_core::Error,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A new HTTP transport for Azure SDK clients: reqwest with rustls and the platform's CA roots,
/// as the SDK's default, but an error instead of a panic when it cannot be built.
pub fn http_transport() -> Result<Transport, TransportError> {
    let client = sdk_reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        // Azure REST services do not redirect; the SDK's own client does not follow them either.
        .redirect(sdk_reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| TransportError {
            reason: describe_build_error(&err),
        })?;
    Ok(Transport::new(Arc::new(client)))
}

/// The error and its causes on one line, with what to do when it is the missing CA roots.
fn describe_build_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    if reason.contains("CA certificates") {
        reason.push_str(
            " (the Azure SDK's HTTP client needs CA root certificates, even for an http endpoint: \
             install the system bundle, e.g. the `ca-certificates` package, or point \
             SSL_CERT_FILE / SSL_CERT_DIR at one)",
        );
    }
    reason
}

/// A token credential for `identity`, sending through a transport of its own.
pub fn token_credential(
    identity: &AzureIdentity,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    token_credential_with(identity, http_transport()?)
}

/// A token credential for `identity`, sending through `transport`.
pub fn token_credential_with(
    identity: &AzureIdentity,
    transport: Transport,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    let client_options = ClientOptions {
        transport: Some(transport),
        ..Default::default()
    };
    match identity {
        AzureIdentity::WorkloadIdentity => {
            let mut options = WorkloadIdentityCredentialOptions::default();
            options.credential_options.client_options = client_options;
            let credential = WorkloadIdentityCredential::new(Some(options)).map_err(|source| {
                CredentialError::Identity {
                    kind: "workload identity",
                    source,
                }
            })?;
            Ok(credential)
        }
        AzureIdentity::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options,
            };
            let credential = ManagedIdentityCredential::new(Some(options)).map_err(|source| {
                CredentialError::Identity {
                    kind: "managed identity",
                    source,
                }
            })?;
            Ok(credential)
        }
    }
}

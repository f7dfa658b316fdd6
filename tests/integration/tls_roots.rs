//! A machine without CA root certificates (a container image without `ca-certificates`): the Azure
//! SDK's HTTP client (reqwest with rustls and the platform's roots) cannot be built there, and the
//! SDK panics when it builds its default one. The handler builds it itself, so such a start ends
//! with exit 1 and one line on stderr that says what is missing, never a panic.
//!
//! The condition: `SSL_CERT_FILE` and `SSL_CERT_DIR` both set and naming nothing (with those set,
//! rustls-native-certs reads only them; one of them alone still let it find the system's roots
//! here). The failure happens before any request, so no queue service needs to run.

use std::process::Command;
use std::time::Duration;

use crate::support::{binary, run_to_end};

/// (what the case proves, arguments, the queue settings)
type Case = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

const CASES: &[Case] = &[
    (
        "an Azurite connection string: plain http, but the client needs the roots all the same",
        &[],
        &[("MEDIFLOW_QUEUE", "UseDevelopmentStorage=true")],
    ),
    (
        "the production queue over https with a managed identity: the credential's client too",
        &[],
        &[
            (
                "MEDIFLOW_QUEUE__queueServiceUri",
                "https://mediflowtest.queue.core.windows.net",
            ),
            ("AZURE_CREDENTIAL", "managed-identity"),
        ],
    ),
    (
        "`handler redrive` connects to the queue the same way",
        &["redrive"],
        &[("MEDIFLOW_QUEUE", "UseDevelopmentStorage=true")],
    ),
];

#[tokio::test]
async fn without_ca_roots_a_configured_queue_stops_the_start_with_a_message_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nowhere = |name: &str| dir.path().join(name).display().to_string();
    for (proves, args, queue_env) in CASES {
        let finished = run_to_end(
            Command::new(binary())
                .args(*args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("MEDIFLOW_ADDR", "127.0.0.1:0")
                .env("MEDIFLOW_DATA_DIR", nowhere("data"))
                .env("SSL_CERT_FILE", nowhere("no-bundle.pem"))
                .env("SSL_CERT_DIR", nowhere("no-certs"))
                .envs(queue_env.iter().copied()),
            Duration::from_secs(20),
        )
        .await;
        let stderr = finished.stderr.join("\n");
        let everything = format!("{stderr}\n{}", finished.stdout.join("\n"));
        assert_eq!(
            finished.status.code(),
            Some(1),
            "{proves}: exit 1\n{everything}"
        );
        assert!(
            !everything.contains("panicked"),
            "{proves}: no panic\n{everything}"
        );
        let message = finished
            .stderr
            .iter()
            .find(|line| line.starts_with("handler: "))
            .unwrap_or_else(|| panic!("{proves}: a `handler: ` line on stderr\n{everything}"));
        assert!(
            message.contains("No CA certificates were loaded")
                && message.contains("SSL_CERT_FILE / SSL_CERT_DIR"),
            "{proves}: says what is missing and what to do: {message}"
        );
        assert!(
            !finished.stdout.iter().any(|l| l.contains("listening")),
            "{proves}: never listened\n{everything}"
        );
    }
}

//! Logging: `tracing` to stdout, JSON when `LOG_FORMAT=json`, filtered by `RUST_LOG`
//! (default `info`). Request spans carry a request id; no request body or patient data is ever
//! put in a log line or span field.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once at start.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,typespec_client_core=warn,azure_core=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let installed = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    drop(installed);
}

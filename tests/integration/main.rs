//! Integration tests, against real emulators (Cosmos: `tests/emulators`, Azure Storage queues:
//! Azurite). The HTTP contract's table cases call the real router in process
//! (`support::router::spawn_app`: no process, no socket); what needs a process starts the built
//! `handler` binary and calls it over real sockets (`support::App`): durability across `kill -9`
//! and restarts, signals, start-up and configuration errors, both hosts, slow clients at the
//! socket, the queue trigger, the logs.
//!
//! One test binary (link once); each module is one area. `support` starts apps and emulators,
//! and holds the one polling helper (`support::wait_until`).

#[cfg(not(feature = "emulator"))]
compile_error!(
    "the integration tests drive the Cosmos emulator and Azurite, which need the `emulator` \
     feature: cargo nextest run --workspace --all-features"
);

mod support;

mod auth;
mod cli;
mod command_line;
mod cosmos;
mod durability;
mod functions_host;
mod http_api;
mod idempotency;
mod identities;
mod journal_damage;
mod pressure;
mod properties;
mod queue_trigger;
mod review_audit;
mod soak;
mod store_contract;
mod tls_roots;

//! Integration tests: the built `handler` binary started as a process, called over real sockets,
//! against real emulators (Cosmos: `tests/emulators`, Azure Storage queues: Azurite).
//!
//! One test binary (link once); each module is one area. `support` starts apps and emulators.

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

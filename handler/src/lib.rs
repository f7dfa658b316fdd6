//! MediFlow Functions: clinical-trial record ingestion as an Azure Functions custom handler that
//! also runs standalone. Reading order: `domain` (what a record is: the `mediflow-domain` crate in `domain/`), `service` (the use cases and
//! their errors), `store` (persistence), `api` (HTTP and the one mapping of errors to statuses),
//! `functions` (the Functions host protocol, through the same router), `queue` (batch queue and
//! standalone trigger), `definitions` (function.json and host.json, typed), `server` (wiring),
//! `config`, `commands` (the `handler` command line).
//!
//! Dependencies point one way: transports (`api`, `functions`, `queue`) → `service` → `store` →
//! `domain`; `config`, `definitions`, `metrics` and `secret` are leaves. `scripts/module-graph.sh`
//! prints the graph and fails on none: it lists cycles, and there are none.

/// The domain is its own crate (`domain/`, shared with the `mediflow` CLI), here under its old
/// path.
pub use mediflow_domain as domain;

pub mod api;
pub mod auth;
pub mod commands;
pub mod config;
pub mod credential;
pub mod definitions;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod functions;
pub mod metrics;
pub mod queue;
pub mod secret;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;

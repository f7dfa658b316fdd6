//! MediFlow Functions: clinical-trial record ingestion as an Azure Functions custom handler that
//! also runs standalone. Reading order: `domain` (what a record is), `service` (the use cases),
//! `store` (persistence), `api` (HTTP), `functions` (the Functions host protocol), `queue` (batch
//! queue and standalone trigger), `server` (wiring), `config`.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
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

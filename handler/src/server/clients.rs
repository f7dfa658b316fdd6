//! Who may call, decided at start: the key file loaded (and watched for rotations), or auth off
//! where that is allowed ([`may_run_without_keys`]: it fails closed).

use tokio::task::JoinHandle;

use super::StartError;
use crate::auth::Clients;
use crate::config::{Config, Mode};

/// Why the service refuses to start without API keys.
#[derive(Debug, thiserror::Error)]
#[error("refusing to start without API keys: {0}")]
pub struct KeysRequired(String);

/// Whether the service may start with no key file: only when told so explicitly
/// (`MEDIFLOW_AUTH=off`) or when it listens on loopback on its own (a laptop). Under the Functions
/// host every function is `authLevel: anonymous`, so the handler's keys are the only protection.
pub fn may_run_without_keys(mode: &Mode, auth_off: bool) -> Result<(), KeysRequired> {
    const FIX: &str = "set MEDIFLOW_API_KEYS_FILE to a client table or a file of API keys (one per line), or MEDIFLOW_AUTH=off to run without auth on purpose";
    match mode {
        _ if auth_off => Ok(()),
        Mode::Standalone { addr } if addr.ip().is_loopback() => Ok(()),
        Mode::Standalone { addr } => Err(KeysRequired(format!(
            "MEDIFLOW_API_KEYS_FILE is not set and {addr} is not a loopback address; {FIX}"
        ))),
        Mode::CustomHandler { .. } => Err(KeysRequired(format!(
            "MEDIFLOW_API_KEYS_FILE is not set under the Functions host, whose functions are all anonymous; {FIX}"
        ))),
    }
}

/// The callers in force: the key file's (watched for rotations), or auth off when there is none
/// (already allowed by [`may_run_without_keys`]).
pub(crate) fn load_clients(
    config: &Config,
) -> Result<(Clients, Option<JoinHandle<()>>), StartError> {
    let Some(path) = &config.api_keys_file else {
        tracing::warn!(
            "MEDIFLOW_API_KEYS_FILE is not set: API key auth is OFF, every route is open (allowed on loopback or with MEDIFLOW_AUTH=off)."
        );
        return Ok((Clients::off(), None));
    };
    let clients = Clients::load(path, config.client_rate)?;
    tracing::info!(
        format = clients.format().name(),
        clients = clients.status().clients,
        keys = clients.key_count(),
        file = %path.display(),
        "API key auth is on"
    );
    let watch = clients.watch(path.clone());
    Ok((clients, Some(watch)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_keys_only_loopback_standalone_or_an_explicit_off_may_start() {
        for (mode, auth_off, allowed, what) in [
            (
                Mode::Standalone {
                    addr: ([127, 0, 0, 1], 8080).into(),
                },
                false,
                true,
                "the README's cargo run",
            ),
            (
                Mode::Standalone {
                    addr: "[::1]:8080".parse().expect("addr"),
                },
                false,
                true,
                "IPv6 loopback",
            ),
            (
                Mode::Standalone {
                    addr: ([0, 0, 0, 0], 8080).into(),
                },
                false,
                false,
                "every interface",
            ),
            (
                Mode::Standalone {
                    addr: ([10, 1, 2, 3], 8080).into(),
                },
                false,
                false,
                "a private address",
            ),
            (
                Mode::CustomHandler { port: 4000 },
                false,
                false,
                "the Functions host",
            ),
            (
                Mode::Standalone {
                    addr: ([0, 0, 0, 0], 8080).into(),
                },
                true,
                true,
                "explicitly off",
            ),
            (
                Mode::CustomHandler { port: 4000 },
                true,
                true,
                "explicitly off under the host",
            ),
        ] {
            let decided = may_run_without_keys(&mode, auth_off);
            assert_eq!(decided.is_ok(), allowed, "{what}: {decided:?}");
            if let Err(err) = decided {
                assert!(
                    err.to_string().contains("MEDIFLOW_AUTH=off"),
                    "{what}: {err}"
                );
            }
        }
    }
}

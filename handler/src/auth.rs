//! API keys: read from the file the Key Vault CSI driver mounts (`MEDIFLOW_API_KEYS_FILE`, one key
//! per line, two during a rotation), re-read when it changes, compared in constant time; and when
//! the service may run without them at all ([`may_run_without_keys`]: it fails closed).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Mode;
use subtle::ConstantTimeEq;

/// How often the key file is checked for a rotation.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The accepted keys, held as SHA-256 digests (equal length, so comparison time does not depend
/// on the presented key's length or on where it differs).
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Arc<RwLock<Vec<[u8; 32]>>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.len())
            .finish()
    }
}

/// Reading the key file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the API keys file {path}: {source}")]
pub struct KeyFileError {
    path: PathBuf,
    source: std::io::Error,
}

impl ApiKeys {
    /// Keys from file content: one per line, surrounding whitespace ignored, blank lines skipped.
    pub fn from_content(content: &str) -> Self {
        let keys = Self::default();
        keys.replace(content);
        keys
    }

    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let content = read(path)?;
        Ok(Self::from_content(&content))
    }

    /// Whether `content` holds other keys than the ones in force.
    fn differ_from(&self, content: &str) -> bool {
        let new = Self::digests_of(content);
        *self
            .digests
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            != new
    }

    fn replace(&self, content: &str) {
        let digests = Self::digests_of(content);
        *self
            .digests
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = digests;
    }

    pub fn len(&self) -> usize {
        self.digests
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `presented` is one of the keys. Every stored key is compared, without an early
    /// exit, in constant time.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let digests = self
            .digests
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        digests
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&digest)
            })
            .into()
    }

    /// The digests `content` holds, in file order.
    fn digests_of(content: &str) -> Vec<[u8; 32]> {
        content
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|key| Sha256::digest(key.as_bytes()).into())
            .collect()
    }

    /// Re-reads `path` every [`RELOAD_INTERVAL`] and swaps the keys in when they differ from the
    /// keys in force. (Comparing with the keys in force, not with a copy of the file read when the
    /// watch began, means a rotation between loading and watching is not lost.) A failed read
    /// keeps the current keys (the CSI driver swaps files by symlink; a read can race it) and is
    /// logged.
    pub fn watch(&self, path: PathBuf) -> tokio::task::JoinHandle<()> {
        let keys = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(RELOAD_INTERVAL);
            loop {
                ticker.tick().await;
                match tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || read(&path)
                })
                .await
                {
                    Ok(Ok(content)) if keys.differ_from(&content) => {
                        keys.replace(&content);
                        tracing::info!(keys = keys.len(), "API keys reloaded");
                        if keys.is_empty() {
                            tracing::error!(
                                "the API keys file holds no key: every data request is refused"
                            );
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "API keys file unreadable; keeping the current keys");
                    }
                    Err(err) => tracing::warn!(error = %err, "API keys reload task failed"),
                }
            }
        })
    }
}

/// Why the service refuses to start without API keys.
#[derive(Debug, thiserror::Error)]
#[error("refusing to start without API keys: {0}")]
pub struct KeysRequired(String);

/// Whether the service may start with no key file: only when told so explicitly
/// (`MEDIFLOW_AUTH=off`) or when it listens on loopback on its own (a laptop). Under the Functions
/// host every function is `authLevel: anonymous`, so the handler's keys are the only protection.
pub fn may_run_without_keys(mode: &Mode, auth_off: bool) -> Result<(), KeysRequired> {
    const FIX: &str = "set MEDIFLOW_API_KEYS_FILE to a file of API keys (one per line), or MEDIFLOW_AUTH=off to run without auth on purpose";
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

fn read(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::ApiKeys;

    #[test]
    fn verifies_each_listed_key_and_nothing_else() {
        let keys = ApiKeys::from_content("  old-key \n\nnew-key\n");
        assert_eq!(keys.len(), 2);
        for (presented, expected) in [
            (&b"old-key"[..], true),
            (b"new-key", true),
            (b"old-key ", false),
            (b"", false),
            (b"new-ke", false),
            (b"NEW-KEY", false),
        ] {
            assert_eq!(keys.verify(presented), expected, "{presented:?}");
        }
    }

    #[test]
    fn without_keys_only_loopback_standalone_or_an_explicit_off_may_start() {
        use crate::config::Mode;
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
            let decided = super::may_run_without_keys(&mode, auth_off);
            assert_eq!(decided.is_ok(), allowed, "{what}: {decided:?}");
            if let Err(err) = decided {
                assert!(
                    err.to_string().contains("MEDIFLOW_AUTH=off"),
                    "{what}: {err}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_rotation_between_loading_and_watching_is_not_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "old-key\n").expect("write");
        let keys = ApiKeys::load(&path).expect("load");
        std::fs::write(&path, "new-key\n").expect("rotate");
        let watch = keys.watch(path);
        let deadline = tokio::time::Instant::now() + super::RELOAD_INTERVAL * 5;
        while !keys.verify(b"new-key") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rotated key was never loaded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(!keys.verify(b"old-key"));
        watch.abort();
    }

    #[test]
    fn an_empty_file_accepts_no_key() {
        let keys = ApiKeys::from_content("\n \n");
        assert!(keys.is_empty());
        assert!(!keys.verify(b""));
    }
}

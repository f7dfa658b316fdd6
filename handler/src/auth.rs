//! API keys: read from the file the Key Vault CSI driver mounts (`MEDIFLOW_API_KEYS_FILE`, one key
//! per line, two during a rotation), re-read when it changes, compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
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

    fn replace(&self, content: &str) {
        let digests = content
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|key| Sha256::digest(key.as_bytes()).into())
            .collect();
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

    /// Re-reads `path` every [`RELOAD_INTERVAL`] and swaps the keys in when the content changed.
    /// A failed read keeps the current keys (the CSI driver swaps files by symlink; a read can race
    /// it) and is logged.
    pub fn watch(&self, path: PathBuf) -> tokio::task::JoinHandle<()> {
        let keys = self.clone();
        tokio::spawn(async move {
            let mut last = read(&path).ok();
            let mut ticker = tokio::time::interval(RELOAD_INTERVAL);
            loop {
                ticker.tick().await;
                match tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || read(&path)
                })
                .await
                {
                    Ok(Ok(content)) if last.as_deref() != Some(content.as_str()) => {
                        keys.replace(&content);
                        tracing::info!(keys = keys.len(), "API keys reloaded");
                        if keys.is_empty() {
                            tracing::error!(
                                "the API keys file holds no key: every data request is refused"
                            );
                        }
                        last = Some(content);
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
    fn an_empty_file_accepts_no_key() {
        let keys = ApiKeys::from_content("\n \n");
        assert!(keys.is_empty());
        assert!(!keys.verify(b""));
    }
}

//! Who may call, and as whom. The file at `MEDIFLOW_API_KEYS_FILE` (the Key Vault CSI mount) is
//! either a client table (JSON: each client's id, the SHA-256 digests of its one or two keys, its
//! roles, its sites and optionally its request rate) or the old format (one raw key per line), which
//! is the one client `legacy` with every role and site. Without a file every caller is
//! `anonymous` (`server::clients::may_run_without_keys` says when that is allowed: it fails closed).
//!
//! - [`Clients`] holds the table in force: [`Clients::authenticate`] turns a presented
//!   `X-API-Key` into a [`Principal`] (SHA-256, then a constant-time comparison with every digest
//!   of every client, without an early exit), with the client's request bucket ([`rate`]).
//! - [`Clients::watch`] re-reads the file every [`RELOAD_INTERVAL`]; a table that does not parse
//!   keeps the one in force, and the problem is logged (once per distinct problem) and shown by
//!   `/ready` ([`Clients::status`]). At start an invalid table is a start failure.
//! - [`Clients::attribute`] tells which client sent a queue message ([`queue`]: an HMAC envelope
//!   keyed with the client's digest); [`Clients::signing_key`] gives what the server signs a named
//!   client's batches with.
//!
//! The file format is in docs/operations-contract.md ([`table`] checks it); why keys are
//! per client is in docs/adr/0010 and docs/threat-model.md.

pub mod queue;
pub mod rate;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::domain::identity::{Principal, Standing};
pub use queue::{SigningKey, Unattributed, sign};
use rate::Bucket;
pub use rate::Rate;
use table::Table;
pub use table::{Format, TableError};

/// How often the key file is checked for a rotation.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The callers in force, shared by every request and the reload task (cheap to clone).
#[derive(Clone)]
pub struct Clients {
    shared: Arc<Shared>,
}

struct Shared {
    table: RwLock<Arc<Table>>,
    /// The rate of table clients without their own.
    default_rate: Option<Rate>,
    /// SHA-256 of the file content last read (in force, or refused): a reload acts on a change.
    last_read: Mutex<Option<[u8; 32]>>,
    /// Why the file's current content is not in force (`None`: it is).
    problem: Mutex<Option<String>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.table();
        f.debug_struct("Clients")
            .field("format", &table.format)
            .field("clients", &table.entries.len())
            .finish_non_exhaustive()
    }
}

/// The key file could not be used at start.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the API keys file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the API keys file {path} is refused: {source}")]
    Invalid { path: PathBuf, source: TableError },
}

/// An authenticated caller, with its request bucket.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    bucket: Arc<Bucket>,
}

impl Authenticated {
    /// Takes one request from the caller's bucket: `Err(wait)` when it is empty.
    pub fn admit(&self) -> Result<(), Duration> {
        self.bucket.take()
    }
}

/// What `/ready` says of auth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthStatus {
    /// `off` (no key file), `current` (the file's content is in force) or `stale` (the file's
    /// content was refused or could not be read: the previous content is in force).
    pub status: &'static str,
    /// `off`, `legacy` or `table` ([`Format`]) of what is in force.
    pub format: &'static str,
    /// Clients in force (1 for `legacy` and `off`).
    pub clients: usize,
    /// Why the file's content is not in force (names clients and fields, never a key or digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Clients {
    /// Auth off: every caller is [`Principal::anonymous`].
    pub fn off() -> Self {
        Self::with_table(Table::off(), None, None)
    }

    /// From key file content (see [`Table::parse`]).
    pub fn from_content(content: &str, default_rate: Option<Rate>) -> Result<Self, TableError> {
        let table = Table::parse(content, default_rate)?;
        Ok(Self::with_table(
            table,
            default_rate,
            Some(Sha256::digest(content.as_bytes()).into()),
        ))
    }

    /// From the key file at `path`; an unreadable or invalid file is an error (a start failure).
    pub fn load(path: &Path, default_rate: Option<Rate>) -> Result<Self, KeyFileError> {
        let content = read(path)?;
        Self::from_content(&content, default_rate).map_err(|source| KeyFileError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    fn with_table(table: Table, default_rate: Option<Rate>, read: Option<[u8; 32]>) -> Self {
        Self {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(table)),
                default_rate,
                last_read: Mutex::new(read),
                problem: Mutex::new(None),
            }),
        }
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(
            &self
                .shared
                .table
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The format in force.
    pub fn format(&self) -> Format {
        self.table().format
    }

    /// Whether auth is off (no key file).
    pub fn is_off(&self) -> bool {
        self.format() == Format::Off
    }

    /// The number of keys accepted (0 when auth is off).
    pub fn key_count(&self) -> usize {
        self.table().key_count()
    }

    /// The caller a presented `X-API-Key` is, or `None` (401). With auth off every request is the
    /// anonymous caller's, key or none. Every digest of every client is compared, in constant
    /// time, without an early exit.
    pub fn authenticate(&self, presented: Option<&[u8]>) -> Option<Authenticated> {
        let table = self.table();
        let chosen = if table.format == Format::Off {
            table.entries.first()
        } else {
            let digest: [u8; 32] = Sha256::digest(presented?).into();
            let mut found = subtle::Choice::from(0);
            let mut index = 0_u64;
            for (n, entry) in table.entries.iter().enumerate() {
                let n = u64::try_from(n).unwrap_or(u64::MAX);
                for key in &entry.digests {
                    let hit = key.ct_eq(&digest);
                    found |= hit;
                    index.conditional_assign(&n, hit);
                }
            }
            bool::from(found)
                .then(|| usize::try_from(index).ok())
                .flatten()
                .and_then(|n| table.entries.get(n))
        }?;
        Some(Authenticated {
            principal: Arc::clone(&chosen.principal),
            bucket: Arc::clone(&chosen.bucket),
        })
    }

    /// Which client sent a queue message, and the batch message it carries ([`queue::attribute`]).
    pub fn attribute(&self, message: &[u8]) -> Result<(Arc<Principal>, Vec<u8>), Unattributed> {
        queue::attribute(&self.table(), message)
    }

    /// What the server signs the batches a named client submits over HTTP with: the client's first
    /// digest, which is the current key's during a rotation (Terraform writes the current key
    /// first, the previous one second; docs/operations-contract.md), so a message queued then
    /// outlives the previous key's removal. `None` for the legacy and anonymous callers, whose
    /// messages stay plain (as today), and for a client no longer in the table.
    pub fn signing_key(&self, principal: &Principal) -> Option<SigningKey> {
        if principal.standing != Standing::Named {
            return None;
        }
        let table = self.table();
        let entry = table
            .entries
            .iter()
            .find(|e| e.principal.client == principal.client)?;
        Some(SigningKey {
            client: principal.client.clone(),
            digest: *entry.digests.first()?,
        })
    }

    /// What `/ready` shows of auth.
    pub fn status(&self) -> AuthStatus {
        let table = self.table();
        let problem = self
            .shared
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        AuthStatus {
            status: match (table.format, &problem) {
                (Format::Off, _) => "off",
                (_, None) => "current",
                (_, Some(_)) => "stale",
            },
            format: table.format.name(),
            clients: table.entries.len(),
            problem,
        }
    }

    /// Acts on one read of the key file: a changed, valid content replaces the table in force
    /// (keeping the buckets of clients whose rate did not change, so a reload is no way to reset a
    /// limit); an invalid or unreadable one keeps it and becomes the [`AuthStatus::problem`],
    /// logged once per distinct problem.
    fn reload(&self, read: Result<String, KeyFileError>) {
        let content = match read {
            Ok(content) => content,
            Err(err) => {
                // The CSI driver swaps files by symlink: a read can race it; the next one decides.
                self.set_problem(err.to_string(), false);
                return;
            }
        };
        let digest: [u8; 32] = Sha256::digest(content.as_bytes()).into();
        {
            let mut last = self
                .shared
                .last_read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *last == Some(digest) {
                return;
            }
            *last = Some(digest);
        }
        match Table::parse(&content, self.shared.default_rate) {
            Ok(mut table) => {
                let old = self.table();
                for entry in &mut table.entries {
                    if let Some(kept) = old.entries.iter().find(|o| {
                        o.principal.client == entry.principal.client
                            && o.bucket.rate() == entry.bucket.rate()
                    }) {
                        entry.bucket = Arc::clone(&kept.bucket);
                    }
                }
                let (format, clients, keys) =
                    (table.format, table.entries.len(), table.key_count());
                *self
                    .shared
                    .table
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
                *self
                    .shared
                    .problem
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                tracing::info!(format = format.name(), clients, keys, "API keys reloaded");
                if keys == 0 {
                    tracing::error!(
                        "the API keys file holds no key: every data request is refused"
                    );
                }
            }
            Err(err) => self.set_problem(format!("{err}; the previous table stays in force"), true),
        }
    }

    fn set_problem(&self, problem: String, invalid: bool) {
        let mut current = self
            .shared
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_deref() == Some(problem.as_str()) {
            return;
        }
        if invalid {
            tracing::error!(%problem, "API keys file refused");
        } else {
            tracing::warn!(%problem, "API keys file unreadable; keeping the current keys");
        }
        *current = Some(problem);
        if !invalid {
            // Read again next time even if the content turns out unchanged, to clear the problem.
            *self
                .shared
                .last_read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }

    /// Re-reads `path` every [`RELOAD_INTERVAL`] ([`Clients::reload`]). Comparing with the content
    /// read at load (not at the watch's start) means a rotation in between is not lost.
    pub fn watch(&self, path: PathBuf) -> tokio::task::JoinHandle<()> {
        let clients = self.clone();
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
                    Ok(read) => clients.reload(read),
                    Err(err) => tracing::warn!(error = %err, "API keys reload task failed"),
                }
            }
        })
    }
}

fn read(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Unreadable {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::identity::Role;

    fn hex(key: &str) -> String {
        crate::domain::hex(&Sha256::digest(key.as_bytes()))
    }

    fn client_table(monitor_keys: &[&str]) -> String {
        let monitor: Vec<String> = monitor_keys.iter().map(|k| hex(k)).collect();
        json!({"clients": [
            {"id": "site001-uploader", "key_sha256": [hex("k-up")], "roles": ["submit"], "sites": ["SITE001"], "rate": {"per_second": 1, "burst": 1}},
            {"id": "monitor-eu", "key_sha256": monitor, "roles": ["read", "review"], "sites": ["*"]},
        ]})
        .to_string()
    }

    fn who(clients: &Clients, key: Option<&str>) -> Option<String> {
        clients
            .authenticate(key.map(str::as_bytes))
            .map(|a| a.principal.client.to_string())
    }

    #[test]
    fn each_key_authenticates_as_its_client_and_nothing_else_does() {
        let table =
            Clients::from_content(&client_table(&["k-mon-1", "k-mon-2"]), None).expect("table");
        let legacy = Clients::from_content("  old-key \n\nnew-key\n", None).expect("legacy");
        let off = Clients::off();
        // (clients, presented key, expected client, what the case proves)
        for (clients, presented, expected, proves) in [
            (
                &table,
                Some("k-up"),
                Some("site001-uploader"),
                "a table key",
            ),
            (
                &table,
                Some("k-mon-1"),
                Some("monitor-eu"),
                "a client's first digest",
            ),
            (
                &table,
                Some("k-mon-2"),
                Some("monitor-eu"),
                "its second digest",
            ),
            (&table, Some("k-mon-3"), None, "an unknown key"),
            (&table, Some(""), None, "an empty key"),
            (&table, None, None, "no key"),
            (&table, Some(&hex("k-up")), None, "the digest is not a key"),
            (
                &legacy,
                Some("old-key"),
                Some("legacy"),
                "an old-format key",
            ),
            (
                &legacy,
                Some("new-key"),
                Some("legacy"),
                "the other old-format key",
            ),
            (
                &legacy,
                Some("old-key "),
                None,
                "whitespace is part of a presented key",
            ),
            (&legacy, Some("NEW-KEY"), None, "keys are case-sensitive"),
            (&legacy, None, None, "no key, old format"),
            (&off, None, Some("anonymous"), "auth off: no key needed"),
            (
                &off,
                Some("whatever"),
                Some("anonymous"),
                "auth off: any key is ignored",
            ),
        ] {
            assert_eq!(who(clients, presented).as_deref(), expected, "{proves}");
        }
        let monitor = table.authenticate(Some(b"k-mon-1")).expect("known");
        assert!(monitor.principal.require(Role::Review).is_ok());
        assert!(monitor.principal.require(Role::Submit).is_err());
        assert_eq!(
            *legacy
                .authenticate(Some(b"old-key"))
                .expect("known")
                .principal,
            Principal::legacy()
        );
    }

    #[test]
    fn a_clients_bucket_is_its_own() {
        let table = Clients::from_content(&client_table(&["k-mon-1"]), None).expect("table");
        let uploader = table.authenticate(Some(b"k-up")).expect("known");
        assert!(uploader.admit().is_ok(), "the burst of 1");
        assert!(uploader.admit().is_err(), "1/s: the next waits");
        let again = table.authenticate(Some(b"k-up")).expect("known");
        assert!(
            again.admit().is_err(),
            "the same bucket on the next request"
        );
        let monitor = table.authenticate(Some(b"k-mon-1")).expect("known");
        assert!(
            (0..100).all(|_| monitor.admit().is_ok()),
            "another client, no rate and no default: unlimited"
        );
    }

    #[test]
    fn a_reload_swaps_valid_content_in_and_keeps_the_table_on_a_bad_one() {
        let clients = Clients::from_content(&client_table(&["k-mon-1"]), None).expect("table");
        let uploader = clients.authenticate(Some(b"k-up")).expect("known");
        assert!(uploader.admit().is_ok());
        assert_eq!(clients.status().status, "current");

        // A rotation: the next key added.
        clients.reload(Ok(client_table(&["k-mon-1", "k-mon-2"])));
        assert_eq!(
            who(&clients, Some("k-mon-2")).as_deref(),
            Some("monitor-eu")
        );
        assert!(
            clients
                .authenticate(Some(b"k-up"))
                .expect("known")
                .admit()
                .is_err(),
            "an unchanged client keeps its bucket: a reload does not reset a limit"
        );

        // A broken rewrite: the table in force stays, /ready says why.
        clients.reload(Ok(r#"{"clients": [{"id": "monitor-eu"}]}"#.to_owned()));
        assert_eq!(
            who(&clients, Some("k-mon-2")).as_deref(),
            Some("monitor-eu")
        );
        let status = clients.status();
        assert_eq!(status.status, "stale");
        let problem = status.problem.expect("a problem");
        assert!(
            problem.contains("clients[0] (monitor-eu): key_sha256: missing"),
            "{problem}"
        );

        // Unreadable: kept, said.
        clients.reload(Err(KeyFileError::Unreadable {
            path: "/mnt/keys".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }));
        assert!(
            clients
                .status()
                .problem
                .is_some_and(|p| p.contains("cannot read"))
        );
        assert_eq!(
            who(&clients, Some("k-mon-1")).as_deref(),
            Some("monitor-eu")
        );

        // Fixed: the rotation completed (the old key removed), the problem gone.
        clients.reload(Ok(client_table(&["k-mon-2"])));
        assert_eq!(who(&clients, Some("k-mon-1")), None);
        assert_eq!(
            who(&clients, Some("k-mon-2")).as_deref(),
            Some("monitor-eu")
        );
        assert_eq!(
            clients.status(),
            AuthStatus {
                status: "current",
                format: "table",
                clients: 2,
                problem: None
            }
        );

        // From a table back to the old format works the same way.
        clients.reload(Ok("k-legacy\n".to_owned()));
        assert_eq!(who(&clients, Some("k-legacy")).as_deref(), Some("legacy"));
        assert_eq!(who(&clients, Some("k-mon-2")), None);
    }

    #[test]
    fn the_server_signs_for_named_clients_with_their_current_digest() {
        // Current first, previous second: how Terraform writes a rotation's overlap.
        let clients =
            Clients::from_content(&client_table(&["k-mon-new", "k-mon-old"]), None).expect("table");
        let monitor = clients
            .authenticate(Some(b"k-mon-old"))
            .expect("known")
            .principal;
        let key = clients.signing_key(&monitor).expect("a named client");
        assert_eq!(key.client().as_str(), "monitor-eu");
        assert_eq!(key.digest, <[u8; 32]>::from(Sha256::digest(b"k-mon-new")));
        assert!(
            clients.signing_key(&Principal::legacy()).is_none(),
            "legacy stays plain"
        );
        assert!(clients.signing_key(&Principal::anonymous()).is_none());
        clients.reload(Ok("k-legacy\n".to_owned()));
        assert!(
            clients.signing_key(&monitor).is_none(),
            "no longer in the table"
        );
    }

    #[test]
    fn an_invalid_file_at_start_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys");
        std::fs::write(
            &path,
            r#"{"clients": [{"id": "x", "key_sha256": ["k"], "roles": ["read"], "sites": ["*"]}]}"#,
        )
        .expect("write");
        let err = Clients::load(&path, None).expect_err("invalid").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains("clients[0] (x): key_sha256[0]: must be 64 hex"),
            "{err}"
        );
        let missing = Clients::load(&dir.path().join("absent"), None).expect_err("missing");
        assert!(matches!(missing, KeyFileError::Unreadable { .. }));
    }

    #[tokio::test]
    async fn a_rotation_between_loading_and_watching_is_not_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "old-key\n").expect("write");
        let clients = Clients::load(&path, None).expect("load");
        std::fs::write(&path, "new-key\n").expect("rotate");
        let watch = clients.watch(path);
        let deadline = tokio::time::Instant::now() + RELOAD_INTERVAL * 5;
        while who(&clients, Some("new-key")).is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rotated key was never loaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(who(&clients, Some("old-key")), None);
        watch.abort();
    }

    #[test]
    fn an_empty_file_accepts_no_key() {
        let clients = Clients::from_content("\n \n", None).expect("legacy");
        assert_eq!(clients.key_count(), 0);
        assert_eq!(who(&clients, Some("")), None);
    }
}

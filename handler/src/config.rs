//! Configuration, read once at start from the environment (how Functions app settings, Kubernetes
//! and KEDA deliver it). Every variable is documented where it is read; see also
//! docs/operations-contract.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "emulator")]
use crate::secret::Secret;

/// Prefix of the app settings that override host.json's `extensions.queues` (the Functions
/// host's own convention: `AzureFunctionsJobHost__extensions__queues__<setting>`).
pub const QUEUE_OVERRIDE_PREFIX: &str = "AzureFunctionsJobHost__extensions__queues__";

/// Prefix of the app settings that override host.json's `extensions.http` (the HTTP limits of
/// [`crate::api::admission`]).
pub const HTTP_OVERRIDE_PREFIX: &str = "AzureFunctionsJobHost__extensions__http__";

/// The app setting that overrides host.json's `functionTimeout` (the Functions host's convention);
/// read into [`Config::function_timeout_override`].
pub const FUNCTION_TIMEOUT_OVERRIDE: &str = "AzureFunctionsJobHost__functionTimeout";

/// Why the configuration was refused; the process prints it and exits.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// How the binary is hosted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Under the Azure Functions host: `FUNCTIONS_CUSTOMHANDLER_PORT` is set by the host, which
    /// calls us on 127.0.0.1 on that port.
    CustomHandler { port: u16 },
    /// On our own: HTTP on `MEDIFLOW_ADDR` (default `127.0.0.1:8080`) plus our own queue trigger.
    Standalone { addr: SocketAddr },
}

/// Which backend holds the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `MEDIFLOW_STORE=embedded` (default): a journal and a redb file in `MEDIFLOW_DATA_DIR`
    /// (default `./mediflow-data`, only for standalone on a loopback address: anywhere else the
    /// folder must be named, a persistent volume, never a scratch folder by accident).
    Embedded { data_dir: PathBuf },
    /// `MEDIFLOW_STORE=cosmos`: Azure Cosmos DB for NoSQL.
    Cosmos(CosmosConfig),
}

/// The Entra ID identity the process uses for every Azure service (Cosmos DB and Storage queues):
/// one policy, read once by [`AzureIdentity::from_source`], built into a credential by
/// `crate::credential`.
///
/// `AZURE_CREDENTIAL` (`COSMOS_CREDENTIAL` is read as its older name when it is unset):
/// - `workload-identity` (the default; AKS): `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and
///   `AZURE_FEDERATED_TOKEN_FILE`, injected by the workload-identity webhook;
/// - `managed-identity`: the VM/App Service identity; `AZURE_CLIENT_ID` picks a user-assigned one.
///
/// Explicit rather than detected: a pod whose webhook did not run fails at start with a clear
/// error instead of silently trying another identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureIdentity {
    WorkloadIdentity,
    ManagedIdentity { client_id: Option<String> },
}

impl AzureIdentity {
    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let chosen = env
            .var("AZURE_CREDENTIAL")
            .or_else(|| env.var("COSMOS_CREDENTIAL").filter(|c| c != "key"));
        match chosen.as_deref() {
            None | Some("workload-identity") => Ok(Self::WorkloadIdentity),
            Some("managed-identity") => Ok(Self::ManagedIdentity {
                client_id: env.var("AZURE_CLIENT_ID"),
            }),
            Some(other) => Err(ConfigError(format!(
                "AZURE_CREDENTIAL (or COSMOS_CREDENTIAL) must be `workload-identity` or \
                 `managed-identity`, not `{other}`"
            ))),
        }
    }
}

/// How the service authenticates to Cosmos DB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CosmosCredential {
    /// Entra ID: the process's [`AzureIdentity`].
    Entra(AzureIdentity),
    /// `COSMOS_CREDENTIAL=key` with `COSMOS_KEY`: only in builds with the `emulator` feature, for
    /// the emulator.
    #[cfg(feature = "emulator")]
    Key(Secret),
}

/// `MEDIFLOW_STORE=cosmos` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosmosConfig {
    /// `COSMOS_ENDPOINT`, e.g. `https://<account>.documents.azure.com:443/`.
    pub endpoint: String,
    /// `COSMOS_DATABASE` (default `mediflow`).
    pub database: String,
    /// `COSMOS_CONTAINER` (default `records`), partition key `/id`.
    pub container: String,
    /// `COSMOS_AUDIT_CONTAINER` (default `audit`), partition key `/chain`: the audit trail's
    /// events, one document each, only ever created and read (never replaced or deleted).
    pub audit_container: String,
    pub credential: CosmosCredential,
    /// `MEDIFLOW_COSMOS_TIMEOUT_MS`: the longest one Cosmos DB operation may take, every SDK
    /// retry included (default [`DEFAULT_COSMOS_TIMEOUT`]); past it the caller gets a 503.
    pub operation_timeout: Duration,
}

/// Default of `MEDIFLOW_COSMOS_TIMEOUT_MS`: a healthy account answers a point operation in
/// milliseconds; five seconds covers its retries, and a dead endpoint never hangs a request.
pub const DEFAULT_COSMOS_TIMEOUT: Duration = Duration::from_secs(5);

impl CosmosConfig {
    /// Reads the `COSMOS_*` settings.
    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let endpoint = env
            .var("COSMOS_ENDPOINT")
            .ok_or_else(|| ConfigError("MEDIFLOW_STORE=cosmos needs COSMOS_ENDPOINT".into()))?;
        let credential = match env.var("COSMOS_CREDENTIAL").as_deref() {
            #[cfg(feature = "emulator")]
            Some("key") => {
                CosmosCredential::Key(Secret::new(env.var("COSMOS_KEY").ok_or_else(|| {
                    ConfigError("COSMOS_CREDENTIAL=key needs COSMOS_KEY".into())
                })?))
            }
            #[cfg(not(feature = "emulator"))]
            Some("key") => {
                return Err(ConfigError(
                    "COSMOS_CREDENTIAL=key exists only in builds with the `emulator` feature"
                        .into(),
                ));
            }
            _ => CosmosCredential::Entra(AzureIdentity::from_source(env)?),
        };
        Ok(Self {
            endpoint,
            database: env
                .var("COSMOS_DATABASE")
                .unwrap_or_else(|| "mediflow".into()),
            container: env
                .var("COSMOS_CONTAINER")
                .unwrap_or_else(|| "records".into()),
            audit_container: env
                .var("COSMOS_AUDIT_CONTAINER")
                .unwrap_or_else(|| "audit".into()),
            credential,
            operation_timeout: millis(env, "MEDIFLOW_COSMOS_TIMEOUT_MS")?
                .unwrap_or(DEFAULT_COSMOS_TIMEOUT),
        })
    }
}

/// How the standalone host reaches the batch queue (connection setting `MEDIFLOW_QUEUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueConfig {
    /// `MEDIFLOW_QUEUE__queueServiceUri`: identity-based (the process's [`AzureIdentity`]),
    /// production.
    Identity {
        service_uri: String,
        identity: AzureIdentity,
    },
    /// `MEDIFLOW_QUEUE`: a connection string or an account SAS URL (Azurite, local only: builds
    /// with the `emulator` feature).
    #[cfg(feature = "emulator")]
    Connection(crate::secret::Secret),
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub store: StoreConfig,
    /// `MEDIFLOW_API_KEYS_FILE`: the Key Vault CSI mount holding a client table (JSON, each
    /// client's key digests, roles, sites and rate) or, the old format, one API key per line (the
    /// one client `legacy`); see [`crate::auth`] and docs/operations-contract.md. Unset: auth is
    /// off.
    pub api_keys_file: Option<PathBuf>,
    /// `MEDIFLOW_CLIENT_RATE_PER_SECOND` (default [`DEFAULT_CLIENT_RATE_PER_SECOND`]; `0`: no
    /// limit) and `MEDIFLOW_CLIENT_RATE_BURST` (default [`DEFAULT_CLIENT_RATE_BURST`], at least 1
    /// when the rate is on): the request rate of each client of a client table that sets no
    /// `rate` of its own, beyond which its requests get 429 with `Retry-After`. Not applied to the
    /// `legacy` client of an old-format file nor to `anonymous` (each is every caller at once;
    /// admission control bounds them). `None`: no default limit.
    pub client_rate: Option<crate::auth::Rate>,
    /// `MEDIFLOW_AUTH=off`: run without API keys on purpose. Without it and without a key file the
    /// service starts only in standalone mode on a loopback address (see
    /// `server::clients::may_run_without_keys`). `on` (the default) is also accepted.
    pub auth_off: bool,
    /// `MEDIFLOW_METRICS_ADDR`: serve `/metrics` on its own listener. Required to get metrics under
    /// the Functions host; optional standalone (default: `/metrics` on the main port).
    pub metrics_addr: Option<SocketAddr>,
    /// `LOG_FORMAT=json` for JSON log lines; otherwise human-readable text.
    pub json_logs: bool,
    /// The batch queue for the standalone host; `None` processes batches in-process.
    pub queue: Option<QueueConfig>,
    /// `AzureFunctionsJobHost__extensions__queues__<setting>`: overrides of host.json's queue
    /// settings (the Functions host's own convention), honoured by the standalone trigger too.
    pub queue_overrides: Vec<(String, String)>,
    /// `MEDIFLOW_COSMOS_MAX_CONCURRENCY`: Cosmos DB calls in flight at once (default
    /// [`DEFAULT_COSMOS_MAX_CONCURRENCY`]); a call that finds no slot within 5 s answers 503.
    pub cosmos_max_concurrency: usize,
    /// `MEDIFLOW_POISON_RETENTION_DAYS`: how long the standalone trigger's poison messages are
    /// kept before the queue service deletes them (default [`DEFAULT_POISON_RETENTION_DAYS`]);
    /// within it `handler redrive` brings them back.
    pub poison_retention: std::time::Duration,
    /// `AzureFunctionsJobHost__extensions__http__<setting>`: overrides of host.json's
    /// `maxConcurrentRequests` and `maxOutstandingRequests` (the Functions host's convention),
    /// honoured by both hosts (see [`crate::api::admission`]).
    pub http_overrides: Vec<(String, String)>,
    /// `MEDIFLOW_BODY_BUDGET_BYTES`: request-body bytes held in memory at once, over all requests
    /// (default [`DEFAULT_BODY_BUDGET_BYTES`]); beyond it a request is refused with 503 and
    /// `Retry-After`. The memory bound this gives is in docs/hardening.md.
    pub body_budget_bytes: usize,
    /// `AzureFunctionsJobHost__functionTimeout`: overrides host.json's `functionTimeout`
    /// (`hh:mm:ss` or `-1`), from which `ingest_batch` derives how long it waits for an
    /// unavailable store (see [`crate::functions::invoke::store_wait`]).
    pub function_timeout_override: Option<String>,
    /// How long a client may take to send a request, and a request to be answered
    /// (`MEDIFLOW_*_TIMEOUT_MS`, see [`HttpTimeouts`]).
    pub http_timeouts: HttpTimeouts,
}

/// The deadlines of an HTTP exchange: a slow client (one that dribbles its head or its body, or
/// stops half-way) loses its connection instead of holding it, and a request that takes too long
/// is answered anyway. Each variable is a whole number of milliseconds from 1 to
/// [`MAX_TIMEOUT_MS`]; unset, today's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// `MEDIFLOW_HEADER_READ_TIMEOUT_MS` (default [`DEFAULT_HEADER_READ_TIMEOUT`], 10 s): the
    /// longest a client may take to send a request's head (request line and headers), from its
    /// first byte; a slow-loris client is then disconnected.
    pub header_read: Duration,
    /// `MEDIFLOW_BODY_READ_TIMEOUT_MS` (default [`DEFAULT_BODY_READ_TIMEOUT`], 10 s): the longest a
    /// client may take to send a request's body; then it is answered 408.
    pub body_read: Duration,
    /// `MEDIFLOW_REQUEST_TIMEOUT_MS` (default [`DEFAULT_REQUEST_TIMEOUT`], 30 s): the longest a
    /// request may take end to end; then it is answered 503 (outcome unknown, retry with the same
    /// `Idempotency-Key`). Store retries are bounded well below the default.
    pub request: Duration,
}

/// Default of `MEDIFLOW_HEADER_READ_TIMEOUT_MS`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of `MEDIFLOW_BODY_READ_TIMEOUT_MS`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of `MEDIFLOW_REQUEST_TIMEOUT_MS`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest value of a `MEDIFLOW_*_TIMEOUT_MS` variable: 10 minutes. Longer would let one slow
/// client hold a connection (and its memory) for longer than any real client needs.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            header_read: DEFAULT_HEADER_READ_TIMEOUT,
            body_read: DEFAULT_BODY_READ_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl HttpTimeouts {
    /// Reads the three `MEDIFLOW_*_TIMEOUT_MS` variables.
    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            header_read: millis(env, "MEDIFLOW_HEADER_READ_TIMEOUT_MS")?
                .unwrap_or(defaults.header_read),
            body_read: millis(env, "MEDIFLOW_BODY_READ_TIMEOUT_MS")?.unwrap_or(defaults.body_read),
            request: millis(env, "MEDIFLOW_REQUEST_TIMEOUT_MS")?.unwrap_or(defaults.request),
        })
    }
}

/// `MEDIFLOW_FAULT_KILL_WRITER_AFTER`, `MEDIFLOW_FAULT_DELAY_STORE_OPEN_MS`: read only by builds
/// with the `fault-injection` feature (the tests), never by a release: see `crate::fault`.
/// Listed here so that every variable is.
pub const FAULT_INJECTION_VARIABLES: [&str; 2] = [
    "MEDIFLOW_FAULT_KILL_WRITER_AFTER",
    "MEDIFLOW_FAULT_DELAY_STORE_OPEN_MS",
];

/// Default of `MEDIFLOW_CLIENT_RATE_PER_SECOND`: well above a site uploader's or a monitor's
/// pace, well below what one client could take from the others.
pub const DEFAULT_CLIENT_RATE_PER_SECOND: u32 = 100;

/// Default of `MEDIFLOW_CLIENT_RATE_BURST`: two seconds' worth at the default rate.
pub const DEFAULT_CLIENT_RATE_BURST: u32 = 200;

/// Default of `MEDIFLOW_POISON_RETENTION_DAYS`: 30 days, long enough to notice and redrive after
/// an outage, short enough that patient data does not linger in a dead-letter queue.
pub const DEFAULT_POISON_RETENTION_DAYS: u64 = 30;

/// Default of `MEDIFLOW_COSMOS_MAX_CONCURRENCY`: the admission limit's order of magnitude
/// (host.json `maxConcurrentRequests` 64).
pub const DEFAULT_COSMOS_MAX_CONCURRENCY: usize = 64;

/// Default of `MEDIFLOW_BODY_BUDGET_BYTES`: 8 MiB, eight largest bodies at once.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Where configuration values come from (the process environment, or a map in tests).
pub trait Source {
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable whose name starts with `prefix`, with the prefix removed.
    fn with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct Environment;

impl Source for Environment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        std::env::vars()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v)))
            .collect()
    }
}

impl<S: std::hash::BuildHasher> Source for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }

    fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
            .collect()
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Environment)
    }

    pub fn from_source(env: &impl Source) -> Result<Self, ConfigError> {
        let mode = match env.var("FUNCTIONS_CUSTOMHANDLER_PORT") {
            Some(port) => Mode::CustomHandler {
                port: port.parse().map_err(|_| {
                    ConfigError(format!(
                        "FUNCTIONS_CUSTOMHANDLER_PORT is not a port: {port}"
                    ))
                })?,
            },
            None => Mode::Standalone {
                addr: socket_addr(env, "MEDIFLOW_ADDR")?.unwrap_or(([127, 0, 0, 1], 8080).into()),
            },
        };
        let store = match env.var("MEDIFLOW_STORE").as_deref() {
            None | Some("embedded") => StoreConfig::Embedded {
                data_dir: match env.var("MEDIFLOW_DATA_DIR") {
                    Some(dir) => PathBuf::from(dir),
                    None if matches!(mode, Mode::Standalone { addr } if addr.ip().is_loopback()) => {
                        PathBuf::from("mediflow-data")
                    }
                    None => {
                        return Err(ConfigError(
                            "MEDIFLOW_DATA_DIR is required for the embedded store outside loopback development: name a persistent volume (or use MEDIFLOW_STORE=cosmos)".to_owned(),
                        ));
                    }
                },
            },
            Some("cosmos") => StoreConfig::Cosmos(CosmosConfig::from_source(env)?),
            Some(other) => {
                return Err(ConfigError(format!(
                    "MEDIFLOW_STORE must be `embedded` or `cosmos`, not `{other}`"
                )));
            }
        };
        // Under the Functions host the `MEDIFLOW_QUEUE` connection is the host's (its queue
        // trigger and output binding); the handler reads it only standalone.
        let standalone = matches!(mode, Mode::Standalone { .. });
        let queue = match (
            env.var("MEDIFLOW_QUEUE__queueServiceUri")
                .filter(|_| standalone),
            env.var("MEDIFLOW_QUEUE").filter(|_| standalone),
        ) {
            (Some(service_uri), _) => Some(QueueConfig::Identity {
                service_uri,
                identity: AzureIdentity::from_source(env)?,
            }),
            #[cfg(feature = "emulator")]
            (None, Some(connection)) => Some(QueueConfig::Connection(crate::secret::Secret::new(
                connection,
            ))),
            #[cfg(not(feature = "emulator"))]
            (None, Some(_)) => {
                return Err(ConfigError(
                    "MEDIFLOW_QUEUE (a connection string or SAS URL, for Azurite) exists only in \
                     builds with the `emulator` feature; production uses \
                     MEDIFLOW_QUEUE__queueServiceUri"
                        .into(),
                ));
            }
            (None, None) => None,
        };
        Ok(Self {
            mode,
            store,
            api_keys_file: env.var("MEDIFLOW_API_KEYS_FILE").map(PathBuf::from),
            client_rate: client_rate(env)?,
            auth_off: match env.var("MEDIFLOW_AUTH").as_deref() {
                None | Some("on") => false,
                Some("off") => true,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "MEDIFLOW_AUTH must be `on` or `off`, not `{other}`"
                    )));
                }
            },
            metrics_addr: socket_addr(env, "MEDIFLOW_METRICS_ADDR")?,
            json_logs: env
                .var("LOG_FORMAT")
                .is_some_and(|f| f.eq_ignore_ascii_case("json")),
            queue,
            queue_overrides: env.with_prefix(QUEUE_OVERRIDE_PREFIX),
            cosmos_max_concurrency: positive(env, "MEDIFLOW_COSMOS_MAX_CONCURRENCY")?
                .unwrap_or(DEFAULT_COSMOS_MAX_CONCURRENCY),
            poison_retention: std::time::Duration::from_secs(
                86_400
                    * positive(env, "MEDIFLOW_POISON_RETENTION_DAYS")?
                        .map_or(DEFAULT_POISON_RETENTION_DAYS, |d| d as u64),
            ),
            http_overrides: env.with_prefix(HTTP_OVERRIDE_PREFIX),
            body_budget_bytes: positive(env, "MEDIFLOW_BODY_BUDGET_BYTES")?
                .unwrap_or(DEFAULT_BODY_BUDGET_BYTES),
            function_timeout_override: env.var("AzureFunctionsJobHost__functionTimeout"),
            http_timeouts: HttpTimeouts::from_source(env)?,
        })
    }
}

/// `MEDIFLOW_CLIENT_RATE_PER_SECOND` and `MEDIFLOW_CLIENT_RATE_BURST`.
fn client_rate(env: &impl Source) -> Result<Option<crate::auth::Rate>, ConfigError> {
    let per_second = whole_number(
        "MEDIFLOW_CLIENT_RATE_PER_SECOND",
        env.var("MEDIFLOW_CLIENT_RATE_PER_SECOND"),
        DEFAULT_CLIENT_RATE_PER_SECOND,
    )?;
    let burst = whole_number(
        "MEDIFLOW_CLIENT_RATE_BURST",
        env.var("MEDIFLOW_CLIENT_RATE_BURST"),
        DEFAULT_CLIENT_RATE_BURST,
    )?;
    crate::auth::Rate::limit(per_second, burst)
        .map_err(|rule| ConfigError(format!("MEDIFLOW_CLIENT_RATE_BURST: {rule}")))
}

/// The value `raw` of variable `name` as a whole number (0 included), or `default` when unset.
fn whole_number(name: &str, raw: Option<String>, default: u32) -> Result<u32, ConfigError> {
    raw.map_or(Ok(default), |raw| {
        raw.parse::<u32>().map_err(|_| {
            ConfigError(format!(
                "{name} is not a whole number from 0 to 4294967295: {raw}"
            ))
        })
    })
}

/// An optional positive integer variable.
fn positive(env: &impl Source, name: &str) -> Result<Option<usize>, ConfigError> {
    env.var(name)
        .map(|raw| {
            raw.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError(format!("{name} is not a positive integer: {raw}")))
        })
        .transpose()
}

/// An optional duration variable in whole milliseconds, from 1 to [`MAX_TIMEOUT_MS`].
fn millis(env: &impl Source, name: &str) -> Result<Option<Duration>, ConfigError> {
    env.var(name)
        .map(|raw| {
            raw.parse::<u64>()
                .ok()
                .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{name} must be a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS} \
                         (10 minutes), not `{raw}`"
                    ))
                })
        })
        .transpose()
}

fn socket_addr(env: &impl Source, name: &str) -> Result<Option<SocketAddr>, ConfigError> {
    env.var(name)
        .map(|raw| {
            raw.parse().map_err(|_| {
                ConfigError(format!("{name} is not a socket address (host:port): {raw}"))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_standalone_embedded_without_auth_or_queue() {
        let config = Config::from_source(&env(&[])).expect("empty env is valid");
        assert_eq!(
            config.mode,
            Mode::Standalone {
                addr: ([127, 0, 0, 1], 8080).into()
            }
        );
        assert_eq!(
            config.store,
            StoreConfig::Embedded {
                data_dir: "mediflow-data".into()
            }
        );
        assert!(config.api_keys_file.is_none() && config.queue.is_none() && !config.json_logs);
    }

    #[test]
    fn the_default_client_rate_is_on_unless_set_to_zero() {
        use crate::auth::Rate;
        // (settings, the default rate, what the case proves)
        for (settings, expected, proves) in [
            (
                vec![],
                Rate::limit(DEFAULT_CLIENT_RATE_PER_SECOND, DEFAULT_CLIENT_RATE_BURST)
                    .expect("rate"),
                "on by default",
            ),
            (
                vec![("MEDIFLOW_CLIENT_RATE_PER_SECOND", "0")],
                None,
                "0 is off",
            ),
            (
                vec![
                    ("MEDIFLOW_CLIENT_RATE_PER_SECOND", "0"),
                    ("MEDIFLOW_CLIENT_RATE_BURST", "0"),
                ],
                None,
                "off needs no burst",
            ),
            (
                vec![
                    ("MEDIFLOW_CLIENT_RATE_PER_SECOND", "5"),
                    ("MEDIFLOW_CLIENT_RATE_BURST", "7"),
                ],
                Rate::limit(5, 7).expect("rate"),
                "both set",
            ),
        ] {
            let config = Config::from_source(&env(&settings)).expect(proves);
            assert_eq!(config.client_rate, expected, "{proves}");
        }
    }

    #[test]
    fn the_functions_host_port_selects_custom_handler_mode() {
        let config = Config::from_source(&env(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "41234"),
            ("MEDIFLOW_DATA_DIR", "/data"),
        ]))
        .expect("valid");
        assert_eq!(config.mode, Mode::CustomHandler { port: 41234 });
    }

    #[test]
    fn the_embedded_store_needs_a_named_folder_outside_loopback_development() {
        // (what the case proves, environment, accepted)
        for (proves, vars, ok) in [
            ("the README's cargo run", &[][..], true),
            (
                "every interface without a folder",
                &[("MEDIFLOW_ADDR", "0.0.0.0:8080")][..],
                false,
            ),
            (
                "every interface with a volume",
                &[
                    ("MEDIFLOW_ADDR", "0.0.0.0:8080"),
                    ("MEDIFLOW_DATA_DIR", "/data"),
                ][..],
                true,
            ),
            (
                "the Functions host without a folder",
                &[("FUNCTIONS_CUSTOMHANDLER_PORT", "4000")][..],
                false,
            ),
            (
                "Cosmos needs no folder",
                &[
                    ("MEDIFLOW_ADDR", "0.0.0.0:8080"),
                    ("MEDIFLOW_STORE", "cosmos"),
                    ("COSMOS_ENDPOINT", "https://acct.documents.azure.com:443/"),
                ][..],
                true,
            ),
        ] {
            let decided = Config::from_source(&env(vars));
            assert_eq!(decided.is_ok(), ok, "{proves}: {decided:?}");
            if let Err(err) = decided {
                assert!(err.0.contains("MEDIFLOW_DATA_DIR"), "{proves}: {err}");
            }
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        for (name, value) in [
            ("MEDIFLOW_STORE", "postgres"),
            ("MEDIFLOW_ADDR", "localhost"),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "http"),
            ("MEDIFLOW_METRICS_ADDR", "9090"),
            ("MEDIFLOW_BODY_BUDGET_BYTES", "0"),
            ("MEDIFLOW_AUTH", "no"),
            ("MEDIFLOW_POISON_RETENTION_DAYS", "-1"),
            ("MEDIFLOW_CLIENT_RATE_PER_SECOND", "-1"),
            ("MEDIFLOW_CLIENT_RATE_PER_SECOND", "1.5"),
            ("MEDIFLOW_CLIENT_RATE_BURST", "0"),
            ("MEDIFLOW_HEADER_READ_TIMEOUT_MS", "0"),
            ("MEDIFLOW_BODY_READ_TIMEOUT_MS", "600001"),
            ("MEDIFLOW_REQUEST_TIMEOUT_MS", "1.5"),
            ("MEDIFLOW_REQUEST_TIMEOUT_MS", "-1"),
        ] {
            let err = Config::from_source(&env(&[(name, value)])).expect_err(name);
            assert!(err.0.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn the_http_timeouts_default_to_todays_values_and_are_read_in_milliseconds() {
        // (settings, the timeouts, what the case proves)
        for (settings, expected, proves) in [
            (
                vec![],
                HttpTimeouts {
                    header_read: Duration::from_secs(10),
                    body_read: Duration::from_secs(10),
                    request: Duration::from_secs(30),
                },
                "unset: 10 s, 10 s and 30 s, as before they were settings",
            ),
            (
                vec![
                    ("MEDIFLOW_HEADER_READ_TIMEOUT_MS", "150"),
                    ("MEDIFLOW_BODY_READ_TIMEOUT_MS", "1"),
                    ("MEDIFLOW_REQUEST_TIMEOUT_MS", "600000"),
                ],
                HttpTimeouts {
                    header_read: Duration::from_millis(150),
                    body_read: Duration::from_millis(1),
                    request: Duration::from_secs(600),
                },
                "each read on its own, both bounds included",
            ),
        ] {
            let config = Config::from_source(&env(&settings)).expect(proves);
            assert_eq!(config.http_timeouts, expected, "{proves}");
        }
        let err = Config::from_source(&env(&[("MEDIFLOW_BODY_READ_TIMEOUT_MS", "0")]))
            .expect_err("0 ms is refused");
        assert!(
            err.0.contains("from 1 to 600000") && err.0.contains("not `0`"),
            "the message says what is accepted and what was given: {err}"
        );
    }

    #[test]
    fn the_cosmos_operation_timeout_defaults_to_five_seconds_and_is_read_in_milliseconds() {
        let cosmos = |extra: &[(&str, &str)]| {
            let mut vars = vec![
                ("MEDIFLOW_STORE", "cosmos"),
                ("COSMOS_ENDPOINT", "https://acct.documents.azure.com:443/"),
            ];
            vars.extend_from_slice(extra);
            Config::from_source(&env(&vars)).map(|config| match config.store {
                StoreConfig::Cosmos(cosmos) => cosmos.operation_timeout,
                other @ StoreConfig::Embedded { .. } => panic!("not Cosmos: {other:?}"),
            })
        };
        assert_eq!(cosmos(&[]).expect("default"), Duration::from_secs(5));
        assert_eq!(
            cosmos(&[("MEDIFLOW_COSMOS_TIMEOUT_MS", "20000")]).expect("set"),
            Duration::from_secs(20)
        );
        for bad in ["0", "600001", "5s"] {
            let err = cosmos(&[("MEDIFLOW_COSMOS_TIMEOUT_MS", bad)]).expect_err(bad);
            assert!(err.0.contains("MEDIFLOW_COSMOS_TIMEOUT_MS"), "{bad}: {err}");
        }
    }

    #[test]
    fn identity_queue_settings_win_over_a_connection_string() {
        let config = Config::from_source(&env(&[
            (
                "MEDIFLOW_QUEUE__queueServiceUri",
                "https://acct.queue.core.windows.net",
            ),
            ("MEDIFLOW_QUEUE", "UseDevelopmentStorage=true"),
        ]))
        .expect("valid");
        assert_eq!(
            config.queue,
            Some(QueueConfig::Identity {
                service_uri: "https://acct.queue.core.windows.net".into(),
                identity: AzureIdentity::WorkloadIdentity,
            })
        );
    }

    #[test]
    fn under_the_functions_host_the_queue_connection_is_the_hosts() {
        let config = Config::from_source(&env(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "41234"),
            ("MEDIFLOW_QUEUE", "UseDevelopmentStorage=true"),
            ("MEDIFLOW_DATA_DIR", "/data"),
        ]))
        .expect("valid in every build: the handler does not read it");
        assert_eq!(config.queue, None);
    }

    #[test]
    fn one_identity_policy_for_every_azure_client() {
        // (settings, the identity, what the case proves)
        for (settings, expected, proves) in [
            (
                vec![],
                Some(AzureIdentity::WorkloadIdentity),
                "workload identity by default",
            ),
            (
                vec![
                    ("AZURE_CREDENTIAL", "managed-identity"),
                    ("AZURE_CLIENT_ID", "c1"),
                ],
                Some(AzureIdentity::ManagedIdentity {
                    client_id: Some("c1".into()),
                }),
                "managed identity, user-assigned by client id",
            ),
            (
                vec![("COSMOS_CREDENTIAL", "managed-identity")],
                Some(AzureIdentity::ManagedIdentity { client_id: None }),
                "the older name still chooses",
            ),
            (
                vec![
                    ("AZURE_CREDENTIAL", "workload-identity"),
                    ("COSMOS_CREDENTIAL", "managed-identity"),
                ],
                Some(AzureIdentity::WorkloadIdentity),
                "AZURE_CREDENTIAL wins",
            ),
            (
                vec![("AZURE_CREDENTIAL", "password")],
                None,
                "an unknown kind is refused",
            ),
        ] {
            assert_eq!(
                AzureIdentity::from_source(&env(&settings)).ok(),
                expected,
                "{proves}"
            );
        }
    }
}

//! `MEDIFLOW_QUEUE` for Azurite (local and tests only, so only in builds with the `emulator`
//! feature, like Cosmos key auth): an account SAS URL, used as is, or a connection string with an
//! account key, from which an account SAS is signed here (HMAC-SHA256, never sent or logged).
//! Production uses `MEDIFLOW_QUEUE__queueServiceUri` and Entra ID (docs/operations-contract.md).

use azure_core::http::Url;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};

use super::client::{AuthKind, QueueSetupError};
use crate::secret::Secret;

/// Azurite's well-known development account (public, documented by Microsoft).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";

/// The account SAS signed from an account key: version 2019-02-02 (the string-to-sign before the
/// 2020-12-06 change), queue service only, every permission the trigger needs (create the poison
/// queue, send, receive, update, delete). It lives only in this process's memory, like the key it
/// is derived from; its expiry is far away so a long-running process never sees it lapse.
const SAS_VERSION: &str = "2019-02-02";
const SAS_SERVICES: &str = "q";
const SAS_RESOURCE_TYPES: &str = "sco";
const SAS_PERMISSIONS: &str = "rwdlacup";
const SAS_EXPIRY: &str = "2099-12-31T23:59:59Z";

/// `MEDIFLOW_QUEUE` (a connection string or an account SAS URL) as the queue service URL with a
/// SAS in its query: what the clients are built from. Public for test tooling; the URL is a
/// secret (never log it).
pub fn connection_service_url(connection: &Secret) -> Result<Url, QueueSetupError> {
    sas_service_url(connection).map(|(url, _)| url)
}

/// `MEDIFLOW_QUEUE` as a service URL carrying a SAS.
pub(super) fn sas_service_url(connection: &Secret) -> Result<(Url, AuthKind), QueueSetupError> {
    let parsed = ConnectionString::parse(connection.expose()).map_err(|reason| {
        QueueSetupError(format!(
            "MEDIFLOW_QUEUE is neither an account SAS URL nor a usable connection string: {reason}"
        ))
    })?;
    let auth = match parsed.auth {
        ConnectionAuth::Sas(_) => AuthKind::Sas,
        ConnectionAuth::Key { .. } => AuthKind::SignedAccountKey,
    };
    let url = parsed
        .service_url()
        .map_err(|reason| QueueSetupError(format!("MEDIFLOW_QUEUE: {reason}")))?;
    Ok((url, auth))
}

/// What `MEDIFLOW_QUEUE` says: the queue service endpoint and how to sign requests to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConnectionString {
    /// No trailing slash (the SDK appends `/<queue>`).
    endpoint: String,
    auth: ConnectionAuth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ConnectionAuth {
    /// A SAS query string (without the `?`).
    Sas(Secret),
    /// An account key (base64), to sign an account SAS with.
    Key { account: String, key: Secret },
}

impl ConnectionString {
    /// Accepts an account SAS URL (`http(s)://…?sv=…&sig=…`), `UseDevelopmentStorage=true`, or
    /// `Name=value;…` with `AccountName` + `AccountKey` (or `SharedAccessSignature`) and either
    /// `QueueEndpoint` or `DefaultEndpointsProtocol` + `EndpointSuffix`. The reason for a refusal
    /// never quotes a value.
    fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let (base, query) = raw
                .split_once('?')
                .ok_or("the URL has no SAS query (?sv=…&sig=…)")?;
            if !query.split('&').any(|pair| pair.starts_with("sig=")) {
                return Err("the URL's query has no sig= (not a SAS)".into());
            }
            return Ok(Self {
                endpoint: base.trim_end_matches('/').to_owned(),
                auth: ConnectionAuth::Sas(Secret::new(query.to_owned())),
            });
        }
        let mut settings = std::collections::HashMap::new();
        for part in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or("a setting without `=`")?;
            settings.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        if settings
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(Self {
                endpoint: DEV_QUEUE_ENDPOINT.to_owned(),
                auth: ConnectionAuth::Key {
                    account: DEV_ACCOUNT.to_owned(),
                    key: Secret::new(DEV_KEY.to_owned()),
                },
            });
        }
        let account = settings.remove("accountname");
        let endpoint = match (settings.remove("queueendpoint"), &account) {
            (Some(endpoint), _) => endpoint,
            (None, Some(account)) => {
                let protocol = settings
                    .remove("defaultendpointsprotocol")
                    .unwrap_or_else(|| "https".into());
                let suffix = settings
                    .remove("endpointsuffix")
                    .unwrap_or_else(|| "core.windows.net".into());
                format!("{protocol}://{account}.queue.{suffix}")
            }
            (None, None) => return Err("neither QueueEndpoint nor AccountName is set".into()),
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err("the queue endpoint is not an http(s) URL".into());
        }
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let auth = match (
            settings.remove("sharedaccesssignature"),
            settings.remove("accountkey"),
            account,
        ) {
            (Some(sas), _, _) => {
                ConnectionAuth::Sas(Secret::new(sas.trim_start_matches('?').to_owned()))
            }
            (None, Some(key), Some(account)) => ConnectionAuth::Key {
                account,
                key: Secret::new(key),
            },
            (None, Some(_), None) => return Err("AccountKey without AccountName".into()),
            (None, None, _) => {
                return Err("neither AccountKey nor SharedAccessSignature is set".into());
            }
        };
        Ok(Self { endpoint, auth })
    }

    /// The service URL with a SAS query: given, or signed now from the account key.
    fn service_url(&self) -> Result<Url, String> {
        let query = match &self.auth {
            ConnectionAuth::Sas(sas) => sas.expose().to_owned(),
            ConnectionAuth::Key { account, key } => {
                account_sas(account, key, SAS_EXPIRY)?.expose().to_owned()
            }
        };
        Url::parse(&format!("{}?{query}", self.endpoint))
            .map_err(|e| format!("the queue endpoint is not a URL: {e}"))
    }
}

/// The string an account SAS (version 2019-02-02) signs.
fn account_sas_string_to_sign(account: &str, expiry: &str) -> String {
    // account, permissions, services, resource types, start, expiry, IP, protocol, version.
    format!(
        "{account}\n{SAS_PERMISSIONS}\n{SAS_SERVICES}\n{SAS_RESOURCE_TYPES}\n\n{expiry}\n\n\n{SAS_VERSION}\n"
    )
}

/// An account SAS query string (`sv=…&sig=…`, form-encoded) signed with the account key.
fn account_sas(account: &str, key: &Secret, expiry: &str) -> Result<Secret, String> {
    let key = B64
        .decode(key.expose().trim())
        .map_err(|_| "AccountKey is not base64".to_owned())?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key)
        .map_err(|_| "AccountKey is unusable".to_owned())?;
    mac.update(account_sas_string_to_sign(account, expiry).as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", SAS_VERSION)
        .append_pair("ss", SAS_SERVICES)
        .append_pair("srt", SAS_RESOURCE_TYPES)
        .append_pair("sp", SAS_PERMISSIONS)
        .append_pair("se", expiry)
        .append_pair("sig", &signature)
        .finish();
    Ok(Secret::new(query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: &str, key: &str) -> ConnectionAuth {
        ConnectionAuth::Key {
            account: account.into(),
            key: Secret::new(key.into()),
        }
    }

    /// (what the case proves, MEDIFLOW_QUEUE, expected endpoint and auth, or part of the refusal)
    type Case = (
        &'static str,
        &'static str,
        Result<(&'static str, ConnectionAuth), &'static str>,
    );

    fn connection_cases() -> Vec<Case> {
        vec![
            (
                "the development shortcut is Azurite's well-known account",
                "UseDevelopmentStorage=true",
                Ok((DEV_QUEUE_ENDPOINT, key(DEV_ACCOUNT, DEV_KEY))),
            ),
            (
                "an explicit endpoint wins; the key keeps its trailing `==`",
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5==;QueueEndpoint=http://127.0.0.1:41001/devstoreaccount1;",
                Ok((
                    "http://127.0.0.1:41001/devstoreaccount1",
                    key("devstoreaccount1", "a2V5=="),
                )),
            ),
            (
                "protocol and suffix build the public endpoint",
                "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn",
                Ok((
                    "https://acct.queue.core.chinacloudapi.cn",
                    key("acct", "a2V5"),
                )),
            ),
            (
                "names are case-insensitive and the suffix defaults to Azure public",
                "accountname=acct;ACCOUNTKEY=a2V5",
                Ok(("https://acct.queue.core.windows.net", key("acct", "a2V5"))),
            ),
            (
                "a trailing slash on the endpoint is dropped (else the SDK builds `//queue`)",
                "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1/;AccountName=a;AccountKey=a2V5",
                Ok(("http://127.0.0.1:10001/devstoreaccount1", key("a", "a2V5"))),
            ),
            (
                "a SAS connection string",
                "QueueEndpoint=https://acct.queue.core.windows.net;SharedAccessSignature=?sv=1&sig=x",
                Ok((
                    "https://acct.queue.core.windows.net",
                    ConnectionAuth::Sas(Secret::new("sv=1&sig=x".into())),
                )),
            ),
            (
                "an account SAS URL is used as is",
                "http://127.0.0.1:10001/devstoreaccount1?sv=2019-02-02&sig=abc%2B",
                Ok((
                    "http://127.0.0.1:10001/devstoreaccount1",
                    ConnectionAuth::Sas(Secret::new("sv=2019-02-02&sig=abc%2B".into())),
                )),
            ),
            (
                "a URL without a SAS is refused",
                "https://acct.queue.core.windows.net",
                Err("no SAS"),
            ),
            (
                "a URL whose query is not a SAS is refused",
                "https://acct.queue.core.windows.net/?a=b",
                Err("no sig="),
            ),
            (
                "a key needs an account",
                "QueueEndpoint=http://h/a;AccountKey=a2V5",
                Err("without AccountName"),
            ),
            (
                "no credential at all",
                "AccountName=acct",
                Err("neither AccountKey"),
            ),
            (
                "no endpoint at all",
                "AccountKey=a2V5",
                Err("neither QueueEndpoint"),
            ),
            ("garbage", "not a connection string", Err("without `=`")),
        ]
    }

    #[test]
    fn connection_strings_parse_to_an_endpoint_and_a_way_to_sign() {
        for (proves, raw, expected) in connection_cases() {
            let got = ConnectionString::parse(raw);
            match expected {
                Ok((endpoint, auth)) => {
                    assert_eq!(
                        got,
                        Ok(ConnectionString {
                            endpoint: endpoint.into(),
                            auth
                        }),
                        "{proves}"
                    );
                }
                Err(reason) => {
                    let err = got.expect_err(proves);
                    assert!(err.contains(reason), "{proves}: {err}");
                    assert!(
                        !err.contains("a2V5"),
                        "{proves}: a refusal must not quote the key"
                    );
                }
            }
        }
    }

    /// The vector was computed independently of this code:
    /// `printf 'devstoreaccount1\nrwdlacup\nq\nsco\n\n2099-01-01T00:00:00Z\n\n\n2019-02-02\n' |
    ///  openssl dgst -sha256 -mac HMAC -macopt hexkey:$(echo "$DEV_KEY" | base64 -d | xxd -p -c 256) -binary | base64`.
    #[test]
    fn the_account_sas_signature_matches_an_independent_computation() {
        let expiry = "2099-01-01T00:00:00Z";
        assert_eq!(
            account_sas_string_to_sign(DEV_ACCOUNT, expiry),
            "devstoreaccount1\nrwdlacup\nq\nsco\n\n2099-01-01T00:00:00Z\n\n\n2019-02-02\n"
        );
        let query = account_sas(DEV_ACCOUNT, &Secret::new(DEV_KEY.into()), expiry).expect("signs");
        let pairs: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.expose().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(pairs["sig"], KNOWN_SIGNATURE);
        assert_eq!(
            (
                pairs["sv"].as_str(),
                pairs["ss"].as_str(),
                pairs["srt"].as_str(),
                pairs["sp"].as_str(),
                pairs["se"].as_str()
            ),
            ("2019-02-02", "q", "sco", "rwdlacup", expiry)
        );
        assert!(
            query.expose().contains("se=2099-01-01T00%3A00%3A00Z"),
            "the query is form-encoded"
        );
    }

    const KNOWN_SIGNATURE: &str = "LIcNKGiTHmizayNKoLvGcan7ILVLZAdq8ba1M4rydsY=";

    #[test]
    fn a_key_that_is_not_base64_is_refused_without_quoting_it() {
        let err = account_sas("acct", &Secret::new("not base64!".into()), SAS_EXPIRY)
            .expect_err("refused");
        assert!(!err.contains("not base64!"));
    }
}

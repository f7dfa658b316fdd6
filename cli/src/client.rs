//! The MediFlow HTTP API as the command line uses it: submit a batch, read a batch report, read a
//! record, read a page of a site's records, review a record, read the audit trail (a page of it,
//! or one record's history). Transient answers (503, 429, a refused or dropped
//! connection) are retried a bounded number of times, honouring `Retry-After`; anything else is a
//! [`ApiError`] with a one-line reason.
//!
//! The API key never travels in clear text and never goes anywhere but the `--url` host: plain
//! `http://` is refused before any connection unless the host is a loopback one (`localhost`,
//! `127.0.0.0/8`, `::1`), and redirects are never followed (a 3xx is an error naming its
//! `Location`).

use std::net::IpAddr;
use std::time::Duration;

use mediflow_domain::{BatchReport, RecordPage};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Attempts per request while the service answers 503/429 (it is there, but busy or starting).
const ATTEMPTS: u32 = 8;
/// Attempts per request while nothing answers at all (a restart, or a wrong URL: fail soon).
const CONNECT_ATTEMPTS: u32 = 4;
/// The longest single wait between attempts (whatever `Retry-After` asks for).
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// One request, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call failed, in words for a person.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the service refused the API key (401): pass a valid key with --api-key-file or MEDIFLOW_API_KEY_FILE"
    )]
    Unauthorized,
    #[error("{what}: the service answered {status}: {detail}")]
    Refused {
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{what}: the service kept answering {status} after {ATTEMPTS} attempts: {detail}")]
    GaveUp {
        what: String,
        status: u16,
        detail: String,
    },
    #[error(
        "{what}: the service answered {status} redirecting to {location}; mediflow does not follow redirects (the API key would go along): pass the final address with --url"
    )]
    Redirected {
        what: String,
        status: u16,
        location: String,
    },
    #[error("{what}: unexpected answer from the service: {reason}")]
    BadAnswer { what: String, reason: String },
}

/// A page of `GET /audit`. Events stay JSON values: fields this version does not know are kept
/// and printed unchanged.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EventPage {
    pub events: Vec<Value>,
    pub continuation: Option<String>,
}

/// `GET /records/{id}/history`: every event naming the record, oldest first.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct History {
    pub record_id: String,
    pub events: Vec<Value>,
}

/// A reviewed record and its new `ETag`.
#[derive(Debug, Clone)]
pub struct Reviewed {
    pub record: Value,
    pub etag: Option<String>,
}

/// What the service finally answered to one request.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    body: bytes::Bytes,
}

/// A client of one MediFlow service.
#[derive(Debug, Clone)]
pub struct Api {
    base: Url,
    http: reqwest::Client,
    key: Option<String>,
}

impl Api {
    /// `base` is the service URL (`http://localhost:8080`, `https://<app>.azurewebsites.net/api`).
    pub fn new(base: &str, key: Option<String>) -> Result<Self, String> {
        let mut base = Url::parse(base).map_err(|e| format!("--url {base:?} is not a URL: {e}"))?;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&base) => {}
            "http" => {
                let host = base.host_str().unwrap_or_default();
                return Err(format!(
                    "refusing to send the API key and records over plain http:// to {host}: use --url https://{host}... (http:// is allowed only for localhost, 127.0.0.0/8 and ::1)"
                ));
            }
            other => {
                return Err(format!(
                    "--url must be https:// (or http:// to localhost), not {other}://"
                ));
            }
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("mediflow-cli/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))?;
        Ok(Self { base, http, key })
    }

    fn url(&self, path: &str) -> Url {
        // Paths here are fixed text plus UUIDs; joining cannot fail.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    /// Sends a request, retrying what is worth retrying; returns the final status and body.
    async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, ApiError> {
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            let mut request = build();
            if let Some(key) = &self.key {
                request = request.header("x-api-key", key);
            }
            let wait = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let location = response
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .map(|v| one_line(&String::from_utf8_lossy(v.as_bytes())));
                    let etag = response
                        .headers()
                        .get(reqwest::header::ETAG)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let body = response.bytes().await.map_err(|e| ApiError::Unreachable {
                        url: self.base.to_string(),
                        reason: format!("the answer was cut off ({e})"),
                    })?;
                    if status == StatusCode::UNAUTHORIZED {
                        return Err(ApiError::Unauthorized);
                    }
                    if status.is_redirection() {
                        return Err(ApiError::Redirected {
                            what: what.to_owned(),
                            status: status.as_u16(),
                            location: location.unwrap_or_else(|| "nowhere (no Location)".into()),
                        });
                    }
                    if status != StatusCode::SERVICE_UNAVAILABLE
                        && status != StatusCode::TOO_MANY_REQUESTS
                    {
                        return Ok(Answer { status, etag, body });
                    }
                    last = Some(ApiError::GaveUp {
                        what: what.to_owned(),
                        status: status.as_u16(),
                        detail: detail(&body),
                    });
                    retry_after.unwrap_or_else(|| backoff(attempt))
                }
                Err(err) => {
                    let unreachable = ApiError::Unreachable {
                        url: self.base.to_string(),
                        reason: describe(&err),
                    };
                    if attempt >= CONNECT_ATTEMPTS {
                        return Err(unreachable);
                    }
                    last = Some(unreachable);
                    backoff(attempt)
                }
            };
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
            }
        }
        Err(last.unwrap_or_else(|| ApiError::BadAnswer {
            what: what.to_owned(),
            reason: "no attempt was made".into(),
        }))
    }

    /// `POST /batches` with `body` (the message JSON): the batch's report, queued or completed.
    pub async fn submit_batch(&self, body: String) -> Result<BatchReport, ApiError> {
        let what = "POST /batches";
        let url = self.url("batches");
        let answer = self
            .send(what, || {
                self.http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        match answer.status {
            StatusCode::ACCEPTED | StatusCode::OK => parse(what, &answer.body),
            status => Err(refused(what, status, &answer.body)),
        }
    }

    /// `POST /records/{id}/review` with `{"status", "reason"}`, and `If-Match` when given.
    pub async fn review(
        &self,
        id: &str,
        status: &str,
        reason: &str,
        if_match: Option<&str>,
    ) -> Result<Reviewed, ApiError> {
        let what = format!("POST /records/{id}/review");
        let url = self.url(&format!("records/{}/review", encode(id)));
        let body = serde_json::json!({ "status": status, "reason": reason }).to_string();
        let answer = self
            .send(&what, || {
                let request = self
                    .http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                match if_match {
                    Some(etag) => request.header(reqwest::header::IF_MATCH, etag),
                    None => request,
                }
            })
            .await?;
        match answer.status {
            StatusCode::OK => Ok(Reviewed {
                record: parse(&what, &answer.body)?,
                etag: answer.etag,
            }),
            status => Err(refused(&what, status, &answer.body)),
        }
    }

    /// `GET /audit?...`: one page of the audit trail.
    pub async fn audit_page(&self, query: &[(&str, String)]) -> Result<EventPage, ApiError> {
        let what = "GET /audit";
        let mut url = self.url("audit");
        url.query_pairs_mut().extend_pairs(query);
        let answer = self.send(what, || self.http.get(url.clone())).await?;
        match answer.status {
            StatusCode::OK => parse(what, &answer.body),
            status => Err(refused(what, status, &answer.body)),
        }
    }

    /// `GET /records/{id}/history`; `None` when there is no such record (or it is not the
    /// caller's to see).
    pub async fn history(&self, id: &str) -> Result<Option<History>, ApiError> {
        let what = format!("GET /records/{id}/history");
        self.get_optional(&what, &format!("records/{}/history", encode(id)))
            .await
    }

    /// `GET /batches/{id}`; `None` when the service does not know the batch (yet).
    pub async fn batch(&self, id: &str) -> Result<Option<BatchReport>, ApiError> {
        let what = format!("GET /batches/{id}");
        self.get_optional(&what, &format!("batches/{}", encode(id)))
            .await
    }

    /// `GET /records/{id}`; `None` when there is no such record.
    pub async fn record(&self, id: &str) -> Result<Option<Value>, ApiError> {
        let what = format!("GET /records/{id}");
        self.get_optional(&what, &format!("records/{}", encode(id)))
            .await
    }

    /// `GET /records?site_id=...`: one page.
    pub async fn list_page(&self, query: &[(&str, String)]) -> Result<RecordPage, ApiError> {
        let what = "GET /records";
        let mut url = self.url("records");
        url.query_pairs_mut().extend_pairs(query);
        let answer = self.send(what, || self.http.get(url.clone())).await?;
        match answer.status {
            StatusCode::OK => parse(what, &answer.body),
            status => Err(refused(what, status, &answer.body)),
        }
    }

    async fn get_optional<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
    ) -> Result<Option<T>, ApiError> {
        let url = self.url(path);
        let answer = self.send(what, || self.http.get(url.clone())).await?;
        match answer.status {
            StatusCode::OK => parse(what, &answer.body).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(refused(what, status, &answer.body)),
        }
    }
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2_u64.pow(attempt.min(7)))
}

fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadAnswer {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn refused(what: &str, status: StatusCode, body: &[u8]) -> ApiError {
    ApiError::Refused {
        what: what.to_owned(),
        status: status.as_u16(),
        detail: detail(body),
    }
}

/// The `detail` of an error body, on one line and short.
fn detail(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut object)) => match object.remove("detail") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => Value::Object(object).to_string(),
        },
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    one_line(&text)
}

/// `text` on one line, at most 300 characters.
fn one_line(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

/// Whether `url`'s host is this machine's loopback: `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "connection refused or no route".into()
    } else {
        let mut reason = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_unless_the_host_is_loopback() {
        let cases = [
            ("https anywhere", "https://mediflow.example.org/api", true),
            ("http to localhost", "http://localhost:8080", true),
            ("localhost in any case", "http://LocalHost:8080", true),
            ("all of 127.0.0.0/8", "http://127.3.4.5:8080", true),
            ("IPv6 loopback", "http://[::1]:8080", true),
            ("http to a name", "http://example.invalid", false),
            ("http to a private address", "http://10.255.255.1", false),
            (
                "a name that only starts like localhost",
                "http://localhost.example.org",
                false,
            ),
            (
                "a name that only starts like 127",
                "http://127.0.0.1.nip.io",
                false,
            ),
            (
                "a subdomain of localhost (resolver-dependent)",
                "http://a.localhost",
                false,
            ),
            ("IPv6 unspecified", "http://[::]:8080", false),
            ("0.0.0.0", "http://0.0.0.0:8080", false),
            ("other schemes", "ftp://localhost/", false),
        ];
        for (what, url, allowed) in cases {
            let result = Api::new(url, Some("k".into()));
            assert_eq!(result.is_ok(), allowed, "{what}: {url}: {:?}", result.err());
            if let Err(reason) = result {
                assert!(
                    !reason.contains('\n') && reason.contains("https://"),
                    "{what}: {reason}"
                );
            }
        }
    }
}

//! Admission control: how much work the service takes on at once, and what it answers beyond that.
//!
//! Three budgets, each checked before a data request's body is read, each refused at once (load
//! shedding, never an unbounded wait):
//! - requests held (`extensions.http.maxOutstandingRequests` of host.json): beyond it `429` with
//!   `Retry-After`, as the Functions host answers;
//! - requests executing (`extensions.http.maxConcurrentRequests`): the others wait their turn,
//!   which the outstanding limit bounds;
//! - request-body bytes held in memory ([`crate::config::Config::body_budget_bytes`]): a body
//!   reserves its declared length (the route limit when undeclared); beyond it `503` with
//!   `Retry-After`.
//!
//! The same host.json drives both hosts (the Functions host applies the same two limits in front
//! of the handler). App settings `AzureFunctionsJobHost__extensions__http__<setting>` override
//! host.json, as under the Functions host. Health, readiness, metrics and the host's ping are
//! never shed. Admitted requests also wait here (bounded) for the store to open, so none fails
//! while the service starts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::AppState;
use super::error::ApiError;
use super::extract::MAX_BODY_BYTES;

pub use crate::config::HTTP_OVERRIDE_PREFIX;

/// The longest a request waits for the store to open before it answers 503 (well inside the
/// request timeout, and inside the Functions host's 30 s start-up wait).
pub const STARTUP_WAIT: Duration = Duration::from_secs(20);

/// What a refused client is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The limits, from host.json and the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `maxConcurrentRequests`; `None` (host.json `-1` or absent): unbounded.
    pub max_concurrent: Option<usize>,
    /// `maxOutstandingRequests`; `None`: unbounded.
    pub max_outstanding: Option<usize>,
    /// Request-body bytes held in memory at once.
    pub body_budget_bytes: usize,
}

/// A limit that cannot be read (host.json or an app setting).
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct LimitsError {
    setting: String,
    reason: String,
}

impl Limits {
    /// Reads `extensions.http` of `host_json`, then applies `overrides` (`(setting, value)`, the
    /// setting without [`HTTP_OVERRIDE_PREFIX`]). Settings other than the two limits are the
    /// Functions host's alone and are ignored here.
    pub fn from_host_json(
        host_json: &str,
        overrides: &[(String, String)],
        body_budget_bytes: usize,
    ) -> Result<Self, LimitsError> {
        let host: serde_json::Value = serde_json::from_str(host_json).map_err(|e| LimitsError {
            setting: "host.json".into(),
            reason: e.to_string(),
        })?;
        let http = &host["extensions"]["http"];
        let mut limits = Self {
            max_concurrent: None,
            max_outstanding: None,
            body_budget_bytes,
        };
        for (name, slot) in [
            ("maxConcurrentRequests", &mut limits.max_concurrent),
            ("maxOutstandingRequests", &mut limits.max_outstanding),
        ] {
            let overridden = overrides
                .iter()
                .find(|(setting, _)| setting.eq_ignore_ascii_case(name));
            let (setting, raw) = match overridden {
                Some((_, value)) => (format!("{HTTP_OVERRIDE_PREFIX}{name}"), value.clone()),
                None => match &http[name] {
                    serde_json::Value::Null => continue,
                    value => (
                        format!("host.json extensions.http.{name}"),
                        value.to_string(),
                    ),
                },
            };
            *slot = limit(&raw).map_err(|reason| LimitsError { setting, reason })?;
        }
        Ok(limits)
    }
}

/// `-1` is unbounded (`None`), as in host.json; otherwise a positive count.
fn limit(raw: &str) -> Result<Option<usize>, String> {
    let refused = || format!("{raw:?} is neither -1 (unbounded) nor a positive integer");
    match raw.trim().parse::<i64>().map_err(|_| refused())? {
        -1 => Ok(None),
        n if n > 0 => usize::try_from(n).map(Some).map_err(|_| refused()),
        _ => Err(refused()),
    }
}

/// The budgets, shared by every request.
#[derive(Debug, Clone)]
pub struct Admission {
    outstanding: Option<Arc<Semaphore>>,
    concurrent: Option<Arc<Semaphore>>,
    body_bytes: Arc<Semaphore>,
    limits: Limits,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Self {
            outstanding: limits.max_outstanding.map(|n| Arc::new(Semaphore::new(n))),
            concurrent: limits.max_concurrent.map(|n| Arc::new(Semaphore::new(n))),
            body_bytes: Arc::new(Semaphore::new(
                limits.body_budget_bytes.min(Semaphore::MAX_PERMITS),
            )),
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// What one admitted request holds until it is answered.
struct Admitted {
    _outstanding: Option<tokio::sync::OwnedSemaphorePermit>,
    _concurrent: Option<tokio::sync::OwnedSemaphorePermit>,
    _body: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Why a request was not admitted.
enum Refused {
    /// 429: more requests held than `maxOutstandingRequests`.
    TooManyRequests,
    /// 503: the body-bytes budget is spent, or the store did not open in time.
    Unavailable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::TooManyRequests => ApiError::TooManyRequests {
                retry_after: RETRY_AFTER,
            },
            Self::Unavailable => ApiError::Unavailable {
                retry_after: RETRY_AFTER,
            },
        }
        .into_response()
    }
}

/// The bytes a request's body will hold: its declared length, or the route limit when the length
/// is not declared (chunked). A declared length over the limit is refused by the extractor
/// without being read, so it reserves the limit only.
fn body_reservation(request: &Request) -> usize {
    let hint = request.body().size_hint();
    let declared = hint
        .upper()
        .and_then(|upper| usize::try_from(upper).ok())
        .unwrap_or(MAX_BODY_BYTES);
    declared.min(MAX_BODY_BYTES)
}

async fn admit(admission: &Admission, body_bytes: usize) -> Result<Admitted, Refused> {
    let outstanding = match &admission.outstanding {
        Some(limit) => Some(
            Arc::clone(limit)
                .try_acquire_owned()
                .map_err(|_| Refused::TooManyRequests)?,
        ),
        None => None,
    };
    let body = match u32::try_from(body_bytes) {
        Ok(0) => None,
        Ok(n) => Some(
            Arc::clone(&admission.body_bytes)
                .try_acquire_many_owned(n)
                .map_err(|_| Refused::Unavailable)?,
        ),
        Err(_) => return Err(Refused::Unavailable),
    };
    // Waiting here is bounded: at most `maxOutstandingRequests` wait, within the request timeout.
    let concurrent = match &admission.concurrent {
        Some(limit) => Some(
            Arc::clone(limit)
                .acquire_owned()
                .await
                .map_err(|_| Refused::Unavailable)?,
        ),
        None => None,
    };
    Ok(Admitted {
        _outstanding: outstanding,
        _concurrent: concurrent,
        _body: body,
    })
}

/// The middleware on every data route and invocation: admits the request or refuses it at once,
/// then waits (at most [`STARTUP_WAIT`]) for the store to open.
pub async fn admission(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let admitted = match admit(&state.admission, body_reservation(&request)).await {
        Ok(admitted) => admitted,
        Err(refused) => {
            state.metrics.count_shed(match refused {
                Refused::TooManyRequests => "outstanding",
                Refused::Unavailable => "body_bytes",
            });
            return refuse_after_discarding_body(request, refused).await;
        }
    };
    if !state.store.opened(STARTUP_WAIT).await {
        return Refused::Unavailable.into_response();
    }
    let response = next.run(request).await;
    drop(admitted);
    response
}

/// The longest a refused request's body is read (and thrown away) before the answer.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers a refused request. Its body is read and thrown away chunk by chunk first (at most
/// [`MAX_BODY_BYTES`], at most [`DISCARD_TIMEOUT`]; nothing is held): a client still sending
/// when the connection closed would lose the answer to a reset. When the body is larger or
/// slower, the answer closes the connection.
async fn refuse_after_discarding_body(request: Request, refused: Refused) -> Response {
    use http_body_util::BodyExt as _;
    let mut body = request.into_body();
    let discard = async {
        let mut read = 0_usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            read += frame.data_ref().map_or(0, bytes::Buf::remaining);
            if read > MAX_BODY_BYTES {
                return false;
            }
        }
        true
    };
    let drained = tokio::time::timeout(DISCARD_TIMEOUT, discard)
        .await
        .unwrap_or(false);
    let mut response = refused.into_response();
    if !drained {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 1024;

    fn overrides(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn limits_come_from_host_json_and_app_settings_win() {
        let host =
            r#"{"extensions":{"http":{"maxConcurrentRequests":8,"maxOutstandingRequests":-1}}}"#;
        for (settings, concurrent, outstanding, what) in [
            (
                vec![],
                Some(8),
                None,
                "host.json as written; -1 is unbounded",
            ),
            (
                vec![("maxOutstandingRequests", "32")],
                Some(8),
                Some(32),
                "an app setting overrides host.json",
            ),
            (
                vec![("MAXCONCURRENTREQUESTS", "-1")],
                None,
                None,
                "setting names are case-insensitive, as in the Functions host",
            ),
        ] {
            let limits = Limits::from_host_json(host, &overrides(&settings), BUDGET).expect(what);
            assert_eq!(
                (limits.max_concurrent, limits.max_outstanding),
                (concurrent, outstanding),
                "{what}"
            );
        }
        let absent = Limits::from_host_json("{}", &[], BUDGET).expect("no http section");
        assert_eq!(
            (absent.max_concurrent, absent.max_outstanding),
            (None, None)
        );
    }

    #[test]
    fn unusable_limits_are_refused_with_the_setting_named() {
        for (host, settings, named) in [
            (
                r#"{"extensions":{"http":{"maxConcurrentRequests":0}}}"#,
                vec![],
                "extensions.http.maxConcurrentRequests",
            ),
            (
                "{}",
                vec![("maxOutstandingRequests", "many")],
                "AzureFunctionsJobHost__extensions__http__maxOutstandingRequests",
            ),
        ] {
            let err = Limits::from_host_json(host, &overrides(&settings), BUDGET).expect_err(named);
            assert!(err.to_string().contains(named), "{err}");
        }
    }

    #[test]
    fn the_embedded_host_json_bounds_both_counts() {
        let limits = Limits::from_host_json(crate::definitions::host_json(), &[], BUDGET)
            .expect("embedded host.json");
        assert!(limits.max_concurrent.is_some() && limits.max_outstanding.is_some());
        assert!(limits.max_outstanding >= limits.max_concurrent);
    }

    #[tokio::test]
    async fn beyond_the_budgets_requests_are_refused_at_once() {
        let admission = Admission::new(Limits {
            max_concurrent: Some(1),
            max_outstanding: Some(2),
            body_budget_bytes: BUDGET,
        });
        let first = admit(&admission, 600).await.ok().expect("first admitted");
        assert!(
            matches!(admit(&admission, 600).await, Err(Refused::Unavailable)),
            "600 + 600 bytes exceed the 1024-byte budget"
        );
        // The second request is held (outstanding 2) but waits for the one execution slot.
        let second = tokio::spawn({
            let admission = admission.clone();
            async move { admit(&admission, 10).await.is_ok() }
        });
        while admission
            .outstanding
            .as_ref()
            .expect("bounded")
            .available_permits()
            > 0
        {
            tokio::task::yield_now().await;
        }
        assert!(
            matches!(admit(&admission, 0).await, Err(Refused::TooManyRequests)),
            "a third request exceeds maxOutstandingRequests"
        );
        assert!(!second.is_finished(), "the second waits for a slot");
        drop(first);
        assert!(
            second.await.expect("task"),
            "the second runs once the first is done"
        );
        assert_eq!(
            admission.body_bytes.available_permits(),
            BUDGET,
            "every byte is given back"
        );
    }
}

//! Who did what: the calling context every use case gets ([`Call`]), the bounded buffer that
//! writes read and refusal events off the response path ([`AuditLog`]), reading the trail
//! (GET /audit, GET /records/{id}/history) and verifying its hash chain (`handler audit verify`).
//!
//! Creates and reviews are not buffered: their events are written by the store with the data
//! (docs/adr/0010). Reads, listings and refusals are buffered at most [`AuditLog::CAPACITY`] deep
//! and written within [`AuditLog::MAX_DELAY`]; a full buffer refuses the request (503 +
//! Retry-After) rather than drop an event.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{ServiceError, StoreHandle};
use crate::domain::audit::{AuditCursor, AuditQuery, BrokenChain, ChainCheck, time_bound};
use crate::domain::identity::{Denied, Role};
use crate::domain::{AuditAction, AuditDraft, AuditEvent, FieldError, Principal, RecordId};
use crate::metrics::Metrics;
use crate::store::RecordStore;

/// What a use case knows of its call: who, which request, where events go.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub caller: &'a Principal,
    pub request_id: Option<&'a str>,
    pub audit: &'a AuditLog,
}

impl Call<'_> {
    /// A draft of this call's event.
    pub fn draft(&self, action: AuditAction, outcome: &str) -> AuditDraft {
        AuditDraft::new(self.caller.client.as_str(), action, outcome).request(self.request_id)
    }

    /// Buffers a read-side event ([`AuditLog::record`]).
    pub fn record(&self, draft: AuditDraft) -> Result<(), ServiceError> {
        self.audit.record(draft)
    }

    /// [`Principal::require`], auditing a refusal.
    pub fn require(&self, role: Role, action: AuditAction) -> Result<(), ServiceError> {
        self.caller
            .require(role)
            .map_err(|denied| self.refuse(denied, action, Vec::new()))
    }

    /// The 403 for `denied`, with its refusal event buffered (a full buffer turns it into a 503).
    pub fn refuse(&self, denied: Denied, action: AuditAction, ids: Vec<RecordId>) -> ServiceError {
        let mut draft = self.draft(AuditAction::Refused, "403").records(ids);
        draft.reason = Some(format!("{action:?}: {denied}"));
        match self.record(draft) {
            Ok(()) => ServiceError::Forbidden(denied),
            Err(err) => err,
        }
    }
}

/// The read-side events waiting to be written, and the task that writes them.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<AuditDraft>,
    gauge: Option<prometheus_client::metrics::gauge::Gauge>,
}

impl AuditLog {
    /// Events waiting at most; one more is refused (503).
    pub const CAPACITY: usize = 4096;
    /// Events written together at most.
    const GROUP: usize = 512;
    /// How long a written event may wait (the writer starts at once; a store outage can hold it
    /// longer, then the buffer fills and requests are refused).
    pub const MAX_DELAY: Duration = Duration::from_secs(1);

    /// Starts the writer task over `store` (it waits until the store is open).
    pub fn start(store: StoreHandle, metrics: Arc<Metrics>) -> Self {
        let (queue, mut waiting) = mpsc::channel::<AuditDraft>(Self::CAPACITY);
        let gauge = metrics.audit_buffer_events.clone();
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(Self::GROUP);
            while waiting.recv_many(&mut group, Self::GROUP).await > 0 {
                let mut pause = Duration::from_millis(50);
                loop {
                    let attempt = match store.get() {
                        Ok(store) => store
                            .append_audit(group.clone())
                            .await
                            .map_err(|e| e.to_string()),
                        Err(err) => Err(err.to_string()),
                    };
                    match attempt {
                        Ok(()) => break,
                        Err(reason) => {
                            metrics.audit_write_failures.inc();
                            // Never dropped: the buffer fills while this waits, and requests get 503.
                            tracing::warn!(%reason, events = group.len(), "audit events not written yet; retrying");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(2));
                        }
                    }
                }
                metrics.audit_events_written.inc_by(group.len() as u64);
                group.clear();
                metrics
                    .audit_buffer_events
                    .set(i64::try_from(waiting.len()).unwrap_or(i64::MAX));
            }
        });
        Self {
            queue,
            gauge: Some(gauge),
        }
    }

    /// A log that drops what it is given: for tests of other things than auditing (the store
    /// contract suite calls use cases with it). Never used by the service.
    #[doc(hidden)]
    pub fn discarding() -> Self {
        let (queue, mut waiting) = mpsc::channel::<AuditDraft>(Self::CAPACITY);
        tokio::spawn(async move { while waiting.recv().await.is_some() {} });
        Self { queue, gauge: None }
    }

    /// Buffers `draft`; a full buffer is [`ServiceError::AuditBacklog`].
    pub fn record(&self, draft: AuditDraft) -> Result<(), ServiceError> {
        self.queue
            .try_send(draft)
            .map_err(|_| ServiceError::AuditBacklog {
                retry_after: Duration::from_secs(1),
            })?;
        if let Some(gauge) = &self.gauge {
            gauge.set(i64::try_from(self.waiting()).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    /// Events waiting to be written (a metric; the writer stalls when this stays high).
    pub fn waiting(&self) -> usize {
        Self::CAPACITY - self.queue.capacity()
    }
}

/// A page of events and the token of the next page.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub continuation: Option<String>,
}

/// A record's events, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub record_id: RecordId,
    pub events: Vec<AuditEvent>,
}

use crate::domain::audit::{DEFAULT_PAGE_EVENTS as DEFAULT_LIMIT, MAX_PAGE_EVENTS as MAX_LIMIT};

/// GET /audit?from=&to=&client=&record_id=&limit=&continuation=
pub async fn page(
    store: &dyn RecordStore,
    call: Call<'_>,
    params: &[(String, String)],
) -> Result<AuditPage, ServiceError> {
    call.require(Role::Audit, AuditAction::ReadAudit)?;
    let (query, limit) = parse_query(params)?;
    if let Some(record_id) = query.record_id {
        // An auditor of some sites sees only those sites' records.
        if !visible(store, call.caller, record_id).await? {
            return Ok(AuditPage {
                events: Vec::new(),
                continuation: None,
            });
        }
    }
    let mut events = store.audit_page(&query, limit + 1).await?;
    let continuation = if events.len() > limit {
        events.truncate(limit);
        events
            .last()
            .map(|last| encode_cursor(&AuditCursor::of(last)))
    } else {
        None
    };
    if !matches!(call.caller.sites, crate::domain::identity::Sites::All) {
        // Events name records by id only; an auditor limited to sites gets the events of its sites'
        // records and the events naming no record of another site.
        // One lookup per record the page names, however many of its events name it.
        let mut seen: std::collections::HashMap<RecordId, bool> = std::collections::HashMap::new();
        let mut kept = Vec::with_capacity(events.len());
        for event in events {
            let mut all_visible = true;
            for id in &event.draft.record_ids {
                let shown = if let Some(shown) = seen.get(id) {
                    *shown
                } else {
                    let shown = visible(store, call.caller, *id).await?;
                    seen.insert(*id, shown);
                    shown
                };
                all_visible &= shown;
            }
            if all_visible {
                kept.push(event);
            }
        }
        events = kept;
    }
    call.record(call.draft(AuditAction::ReadAudit, "ok"))?;
    Ok(AuditPage {
        events,
        continuation,
    })
}

/// GET /records/{id}/history: every event naming the record, oldest first (at most
/// [`MAX_HISTORY`]; beyond it, GET /audit?record_id= pages).
pub async fn history(
    store: &dyn RecordStore,
    call: Call<'_>,
    raw_id: &str,
) -> Result<History, ServiceError> {
    call.require(Role::Audit, AuditAction::ReadAudit)?;
    let id = RecordId::parse(raw_id).ok_or(ServiceError::RecordNotFound)?;
    if !visible(store, call.caller, id).await? {
        return Err(ServiceError::RecordNotFound);
    }
    let query = AuditQuery {
        record_id: Some(id),
        ..AuditQuery::default()
    };
    let events = store.audit_page(&query, MAX_HISTORY).await?;
    call.record(call.draft(AuditAction::ReadAudit, "ok").records([id]))?;
    Ok(History {
        record_id: id,
        events,
    })
}

/// The most events GET /records/{id}/history returns.
pub const MAX_HISTORY: usize = 1000;

/// Whether `id` is a stored record of a site `caller` holds.
async fn visible(
    store: &dyn RecordStore,
    caller: &Principal,
    id: RecordId,
) -> Result<bool, ServiceError> {
    Ok(store
        .get(id)
        .await?
        .is_some_and(|record| caller.holds_site(&record.fields.site_id)))
}

/// What `handler audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    /// Each chain and its last seq.
    pub chains: Vec<(String, u64)>,
}

/// Walks every chain from its first event and checks every link; the first broken event is the
/// error. Reads in pages of 1,000 (memory stays bounded whatever the trail's length).
pub async fn verify(
    store: &dyn RecordStore,
) -> Result<Result<Verified, BrokenChain>, ServiceError> {
    let mut check = ChainCheck::default();
    let mut after: Option<AuditCursor> = None;
    loop {
        let page = store.audit_chain(after.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        let next = AuditCursor::of(last);
        for event in &page {
            if let Err(broken) = check.check(event) {
                return Ok(Err(broken));
            }
        }
        after = Some(next);
    }
    Ok(Ok(Verified {
        events: check.events,
        chains: check.chains(),
    }))
}

/// How often the service checks the audit chains it has not checked yet.
pub const CHAIN_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Every this many checks the walk starts again from the first event (a Cosmos chain that sorts
/// before the last checked one may have grown meanwhile; the embedded store's one chain never does).
const FULL_CHECK_EVERY: u32 = 60;

/// The service's own watch over the trail: every [`CHAIN_CHECK_INTERVAL`] it verifies the events
/// written since its last check, and publishes `mediflow_audit_chain_intact` and
/// `mediflow_audit_chain_verified_events` (an alert fires on a broken chain). A break is logged
/// once with the event it names; `handler audit verify` gives the same answer on demand.
pub fn watch_chain(store: StoreHandle, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut check = ChainCheck::default();
        let mut after: Option<AuditCursor> = None;
        let mut passes = 0_u32;
        let mut reported = false;
        loop {
            tokio::time::sleep(CHAIN_CHECK_INTERVAL).await;
            let Ok(store) = store.get() else { continue };
            passes += 1;
            if passes.is_multiple_of(FULL_CHECK_EVERY) {
                check = ChainCheck::default();
                after = None;
            }
            match check_more(store.as_ref(), &mut check, &mut after).await {
                Ok(Ok(())) => {
                    metrics.audit_chain_intact.set(1);
                    metrics
                        .audit_chain_verified_events
                        .set(i64::try_from(check.events).unwrap_or(i64::MAX));
                }
                Ok(Err(broken)) => {
                    metrics.audit_chain_intact.set(0);
                    if !reported {
                        tracing::error!(chain = %broken.chain, seq = broken.seq, problem = %broken.problem,
                            "the audit trail is broken: run `handler audit verify`");
                        reported = true;
                    }
                    // Keep reporting the break; start over at the next full check.
                    after = None;
                    check = ChainCheck::default();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the audit chain check could not read the trail");
                }
            }
        }
    })
}

/// Verifies the events after `after`, in pages, moving `after` on.
async fn check_more(
    store: &dyn RecordStore,
    check: &mut ChainCheck,
    after: &mut Option<AuditCursor>,
) -> Result<Result<(), BrokenChain>, ServiceError> {
    loop {
        let page = store.audit_chain(after.as_ref(), 1000).await?;
        let Some(last) = page.last() else {
            return Ok(Ok(()));
        };
        let next = AuditCursor::of(last);
        for event in &page {
            if let Err(broken) = check.check(event) {
                return Ok(Err(broken));
            }
        }
        *after = Some(next);
    }
}

fn encode_cursor(cursor: &AuditCursor) -> String {
    B64.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode_cursor(raw: &str) -> Option<AuditCursor> {
    serde_json::from_slice(&B64.decode(raw).ok()?).ok()
}

/// The parameters of GET /audit (decoded): every problem listed, unknown parameters refused.
fn parse_query(params: &[(String, String)]) -> Result<(AuditQuery, usize), ServiceError> {
    let mut query = AuditQuery::default();
    let mut limit = DEFAULT_LIMIT;
    let mut errors = Vec::new();
    let bad = |name: &str, msg: &str| FieldError::query(name, "value_error", msg);
    for (name, value) in params {
        match name.as_str() {
            "from" => match time_bound(value, false) {
                Some(t) => query.from = Some(t),
                None => errors.push(bad(
                    "from",
                    "from must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.ffffff]Z (UTC)",
                )),
            },
            "to" => match time_bound(value, true) {
                Some(t) => query.to = Some(t),
                None => errors.push(bad(
                    "to",
                    "to must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.ffffff]Z (UTC)",
                )),
            },
            "client" => match crate::domain::ClientId::parse(value) {
                Ok(client) => query.client = Some(client.to_string()),
                Err(msg) => errors.push(bad("client", &msg)),
            },
            "record_id" => match RecordId::parse(value) {
                Some(id) => query.record_id = Some(id),
                None => errors.push(bad("record_id", "record_id must be a record id (a UUID)")),
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => errors.push(bad("limit", "limit must be an integer from 1 to 1000")),
            },
            "continuation" => match decode_cursor(value) {
                Some(cursor) => query.after = Some(cursor),
                None => errors.push(bad(
                    "continuation",
                    "continuation must be a token from a previous page, unchanged",
                )),
            },
            other => errors.push(FieldError::query(
                other,
                "extra_forbidden",
                "Unknown query parameter",
            )),
        }
    }
    if errors.is_empty() {
        Ok((query, limit))
    } else {
        Err(ServiceError::Invalid(errors))
    }
}

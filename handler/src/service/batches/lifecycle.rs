//! The life of one batch queue message, in either host: decoded and attributed, attempted,
//! judged, and its batch marked `failed` when it goes to the poison queue. The standalone queue
//! trigger and the Functions host's `ingest_batch` invocation hand each delivery to
//! [`Lifecycle::handle`] and carry out the [`Verdict`] it returns with their own mechanics
//! (queue calls and leases; the invocation's status code). Every outcome is decided by [`decide`],
//! worded by [`failure_text`], logged and counted here, once.
//!
//! The rule, the same in both hosts (docs/adr/0011-one-home-for-the-batch-lifecycle.md):
//! - a message is deleted only when its batch is ingested (or was before: a redelivery);
//! - every failed attempt counts toward `maxDequeueCount`, including a message that cannot
//!   succeed as it stands (undecodable, unattributed, a `batch_id` reused for different records):
//!   an unattributed message may be one whose client the key table has not loaded yet, and the
//!   Functions host cannot poison without counting; the attempt with `DequeueCount >=
//!   maxDequeueCount` poisons it;
//! - a message received with `DequeueCount > maxDequeueCount` (an earlier holder died with it)
//!   is poisoned unprocessed, as azure-webjobs-sdk's `QueueProcessor` does;
//! - a store outage is not the message's fault: standalone puts a fresh copy back uncounted
//!   ([`Verdict::Requeue`], [`OutageRule::Requeue`]); under the Functions host, which cannot, the
//!   attempt waits for the store first ([`OutageRule::RideOut`]);
//! - a poisoned batch says `failed` and why ([`FailedMarks`]).
//!
//! Logs carry the message id, dequeue count and batch id, never the message content.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::FailedMarks;
use crate::auth::Clients;
use crate::domain::{BatchId, BatchMessage, BatchReport};
use crate::metrics::Metrics;
use crate::service::{ServiceError, StoreHandle};
use crate::store::{StoreError, StoreHealth};

/// A queue message's text → its JSON bytes: base64 of the JSON when `base64` (host.json
/// `messageEncoding`, the Functions default), and plain JSON text always (a producer that did not
/// encode).
pub fn message_json(text: &str, base64: bool) -> Result<Cow<'_, [u8]>, &'static str> {
    let text = text.trim();
    if text.starts_with('{') {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    if base64 && let Ok(bytes) = B64.decode(text) {
        return Ok(Cow::Owned(bytes));
    }
    Err("neither base64 nor JSON")
}

/// A queue message's text → batch message, attributed to the client that proves it sent it
/// ([`message_json`], then [`Clients::attribute`]: a signed envelope, or a plain message where the
/// deployment accepts those, then the envelope rules). `Err` names what is wrong by error kind and
/// field only: never the content. An unattributable message is refused, never stored anonymously.
pub fn decode_message(text: &str, base64: bool, clients: &Clients) -> Result<BatchMessage, String> {
    let bytes = message_json(text, base64)?;
    let (submitter, payload) = clients
        .attribute(&bytes)
        .map_err(|refused| format!("unattributed: {refused}"))?;
    let mut message = BatchMessage::from_slice(&payload).map_err(|errors| {
        let kinds: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{}{}",
                    e.kind,
                    e.field().map(|f| format!(" ({f})")).unwrap_or_default()
                )
            })
            .collect();
        kinds.join(", ")
    })?;
    message.submitter = (*submitter).clone();
    Ok(message)
}

/// The text a batch message is queued as: the plain message for the legacy and anonymous callers
/// (as today), the signed envelope of its client for a client of the table (so the queue trigger
/// can attribute it).
pub fn queued_text(message: &BatchMessage, clients: &Clients) -> Result<String, ServiceError> {
    let json = message.to_json();
    if message.submitter.id_scope().is_none() {
        return Ok(json);
    }
    clients
        .signing_key(&message.submitter)
        .map(|key| key.sign(&json))
        .ok_or_else(|| {
            ServiceError::Internal(format!(
                "client {} has no signing key (removed from the table?)",
                message.submitter.client
            ))
        })
}

/// What became of a queue message (the `outcome` label of `mediflow_queue_messages_total`), in
/// either host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Ingested (or found ingested before): deleted.
    Completed,
    /// Failed; it will be received again.
    Retried,
    /// Moved to the poison queue after its last attempt failed (or unprocessed, after a consumer
    /// died with it on its last attempt).
    Poisoned,
    /// Moved to the poison queue, and it could never have succeeded as it stands (undecodable,
    /// unattributed, or a conflicting `batch_id`).
    Invalid,
}

impl MessageOutcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Retried => "retried",
            Self::Poisoned => "poisoned",
            Self::Invalid => "invalid",
        }
    }
}

/// What the host must do with the message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ingested: delete it (the Functions host deletes it when the invocation succeeds).
    Delete,
    /// Failed, counted: received again after `visibilityTimeout`.
    Retry,
    /// Failed because the store was down, not counted: a fresh copy back on the queue (standalone
    /// only; [`OutageRule::Requeue`]).
    Requeue,
    /// Move it to `<queue>-poison` (the Functions host does so itself after the invocation fails).
    Poison,
}

/// Why an attempt did not ingest the batch.
#[derive(Debug)]
pub enum Failure {
    /// Not a batch message, or not attributable to a client (the reason names kinds, never content).
    Undecodable(String),
    /// The `batch_id` is registered for different records.
    Conflict,
    /// The store failed (transiently, or an internal error).
    Store(ServiceError),
    /// The store is down (standalone: the attempt is not counted).
    Outage(ServiceError),
    /// Received with `DequeueCount > maxDequeueCount`: an earlier holder died with it.
    Abandoned,
    /// Found in the poison queue by `handler redrive --mark-failed`, which cannot know why.
    FoundPoisoned,
}

impl Failure {
    /// What went wrong, for operators (logs, the Functions invocation's `Logs`): a store error's
    /// text may be named here, never in a batch's `failure` ([`failure_text`]).
    fn why(&self) -> String {
        match self {
            Self::Undecodable(reason) => format!("undecodable batch message: {reason}"),
            Self::Conflict => "batch_id was already used for different records".to_owned(),
            Self::Store(err) | Self::Outage(err) => format!("batch not ingested: {err}"),
            Self::Abandoned => "abandoned by an earlier consumer".to_owned(),
            Self::FoundPoisoned => "found in the poison queue".to_owned(),
        }
    }

    /// Whether the message could never succeed as it stands.
    fn is_invalid(&self) -> bool {
        matches!(self, Self::Undecodable(_) | Self::Conflict)
    }
}

/// The decision, pure: how an attempt failed (`None`: the batch is ingested), the message's
/// dequeue count and `maxDequeueCount` → what to do with the message.
pub fn decide(failure: Option<&Failure>, dequeue_count: u32, max_dequeue_count: u32) -> Verdict {
    match failure {
        None => Verdict::Delete,
        Some(Failure::Outage(_)) => Verdict::Requeue,
        Some(Failure::Abandoned) => Verdict::Poison,
        Some(_) if dequeue_count >= max_dequeue_count => Verdict::Poison,
        Some(_) => Verdict::Retry,
    }
}

/// Whether a message received with this dequeue count is poisoned unprocessed.
pub fn abandoned_on_arrival(dequeue_count: u32, max_dequeue_count: u32) -> bool {
    dequeue_count > max_dequeue_count
}

/// What a poisoned batch's `failure` says (shown to its submitter: kinds, never store error
/// texts). `dequeue_count` is unknown for `handler redrive --mark-failed`.
pub fn failure_text(failure: &Failure, dequeue_count: Option<u32>, poison_queue: &str) -> String {
    let attempts = |n: Option<u32>| n.map(|n| format!(" {n} times")).unwrap_or_default();
    let why = match failure {
        Failure::Undecodable(_) => "the message is not a batch message".to_owned(),
        Failure::Conflict => "batch_id was already used for different records".to_owned(),
        Failure::Abandoned => format!(
            "ingestion was abandoned{} (the consumer stopped)",
            attempts(dequeue_count.map(|n| n.saturating_sub(1)))
        ),
        Failure::FoundPoisoned => "ingestion failed".to_owned(),
        Failure::Store(err) | Failure::Outage(err) => format!(
            "ingestion failed{} ({})",
            attempts(dequeue_count),
            if err.is_transient() {
                "the store was unavailable"
            } else {
                "an internal error"
            }
        ),
    };
    format!("{why}; the message is in {poison_queue}")
}

/// What an attempt does when the store is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageRule {
    /// Standalone: the attempt ends at once with [`Verdict::Requeue`] (uncounted); the trigger
    /// stops receiving until the store answers.
    Requeue,
    /// Under the Functions host, where every failed attempt counts: the attempt waits this long
    /// for the store to answer again ([`ingest_through_outage`]), then fails counted.
    RideOut(Duration),
}

/// One delivery of a queue message, as a host received it.
#[derive(Debug)]
pub struct Delivery<'a> {
    /// The queue's message id (for logs).
    pub message_id: &'a str,
    /// The message text, or why the host could not get it out of what it received.
    pub text: Result<&'a str, String>,
    /// `DequeueCount`: 1 on the first delivery.
    pub dequeue_count: u32,
}

/// What [`Lifecycle::handle`] decided, for the host to carry out.
#[derive(Debug)]
pub struct Handled {
    pub verdict: Verdict,
    pub outcome: MessageOutcome,
    /// The batch's report when it was ingested.
    pub report: Option<BatchReport>,
    /// Why it failed, when it did.
    pub failure: Option<Failure>,
}

impl Handled {
    /// One line on the outcome (the Functions invocation's `Logs`).
    pub fn summary(&self) -> String {
        match (&self.report, &self.failure) {
            (Some(report), _) => format!(
                "batch {} ingested: {} accepted, {} rejected",
                report.batch_id, report.accepted, report.rejected
            ),
            (None, Some(failure)) => failure.why(),
            (None, None) => "nothing happened".to_owned(),
        }
    }

    /// Whether the failure is the message's own (it cannot succeed as it stands), not the store's.
    pub fn is_invalid(&self) -> bool {
        self.failure.as_ref().is_some_and(Failure::is_invalid)
    }
}

/// Everything the life of a message needs, built once per host.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    store: StoreHandle,
    metrics: Arc<Metrics>,
    /// Who may send batch messages: each message is attributed to its client or refused.
    clients: Clients,
    /// host.json `messageEncoding` is base64.
    base64: bool,
    max_dequeue_count: u32,
    /// `<queue>-poison`, named in a poisoned batch's `failure`.
    poison_queue: String,
    outage: OutageRule,
    failed_marks: FailedMarks,
}

impl Lifecycle {
    pub fn new(
        store: StoreHandle,
        metrics: Arc<Metrics>,
        clients: Clients,
        queue_name: &str,
        base64: bool,
        max_dequeue_count: u32,
        outage: OutageRule,
    ) -> Self {
        Self {
            store,
            metrics,
            clients,
            base64,
            max_dequeue_count,
            poison_queue: poison_queue_name(queue_name),
            outage,
            failed_marks: FailedMarks::default(),
        }
    }

    /// `<queue>-poison`.
    pub fn poison_queue(&self) -> &str {
        &self.poison_queue
    }

    /// Decodes, attempts and judges one delivery; marks a poisoned batch `failed`; logs and counts
    /// the outcome. The host carries out the returned verdict.
    pub async fn handle(&self, delivery: Delivery<'_>) -> Handled {
        let Delivery {
            message_id,
            text,
            dequeue_count,
        } = delivery;
        let max = self.max_dequeue_count;
        let decoded = text.and_then(|text| decode_message(text, self.base64, &self.clients));
        let (batch, result) = if abandoned_on_arrival(dequeue_count, max) {
            (decoded.ok(), Err(Failure::Abandoned))
        } else {
            match decoded {
                Err(reason) => (None, Err(Failure::Undecodable(reason))),
                Ok(batch) => {
                    let result = self.attempt(&batch).await;
                    (Some(batch), result)
                }
            }
        };
        let verdict = decide(result.as_ref().err(), dequeue_count, max);
        let batch_id = batch.as_ref().map(|b| b.batch_id);
        let (report, failure) = match result {
            Ok(report) => (Some(report), None),
            Err(failure) => (None, Some(failure)),
        };
        let handled = Handled {
            verdict,
            outcome: match verdict {
                Verdict::Delete => MessageOutcome::Completed,
                Verdict::Retry | Verdict::Requeue => MessageOutcome::Retried,
                Verdict::Poison if failure.as_ref().is_some_and(Failure::is_invalid) => {
                    MessageOutcome::Invalid
                }
                Verdict::Poison => MessageOutcome::Poisoned,
            },
            report,
            failure,
        };
        self.log(&handled, message_id, dequeue_count, batch_id);
        if let (Verdict::Poison, Some(batch), Some(failure)) = (verdict, &batch, &handled.failure) {
            let text = failure_text(failure, Some(dequeue_count), &self.poison_queue);
            self.failed_marks.mark(&self.store, batch, text).await;
        }
        self.metrics.count_queue_message(handled.outcome.label());
        handled
    }

    /// One attempt at the batch, by the host's outage rule.
    async fn attempt(&self, batch: &BatchMessage) -> Result<BatchReport, Failure> {
        let result = match self.outage {
            OutageRule::RideOut(wait) => {
                // A backstop: the wait and the store calls are bounded well inside it. Cut there,
                // the attempt fails like an outage (ingestion is idempotent).
                tokio::time::timeout(
                    wait * 2,
                    ingest_through_outage(&self.store, &self.metrics, batch, wait),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::unavailable("the ingestion did not finish in time").into())
                })
            }
            OutageRule::Requeue => match self.store.get() {
                Ok(store) => super::ingest_and_count(store.as_ref(), &self.metrics, batch).await,
                Err(err) => Err(err),
            },
        };
        match result {
            Ok(report) => Ok(report),
            Err(ServiceError::BatchConflict) => Err(Failure::Conflict),
            // Transient, and the store does not answer its check either: an outage, not one busy
            // call.
            Err(err)
                if self.outage == OutageRule::Requeue
                    && err.is_transient()
                    && !store_answers(&self.store).await =>
            {
                Err(Failure::Outage(err))
            }
            Err(err) => Err(Failure::Store(err)),
        }
    }

    fn log(
        &self,
        handled: &Handled,
        message_id: &str,
        dequeue_count: u32,
        batch_id: Option<BatchId>,
    ) {
        let batch_id = batch_id.map(|id| id.to_string()).unwrap_or_default();
        let max_dequeue_count = self.max_dequeue_count;
        let verdict = handled.verdict;
        match &handled.failure {
            None => {
                tracing::info!(%batch_id, message_id, dequeue_count, "batch message completed");
            }
            Some(Failure::Abandoned) => {
                tracing::warn!(%batch_id, message_id, dequeue_count, max_dequeue_count,
                "batch message exceeded maxDequeueCount (a consumer stopped with it): poisoned unprocessed");
            }
            Some(Failure::Outage(err)) => {
                tracing::warn!(%batch_id, message_id, dequeue_count, error = %err,
                "store unavailable: the batch goes back on the queue (not counted toward poisoning); receiving pauses until the store answers");
            }
            Some(failure) => {
                let why = failure.why();
                if verdict == Verdict::Poison {
                    tracing::warn!(%batch_id, message_id, dequeue_count, max_dequeue_count, why,
                        "last attempt failed: the message goes to the poison queue");
                } else {
                    tracing::warn!(%batch_id, message_id, dequeue_count, max_dequeue_count, why,
                        "attempt failed: the message will be received again");
                }
            }
        }
    }
}

/// `<queue>-poison`, where both hosts move a message after its last failed attempt.
pub fn poison_queue_name(queue_name: &str) -> String {
    format!("{queue_name}-poison")
}

/// Whether the store is open, able to work ([`StoreHealth::Ok`]) and answers its check.
pub async fn store_answers(handle: &StoreHandle) -> bool {
    match handle.get() {
        Ok(store) => store.health() == StoreHealth::Ok && store.check().await.is_ok(),
        Err(_) => false,
    }
}

/// [`super::ingest_and_count`], riding out a store outage: while the store is still opening, no
/// longer healthy or unavailable (a transient error), waits until it answers its check again
/// (probing every 250 ms doubling to 5 s) and tries again, for at most `wait` in all. Then the
/// last transient error is returned. Permanent outcomes (a conflicting batch, corrupt data) return
/// at once.
pub async fn ingest_through_outage(
    handle: &StoreHandle,
    metrics: &Metrics,
    message: &BatchMessage,
    wait: Duration,
) -> Result<BatchReport, ServiceError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    let mut waited = false;
    loop {
        let attempt = match handle.get() {
            Ok(store) => match store.health() {
                StoreHealth::Ok => super::ingest_and_count(store.as_ref(), metrics, message).await,
                StoreHealth::Failed(reason) => Err(StoreError::unavailable(reason).into()),
            },
            Err(err) => Err(err),
        };
        let err = match attempt {
            Err(err) if err.is_transient() => err,
            done => {
                if waited && done.is_ok() {
                    tracing::info!(batch_id = %message.batch_id, "the store answers again: batch ingested");
                }
                return done;
            }
        };
        if !waited {
            tracing::warn!(batch_id = %message.batch_id, error = %err, wait_s = wait.as_secs(),
                "store unavailable: waiting for it before failing the attempt");
            waited = true;
        }
        // Probe (cheap) until the store answers, then try the batch again.
        loop {
            if tokio::time::Instant::now() + pause > deadline {
                return Err(err);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
            if store_answers(handle).await {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_decides_every_outcome_in_both_hosts() {
        let store = || Failure::Store(StoreError::unavailable("down").into());
        // (what the case proves, result, dequeue count, max, verdict)
        let cases: [(&str, Option<Failure>, u32, u32, Verdict); 9] = [
            ("ingested: deleted", None, 1, 5, Verdict::Delete),
            (
                "ingested on the last attempt: deleted",
                None,
                5,
                5,
                Verdict::Delete,
            ),
            (
                "a store failure before the last attempt: retried",
                Some(store()),
                4,
                5,
                Verdict::Retry,
            ),
            (
                "the 5th failed attempt is the last",
                Some(store()),
                5,
                5,
                Verdict::Poison,
            ),
            (
                "maxDequeueCount 1: no retry",
                Some(store()),
                1,
                1,
                Verdict::Poison,
            ),
            (
                "a reused batch id is retried like any failure",
                Some(Failure::Conflict),
                1,
                5,
                Verdict::Retry,
            ),
            (
                "an undecodable message is poisoned on its last attempt",
                Some(Failure::Undecodable("json_invalid".into())),
                5,
                5,
                Verdict::Poison,
            ),
            (
                "an outage is not counted, even on the last attempt",
                Some(Failure::Outage(StoreError::unavailable("down").into())),
                5,
                5,
                Verdict::Requeue,
            ),
            (
                "received again after a crash on the last attempt",
                Some(Failure::Abandoned),
                6,
                5,
                Verdict::Poison,
            ),
        ];
        for (proves, result, count, max, verdict) in &cases {
            assert_eq!(decide(result.as_ref(), *count, *max), *verdict, "{proves}");
        }
        // (dequeue count, max, abandoned on arrival)
        for (count, max, abandoned) in [(1, 5, false), (5, 5, false), (6, 5, true), (2, 1, true)] {
            assert_eq!(abandoned_on_arrival(count, max), abandoned, "{count}/{max}");
        }
    }

    #[test]
    fn a_poisoned_batch_says_why_in_kinds_only() {
        let poison = "mediflow-batches-poison";
        let secret = || StoreError::unavailable("connection to 10.0.0.7 refused").into();
        // (what the case proves, failure, dequeue count, text)
        for (proves, failure, count, text) in [
            (
                "a store failure names the attempts and the kind, not the store's text",
                Failure::Store(secret()),
                Some(5),
                "ingestion failed 5 times (the store was unavailable); the message is in mediflow-batches-poison",
            ),
            (
                "redrive --mark-failed knows neither the attempts nor the cause",
                Failure::FoundPoisoned,
                None,
                "ingestion failed; the message is in mediflow-batches-poison",
            ),
            (
                "an internal error is named as such",
                Failure::Store(ServiceError::Internal("secret detail".into())),
                Some(2),
                "ingestion failed 2 times (an internal error); the message is in mediflow-batches-poison",
            ),
            (
                "an abandoned message counts the attempts before this one",
                Failure::Abandoned,
                Some(6),
                "ingestion was abandoned 5 times (the consumer stopped); the message is in mediflow-batches-poison",
            ),
            (
                "a conflict",
                Failure::Conflict,
                Some(5),
                "batch_id was already used for different records; the message is in mediflow-batches-poison",
            ),
        ] {
            assert_eq!(failure_text(&failure, count, poison), text, "{proves}");
        }
    }

    #[test]
    fn messages_decode_from_base64_or_plain_json_and_never_echo_content() {
        let json = r#"{"batch_id":"0b6c1d1e-9a4f-4a57-9d47-5a2a1a7c2c10","records":[{"site_id":"secret"}]}"#;
        // (what the case proves, text, base64 configured, decodes)
        for (proves, text, base64, ok) in [
            (
                "base64 as the Functions default",
                B64.encode(json),
                true,
                true,
            ),
            (
                "plain JSON is tolerated when base64 is configured",
                json.to_owned(),
                true,
                true,
            ),
            (
                "plain JSON with messageEncoding none",
                json.to_owned(),
                false,
                true,
            ),
            (
                "base64 is not decoded with messageEncoding none",
                B64.encode(json),
                false,
                false,
            ),
            ("not base64, not JSON", "%%%".to_owned(), true, false),
            (
                "base64 of something that is not JSON",
                B64.encode("secret text"),
                true,
                false,
            ),
            (
                "JSON that is not a batch",
                B64.encode(r#"{"records":"secret"}"#),
                true,
                false,
            ),
        ] {
            match decode_message(&text, base64, &Clients::off()) {
                Ok(batch) => assert!(ok, "{proves}: decoded {}", batch.batch_id),
                Err(problem) => {
                    assert!(!ok, "{proves}: {problem}");
                    assert!(
                        !problem.contains("secret"),
                        "{proves}: the problem quotes content: {problem}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_client_table_attributes_signed_messages_and_refuses_the_rest() {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(b"uploader-key").into();
        let other: [u8; 32] = Sha256::digest(b"someone-else").into();
        let hex = crate::domain::hex(&digest);
        let table = format!(
            r#"{{"clients": [{{"id": "site001-uploader", "key_sha256": ["{hex}"], "roles": ["submit"], "sites": ["SITE001"]}}]}}"#
        );
        let clients = Clients::from_content(&table, None).expect("a valid table");
        let payload = r#"{"batch_id":"0b6c1d1e-9a4f-4a57-9d47-5a2a1a7c2c10","records":[{"site_id":"SITE001"}]}"#;
        let client = crate::domain::ClientId::parse("site001-uploader").expect("id");
        let signed = crate::auth::queue::sign(&client, &digest, payload);
        let forged = crate::auth::queue::sign(&client, &other, payload);
        // (what the case proves, message text, attributed to)
        for (proves, text, expected) in [
            (
                "a signed message is its client's",
                signed.clone(),
                Some("site001-uploader"),
            ),
            (
                "base64 of it too",
                B64.encode(&signed),
                Some("site001-uploader"),
            ),
            ("a signature with another key is refused", forged, None),
            ("an unsigned message is refused", payload.to_owned(), None),
            (
                "a changed payload is refused",
                signed.replace("SITE001", "SITE002"),
                None,
            ),
        ] {
            match decode_message(&text, true, &clients) {
                Ok(message) => assert_eq!(
                    Some(message.submitter.client.as_str()),
                    expected,
                    "{proves}"
                ),
                Err(problem) => {
                    assert!(expected.is_none(), "{proves}: {problem}");
                    assert!(problem.starts_with("unattributed"), "{proves}: {problem}");
                }
            }
        }
        let message = decode_message(&signed, false, &clients).expect("attributed");
        let queued = queued_text(&message, &clients).expect("signed");
        let again = decode_message(&queued, false, &clients)
            .expect("what the server queues attributes back");
        assert_eq!(again.submitter, message.submitter);
        assert_eq!(again.content_sha256, message.content_sha256);
    }

    #[test]
    fn outcome_labels_are_the_metric_labels() {
        let labels: Vec<&str> = [
            MessageOutcome::Completed,
            MessageOutcome::Retried,
            MessageOutcome::Poisoned,
            MessageOutcome::Invalid,
        ]
        .map(MessageOutcome::label)
        .to_vec();
        assert_eq!(labels, ["completed", "retried", "poisoned", "invalid"]);
    }
}

//! The audit trail: who did what to which record, when, with what outcome (21 CFR 11.10 (e),
//! EU Annex 11 §9; docs/adr/0010-identities-and-audit-trail.md).
//!
//! The service describes an action as an [`AuditDraft`]; the store that makes it durable stamps
//! it into an [`AuditEvent`]: its chain, a sequence number, the server's UTC time and the SHA-256
//! of the previous event of the chain (a hash chain: changing, removing or reordering an event
//! breaks every later link). [`ChainCheck`] verifies a chain read back in order. An event never
//! holds record content beyond ids and the reviewed field.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::batch::BatchId;
pub use super::hex;
use super::record::{RecordId, Status};

/// Audit events per page (`GET /audit`) by default, and at most.
pub const DEFAULT_PAGE_EVENTS: usize = 100;
pub const MAX_PAGE_EVENTS: usize = 1000;

/// The longest reason of a review (Annex 11 §9: the reason for a change), in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A record was created (POST /records, or one record of a batch).
    Create,
    /// A record's status was reviewed (old value, new value, reason).
    Review,
    /// A record was read by id.
    Read,
    /// A page of a site's records was listed (the ids it returned).
    List,
    /// A batch was submitted (over HTTP or the queue).
    SubmitBatch,
    /// A batch report was read.
    ReadBatch,
    /// A request was refused (401 or 403): `outcome` says which.
    Refused,
    /// The audit trail itself was read (GET /audit, GET /records/{id}/history).
    ReadAudit,
}

/// The prev_hash of a chain's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An action as the service describes it, before a store stamps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDraft {
    pub client: String,
    pub action: AuditAction,
    pub record_ids: Vec<RecordId>,
    pub batch_id: Option<BatchId>,
    pub request_id: Option<String>,
    /// `created`, `reviewed`, `ok`, `queued`, `401`, `403`, `404`...
    pub outcome: String,
    pub old_status: Option<Status>,
    pub new_status: Option<Status>,
    pub reason: Option<String>,
}

impl AuditDraft {
    pub fn new(client: &str, action: AuditAction, outcome: &str) -> Self {
        Self {
            client: client.to_owned(),
            action,
            record_ids: Vec::new(),
            batch_id: None,
            request_id: None,
            outcome: outcome.to_owned(),
            old_status: None,
            new_status: None,
            reason: None,
        }
    }

    #[must_use]
    pub fn records(mut self, ids: impl IntoIterator<Item = RecordId>) -> Self {
        self.record_ids = ids.into_iter().collect();
        self
    }

    #[must_use]
    pub fn batch(mut self, id: Option<BatchId>) -> Self {
        self.batch_id = id;
        self
    }

    #[must_use]
    pub fn request(mut self, id: Option<&str>) -> Self {
        self.request_id = id.map(str::to_owned);
        self
    }

    /// The create event of one record, from the template of its request or batch.
    #[must_use]
    pub fn created(&self, id: RecordId) -> Self {
        let mut event = self.clone();
        event.action = AuditAction::Create;
        "created".clone_into(&mut event.outcome);
        event.record_ids = vec![id];
        event
    }

    /// Stamps the draft as event `seq` of `chain`, after the event whose hash is `prev_hash`.
    pub fn stamp(self, chain: &str, seq: u64, time: String, prev_hash: &str) -> AuditEvent {
        let mut event = AuditEvent {
            chain: chain.to_owned(),
            seq,
            time,
            draft: self,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        event.hash = event.computed_hash();
        event
    }
}

/// A durable audit event: a stamped draft, linked to the previous event of its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The chain the event belongs to (one per writer: `embedded`, or one per Cosmos process).
    pub chain: String,
    /// 1, 2, 3... within the chain, without gaps.
    pub seq: u64,
    /// The server's UTC time, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (fixed width: text order is time order).
    pub time: String,
    #[serde(flatten)]
    pub draft: AuditDraft,
    /// SHA-256 (hex) of the previous event of the chain; [`GENESIS_HASH`] for the first.
    pub prev_hash: String,
    /// SHA-256 (hex) of this event's canonical form (every field but `hash`).
    pub hash: String,
}

/// Every field of an event but its hash, in a fixed order: the bytes that are hashed.
#[derive(Serialize)]
struct Canonical<'a> {
    chain: &'a str,
    seq: u64,
    time: &'a str,
    client: &'a str,
    action: AuditAction,
    record_ids: &'a [RecordId],
    batch_id: Option<BatchId>,
    request_id: Option<&'a str>,
    outcome: &'a str,
    old_status: Option<Status>,
    new_status: Option<Status>,
    reason: Option<&'a str>,
    prev_hash: &'a str,
}

impl AuditEvent {
    /// The hash this event's content calls for (compare with [`AuditEvent::hash`]).
    pub fn computed_hash(&self) -> String {
        let d = &self.draft;
        let canonical = Canonical {
            chain: &self.chain,
            seq: self.seq,
            time: &self.time,
            client: &d.client,
            action: d.action,
            record_ids: &d.record_ids,
            batch_id: d.batch_id,
            request_id: d.request_id.as_deref(),
            outcome: &d.outcome,
            old_status: d.old_status,
            new_status: d.new_status,
            reason: d.reason.as_deref(),
            prev_hash: &self.prev_hash,
        };
        // Serializing plain strings, numbers and enums cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex(&Sha256::digest(bytes))
    }
}

/// Where a chain is broken: the event named, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain {chain} is broken at event {seq}: {problem}")]
pub struct BrokenChain {
    pub chain: String,
    pub seq: u64,
    pub problem: String,
}

/// Verifies chains fed event by event, each chain in `seq` order (chains may interleave).
#[derive(Debug, Default)]
pub struct ChainCheck {
    /// Per chain: the last event's seq and hash.
    heads: HashMap<String, (u64, String)>,
    pub events: u64,
}

impl ChainCheck {
    /// Checks `event` against its chain's previous event: its seq follows without a gap, its
    /// `prev_hash` is that event's hash, its own hash matches its content.
    pub fn check(&mut self, event: &AuditEvent) -> Result<(), BrokenChain> {
        let broken = |problem: String| BrokenChain {
            chain: event.chain.clone(),
            seq: event.seq,
            problem,
        };
        let (expected_seq, expected_prev) = self
            .heads
            .get(&event.chain)
            .map_or((1, GENESIS_HASH), |(seq, hash)| (seq + 1, hash.as_str()));
        if event.seq != expected_seq {
            return Err(broken(format!(
                "expected event {expected_seq} here (an event is missing or out of order)"
            )));
        }
        if event.prev_hash != expected_prev {
            return Err(broken(
                "prev_hash does not match the previous event (an earlier event was changed, removed or replaced)".to_owned(),
            ));
        }
        if event.computed_hash() != event.hash {
            return Err(broken(
                "its content does not match its hash (the event was changed)".to_owned(),
            ));
        }
        self.heads
            .insert(event.chain.clone(), (event.seq, event.hash.clone()));
        self.events += 1;
        Ok(())
    }

    /// Chains seen, with their last seq.
    pub fn chains(&self) -> Vec<(String, u64)> {
        let mut chains: Vec<_> = self
            .heads
            .iter()
            .map(|(chain, (seq, _))| (chain.clone(), *seq))
            .collect();
        chains.sort();
        chains
    }
}

/// The UTC time now as an event time (microseconds), never earlier than `not_before` (a clock
/// stepped back must not reorder a chain's times).
pub fn event_time(not_before: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let formatted = format_utc(now.as_secs(), now.subsec_micros());
    if formatted.as_str() < not_before {
        not_before.to_owned()
    } else {
        formatted
    }
}

/// `secs` since the epoch (+ `micros`) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_utc(secs: u64, micros: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (the
/// era-based conversion: 400-year eras of 146 097 days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Where a page of events ended: the next page starts strictly after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCursor {
    pub time: String,
    pub chain: String,
    pub seq: u64,
}

impl AuditCursor {
    pub fn of(event: &AuditEvent) -> Self {
        Self {
            time: event.time.clone(),
            chain: event.chain.clone(),
            seq: event.seq,
        }
    }

    /// Whether `event` comes after this cursor in page order (time, chain, seq).
    pub fn precedes(&self, event: &AuditEvent) -> bool {
        (self.time.as_str(), self.chain.as_str(), self.seq)
            < (event.time.as_str(), event.chain.as_str(), event.seq)
    }
}

/// Which events a reader asks for: every filter optional, times as [`time_bound`] gives them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    /// Events at or after this time (fixed-width event time).
    pub from: Option<String>,
    /// Events at or before this time.
    pub to: Option<String>,
    pub client: Option<String>,
    pub record_id: Option<RecordId>,
    pub after: Option<AuditCursor>,
}

impl AuditQuery {
    /// Whether `event` passes every filter (the cursor included).
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.from.as_ref().is_none_or(|from| event.time >= *from)
            && self.to.as_ref().is_none_or(|to| event.time <= *to)
            && self
                .client
                .as_ref()
                .is_none_or(|client| event.draft.client == *client)
            && self
                .record_id
                .is_none_or(|id| event.draft.record_ids.contains(&id))
            && self
                .after
                .as_ref()
                .is_none_or(|after| after.precedes(event))
    }
}

/// A bound of an audit query's time range: a date (`YYYY-MM-DD`, the whole day) or an event time
/// written as the events are (`YYYY-MM-DDTHH:MM:SS[.ffffff]Z`). Returns the fixed-width text to
/// compare event times with: the first instant of `raw` (`end = false`) or its last (`end`).
pub fn time_bound(raw: &str, end: bool) -> Option<String> {
    let date = raw.get(..10)?;
    super::record::SubmissionDate::parse(date).ok()?;
    let rest = &raw[10..];
    if rest.is_empty() {
        let time = if end {
            "T23:59:59.999999Z"
        } else {
            "T00:00:00.000000Z"
        };
        return Some(format!("{date}{time}"));
    }
    let b = rest.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        rest.get(r)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
    };
    let ok = b.len() >= 10
        && b[0] == b'T'
        && b[3] == b':'
        && b[6] == b':'
        && *b.last()? == b'Z'
        && digits(1..3).is_some_and(|h| h < "24")
        && digits(4..6).is_some_and(|m| m < "60")
        && digits(7..9).is_some_and(|s| s < "60");
    if !ok {
        return None;
    }
    let fraction = &rest[9..rest.len() - 1];
    let micros = match fraction {
        "" => {
            if end {
                "999999".to_owned()
            } else {
                "000000".to_owned()
            }
        }
        f if f.len() >= 2
            && f.len() <= 7
            && f.starts_with('.')
            && f[1..].bytes().all(|c| c.is_ascii_digit()) =>
        {
            let pad = if end { '9' } else { '0' };
            let mut digits = f[1..].to_owned();
            while digits.len() < 6 {
                digits.push(pad);
            }
            digits
        }
        _ => return None,
    };
    Some(format!("{date}{}.{micros}Z", &rest[..9]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(n: u64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let event = AuditDraft::new("monitor-eu", AuditAction::Read, "ok")
                    .records([RecordId::random()])
                    .stamp("embedded", seq, format_utc(1_765_000_000 + seq, 0), &prev);
                prev = event.hash.clone();
                event
            })
            .collect()
    }

    type Tamper = Box<dyn Fn(&mut Vec<AuditEvent>)>;

    #[test]
    fn an_intact_chain_verifies_and_every_kind_of_tampering_names_its_event() {
        let events = chain_of(5);
        let mut check = ChainCheck::default();
        for event in &events {
            check.check(event).expect("intact");
        }
        assert_eq!(check.events, 5);
        // (what is done to the chain, the event that must be named)
        let cases: Vec<(&str, Tamper, u64)> = vec![
            (
                "a changed client",
                Box::new(|e| e[2].draft.client = "someone-else".into()),
                3,
            ),
            (
                "a changed reason",
                Box::new(|e| e[1].draft.reason = Some("x".into())),
                2,
            ),
            (
                "a changed time",
                Box::new(|e| e[3].time = format_utc(1, 0)),
                4,
            ),
            ("a removed event", Box::new(|e| drop(e.remove(2))), 4),
            ("two events swapped", Box::new(|e| e.swap(1, 2)), 3),
            (
                "a rewritten event with a fresh hash",
                Box::new(|e| {
                    e[1].draft.outcome = "403".into();
                    e[1].hash = e[1].computed_hash();
                }),
                3,
            ),
        ];
        for (what, tamper, named) in cases {
            let mut events = events.clone();
            tamper(&mut events);
            let mut check = ChainCheck::default();
            let broken = events
                .iter()
                .find_map(|event| check.check(event).err())
                .unwrap_or_else(|| panic!("{what}: not detected"));
            assert_eq!(broken.seq, named, "{what}: {broken}");
        }
    }

    #[test]
    fn event_times_are_utc_fixed_width_and_never_go_back() {
        // The oracle is GNU date, not this code: `date -u -d @1796619967 +%FT%T`.
        assert_eq!(format_utc(1_796_619_967, 42), "2026-12-07T05:06:07.000042Z");
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_utc(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
        let later = "9999-12-31T23:59:59.999999Z";
        assert_eq!(event_time(later), later, "a clock behind the last event");
        assert!(event_time("").as_str() > "2026-01-01");
    }

    #[test]
    fn time_bounds_take_dates_or_event_times() {
        for (raw, end, expected) in [
            ("2026-12-07", false, Some("2026-12-07T00:00:00.000000Z")),
            ("2026-12-07", true, Some("2026-12-07T23:59:59.999999Z")),
            (
                "2026-12-07T05:06:07Z",
                false,
                Some("2026-12-07T05:06:07.000000Z"),
            ),
            (
                "2026-12-07T05:06:07.5Z",
                true,
                Some("2026-12-07T05:06:07.599999Z"),
            ),
            (
                "2026-12-07T05:06:07.123456Z",
                false,
                Some("2026-12-07T05:06:07.123456Z"),
            ),
            ("2026-02-30", false, None),
            ("2026-12-07T25:00:00Z", false, None),
            ("2026-12-07T05:06:07+01:00", false, None),
            ("yesterday", false, None),
        ] {
            assert_eq!(time_bound(raw, end).as_deref(), expected, "{raw} end={end}");
        }
    }
}

//! The embedded store's audit trail: its one hash chain ([`CHAIN`]), the writer's end of it
//! ([`ChainHead`], which stamps each event), and the two reads (a filtered page, the chain in
//! order) over the `audit` and `audit_by_record` tables.

use bytes::Bytes;
use redb::{Database, ReadTransaction, ReadableDatabase};

use super::journal::{Put, Table};
use super::tables::{AUDIT, AUDIT_BY_RECORD, decode, unavailable};
use crate::domain::audit::{AuditCursor, AuditQuery, GENESIS_HASH, event_time};
use crate::domain::{AuditDraft, AuditEvent, RecordId};
use crate::store::StoreError;

/// The name of the embedded store's one audit chain.
pub const CHAIN: &str = "embedded";

/// The writer's end of the audit chain: the last event's seq, hash and time.
pub(super) struct ChainHead {
    seq: u64,
    hash: String,
    time: String,
}

impl ChainHead {
    /// Stamps `draft` as the next event and returns its put.
    pub(super) fn append(&mut self, draft: AuditDraft) -> Result<Put, String> {
        let time = event_time(&self.time);
        let audited = draft
            .record_ids
            .iter()
            .map(|id| id.as_uuid().as_u128())
            .collect();
        let event = draft.stamp(CHAIN, self.seq + 1, time, &self.hash);
        let value = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        self.seq = event.seq;
        self.hash = event.hash;
        self.time = event.time;
        Ok(Put {
            table: Table::Audit,
            key: u128::from(self.seq),
            value: Bytes::from(value),
            index: None,
            audited: Some(audited),
        })
    }
}

/// The last event of the chain as stored (after the journal's replay), or the chain's start.
pub(super) fn chain_head(db: &Database) -> Result<ChainHead, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let audit = txn.open_table(AUDIT).map_err(unavailable)?;
    let Some((_, last)) = redb::ReadableTable::last(&audit).map_err(unavailable)? else {
        return Ok(ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
            time: String::new(),
        });
    };
    let event: AuditEvent = decode(last.value())?;
    Ok(ChainHead {
        seq: event.seq,
        hash: event.hash,
        time: event.time,
    })
}

/// The first seq whose event time is at or after `from` (events are in time order); one past the
/// last when there is none.
fn first_at_or_after(
    audit: &redb::ReadOnlyTable<u128, &[u8]>,
    from: &str,
) -> Result<u128, StoreError> {
    let Some((last, _)) = redb::ReadableTable::last(audit).map_err(unavailable)? else {
        return Ok(1);
    };
    let (mut low, mut high) = (1_u128, last.value() + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        // The first event at or after `middle` (a salvaged journal can leave a seq missing).
        let Some(entry) = audit.range(middle..high).map_err(unavailable)?.next() else {
            high = middle;
            continue;
        };
        let (key, bytes) = entry.map_err(unavailable)?;
        let event: AuditEvent = decode(bytes.value())?;
        if event.time.as_str() < from {
            low = key.value() + 1;
        } else {
            high = middle;
        }
    }
    Ok(low)
}

/// The record keys an audit event's JSON names (for the by-record index).
pub(super) fn audited_records(value: &[u8]) -> Result<Vec<u128>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Named {
        record_ids: Vec<RecordId>,
    }
    let named: Named = decode(value)?;
    Ok(named
        .record_ids
        .iter()
        .map(|id| id.as_uuid().as_u128())
        .collect())
}

/// Up to `max` events matching `query`, oldest first, strictly after `query.after`: by the
/// by-record index when the query names a record, else by seq from the first event at or after
/// `query.from`.
pub(super) fn page(
    txn: &ReadTransaction,
    query: &AuditQuery,
    max: usize,
) -> Result<Vec<AuditEvent>, StoreError> {
    let audit = txn.open_table(AUDIT).map_err(unavailable)?;
    let mut page = Vec::new();
    let mut keep = |bytes: &[u8]| -> Result<bool, StoreError> {
        let event: AuditEvent = decode(bytes)?;
        if query.matches(&event) {
            page.push(event);
        }
        Ok(page.len() < max)
    };
    if let Some(record) = query.record_id {
        let key = record.as_uuid().as_u128();
        let by_record = txn.open_table(AUDIT_BY_RECORD).map_err(unavailable)?;
        let first = query
            .after
            .as_ref()
            .map_or(0, |after| u128::from(after.seq) + 1);
        for entry in by_record
            .range((key, first)..=(key, u128::MAX))
            .map_err(unavailable)?
        {
            let (keys, _) = entry.map_err(unavailable)?;
            let (_, seq) = keys.value();
            let bytes = audit
                .get(seq)
                .map_err(unavailable)?
                .ok_or_else(|| StoreError::Corrupt(format!("indexed event {seq} is missing")))?;
            if !keep(bytes.value())? {
                break;
            }
        }
        return Ok(page);
    }
    // One chain, stamped with times that never go back: seq order is time order, so the first
    // event at or after `from` is found by bisection.
    let mut first = query
        .after
        .as_ref()
        .map_or(1, |after| u128::from(after.seq) + 1);
    if let Some(from) = &query.from {
        first = first.max(first_at_or_after(&audit, from)?);
    }
    for entry in audit.range(first..).map_err(unavailable)? {
        let (_, bytes) = entry.map_err(unavailable)?;
        let value = bytes.value();
        if let Some(to) = &query.to {
            let event: AuditEvent = decode(value)?;
            if event.time > *to {
                break;
            }
        }
        if !keep(value)? {
            break;
        }
    }
    Ok(page)
}

/// Up to `max` events in seq order, strictly after `after`.
pub(super) fn chain(
    txn: &ReadTransaction,
    after: Option<&AuditCursor>,
    max: usize,
) -> Result<Vec<AuditEvent>, StoreError> {
    let audit = txn.open_table(AUDIT).map_err(unavailable)?;
    let first = after.map_or(1, |after| u128::from(after.seq) + 1);
    audit
        .range(first..)
        .map_err(unavailable)?
        .take(max)
        .map(|entry| {
            let (_, bytes) = entry.map_err(unavailable)?;
            decode(bytes.value())
        })
        .collect()
}

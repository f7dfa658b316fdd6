//! The embedded store's writer thread, the one place every write passes in order. It takes every
//! write waiting (a group), decides each one's outcome against this group's earlier puts, the
//! pending map and redb, stamps the group's audit events onto the chain, appends the puts to the
//! journal with one `fdatasync`, puts them in the pending map (reads see them at once), replies
//! the callers and hands the group to the applier.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;

use bytes::Bytes;
use redb::ReadableDatabase;
use tokio::sync::oneshot;

use super::MAX_PENDING_BYTES;
use super::applier::JournaledGroup;
use super::audit::ChainHead;
use super::engine::{Engine, LatchOnPanic};
use super::journal::{Journal, Put, Table};
use super::site_index::IndexKey;
use super::tables::{decode, definition};
use crate::domain::{AuditDraft, BatchReport, RecordId};
use crate::store::StoreError;

/// Most writes folded into one journal append (one `fdatasync`).
pub(super) const MAX_GROUP: usize = 256;

/// Journal size beyond which the writer closes its segment (and goes on in a new one), unless the
/// segment it closed before is still there (the applier deletes it once redb holds it durably).
pub(super) const JOURNAL_ROLL_BYTES: u64 = 16 * 1024 * 1024;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write as the writer thread receives it: keys and encoded values, ready to journal.
pub(super) enum Write {
    /// Records to insert if absent; each one created gets its create event from the template.
    Insert(
        Vec<(RecordId, Bytes, IndexKey)>,
        AuditDraft,
        Reply<Vec<EncodedOutcome>>,
    ),
    /// A compare-and-replace of one record, with its event.
    Replace(Box<Replacement>, Reply<EncodedOutcome>),
    /// Audit events on their own.
    Audit(Vec<AuditDraft>, Reply<()>),
    InsertBatch(u128, Bytes, Reply<EncodedOutcome>),
    PutBatch(u128, Bytes, Reply<()>),
    /// A batch report to put only if the stored one is still `expected` (compared decoded, so the
    /// byte layout of an older write cannot make it fail forever).
    PutBatchIf(u128, Bytes, Box<BatchReport>, Reply<bool>),
    /// Test fault injection: the writer thread panics.
    #[cfg(test)]
    Crash,
    /// Test fault injection: the writer thread waits until the sender is dropped.
    #[cfg(test)]
    Block(std_mpsc::Receiver<()>),
}

/// An insert-if-absent's outcome, still encoded (the caller decodes, off the writer thread). For
/// a replace: `Created` is done, `Existing` the record stored instead of the expected one.
pub(super) enum EncodedOutcome {
    Created,
    Existing(Bytes),
    /// A replace found no record.
    Missing,
}

/// A record to replace if it is still stored as `expected`.
pub(super) struct Replacement {
    pub(super) key: u128,
    pub(super) expected: Bytes,
    pub(super) value: Bytes,
    pub(super) index: IndexKey,
    pub(super) event: AuditDraft,
}

/// A write's reply and its outcome, held until its group is on the device.
enum HeldReply {
    Insert(Reply<Vec<EncodedOutcome>>, Vec<EncodedOutcome>),
    Replace(Reply<EncodedOutcome>, EncodedOutcome),
    Audit(Reply<()>),
    InsertBatch(Reply<EncodedOutcome>, EncodedOutcome),
    PutBatch(Reply<()>),
    PutBatchIf(Reply<bool>, bool),
    /// This write alone could not be decided (its lookup failed); the rest of its group goes on.
    Refused(Refusal, String),
}

/// The reply of a write refused on its own.
enum Refusal {
    Insert(Reply<Vec<EncodedOutcome>>),
    One(Reply<EncodedOutcome>),
    Flag(Reply<bool>),
}

impl HeldReply {
    fn send(self) {
        // A caller that gave up (timeout, disconnect) no longer listens; its write stands.
        match self {
            Self::Insert(reply, outcome) => drop(reply.send(Ok(outcome))),
            Self::InsertBatch(reply, outcome) | Self::Replace(reply, outcome) => {
                drop(reply.send(Ok(outcome)));
            }
            Self::PutBatch(reply) | Self::Audit(reply) => drop(reply.send(Ok(()))),
            Self::PutBatchIf(reply, stored) => drop(reply.send(Ok(stored))),
            Self::Refused(refusal, reason) => refusal.send(&reason),
        }
    }

    fn fail(self, reason: &str) {
        let failed = || StoreError::unavailable(reason);
        match self {
            Self::Insert(reply, _) => drop(reply.send(Err(failed()))),
            Self::InsertBatch(reply, _) | Self::Replace(reply, _) => {
                drop(reply.send(Err(failed())));
            }
            Self::PutBatch(reply) | Self::Audit(reply) => drop(reply.send(Err(failed()))),
            Self::PutBatchIf(reply, _) => drop(reply.send(Err(failed()))),
            Self::Refused(refusal, _) => refusal.send(reason),
        }
    }
}

impl Refusal {
    fn send(self, reason: &str) {
        let failed = StoreError::unavailable(reason);
        match self {
            Self::Insert(reply) => drop(reply.send(Err(failed))),
            Self::One(reply) => drop(reply.send(Err(failed))),
            Self::Flag(reply) => drop(reply.send(Err(failed))),
        }
    }
}

/// The stored value under `key` as the writer decides a write: the pending map, then redb.
/// `reader` is the group's read transaction with the applier's progress when it was opened; it
/// is reopened when the applier has moved on since, because a put the applier has dropped from
/// the pending map is only in commits newer than an older snapshot (without this, a write
/// acknowledged a moment ago could be missed and overwritten).
fn lookup(
    engine: &Engine,
    reader: &mut Option<(redb::ReadTransaction, u64)>,
    table: Table,
    key: u128,
) -> Result<Option<Bytes>, String> {
    #[cfg(test)]
    if *engine
        .fail_lookup
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        == Some(key)
    {
        return Err("injected lookup failure".to_owned());
    }
    let applied = {
        let ledger = engine.ledger();
        if let Some((_, value)) = ledger.pending.get(&(table, key)) {
            return Ok(Some(value.clone()));
        }
        ledger.applied
    };
    if !matches!(reader, Some((_, seen)) if *seen >= applied) {
        // Opened after reading `applied`: it holds every commit whose puts left the map.
        *reader = Some((engine.db.begin_read().map_err(|e| e.to_string())?, applied));
    }
    let (txn, _) = reader.as_ref().ok_or("no read transaction")?;
    let opened = txn
        .open_table(definition(table))
        .map_err(|e| e.to_string())?;
    let value = opened.get(key).map_err(|e| e.to_string())?;
    Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
}

/// The writer thread: block for one write, take whatever else is waiting, journal the group
/// with one `fdatasync`, answer everyone, hand the puts to the applier.
pub(super) fn run_writer(
    engine: &Engine,
    mut journal: Journal,
    mut head: ChainHead,
    queue: &std_mpsc::Receiver<Write>,
    applier: &std_mpsc::SyncSender<JournaledGroup>,
    closed: &Path,
) {
    let _latch = LatchOnPanic(engine, "the store writer thread stopped");
    let mut seq = 0;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        #[cfg(feature = "fault-injection")]
        crate::fault::writer_group_committing();
        seq += 1;
        let to = Segments { applier, closed };
        write_group(engine, &mut journal, &mut head, &to, seq, group);
    }
}

/// Where a journaled group goes next: the applier, and the path a closed segment takes.
struct Segments<'a> {
    applier: &'a std_mpsc::SyncSender<JournaledGroup>,
    closed: &'a Path,
}

fn write_group(
    engine: &Engine,
    journal: &mut Journal,
    head: &mut ChainHead,
    to: &Segments<'_>,
    seq: u64,
    group: Vec<Write>,
) {
    let fail_all = |replies: Vec<HeldReply>, reason: &str| {
        for reply in replies {
            reply.fail(reason);
        }
    };
    let GroupDecision {
        puts,
        replies,
        failure,
    } = decide_group(engine, head, group);
    if let Some(reason) = failure {
        return fail_all(replies, &reason);
    }
    if puts.is_empty() {
        // Every write found what it asked for already stored: nothing new to make durable.
        replies.into_iter().for_each(HeldReply::send);
        return;
    }
    let bytes: usize = puts.iter().map(|put| put.value.len()).sum();
    if let Err(reason) = engine.wait_until(|ledger| {
        ledger.pending_bytes == 0 || ledger.pending_bytes + bytes <= MAX_PENDING_BYTES
    }) {
        return fail_all(replies, &reason);
    }
    if let Err(e) = append(engine, journal, &puts) {
        let reason = format!("journal write failed: {e}");
        engine.latch(reason.clone());
        return fail_all(replies, &reason);
    }
    {
        let mut ledger = engine.ledger();
        for put in &puts {
            let previous = ledger
                .pending
                .insert((put.table, put.key), (seq, put.value.clone()));
            ledger.pending_bytes += put.value.len();
            if let Some((_, old)) = previous {
                ledger.pending_bytes -= old.len();
            }
        }
        ledger.acknowledged = seq;
    }
    // On the device and visible to reads: acknowledge.
    replies.into_iter().for_each(HeldReply::send);
    // A full segment is closed without waiting for redb: the applier makes the commit holding it
    // durable and deletes it, while appends go on in the new segment. Only when the segment closed
    // before is still there (redb is that far behind) does this one grow past the limit.
    let closes_segment =
        journal.len() > JOURNAL_ROLL_BYTES && engine.ledger().closed_segment.is_none();
    if closes_segment {
        if let Err(e) = journal.roll(to.closed) {
            engine.latch(format!("closing the journal segment failed: {e}"));
            return;
        }
        engine.ledger().closed_segment = Some(seq);
    }
    if to
        .applier
        .send(JournaledGroup {
            seq,
            puts,
            closes_segment,
        })
        .is_err()
    {
        engine.latch("the store applier thread stopped".to_owned());
    }
}

fn append(engine: &Engine, journal: &mut Journal, puts: &[Put]) -> std::io::Result<()> {
    #[cfg(test)]
    if engine
        .fail_appends
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(std::io::Error::other("injected fdatasync failure"));
    }
    #[cfg(not(test))]
    let _ = engine;
    journal.append(puts)
}

/// A group's outcome before it is journaled.
struct GroupDecision {
    /// What to journal and apply.
    puts: Vec<Put>,
    /// What to tell each caller once the puts are durable.
    replies: Vec<HeldReply>,
    /// Why the group cannot be written (a latched failure).
    failure: Option<String>,
}

/// Decides each write's outcome: the puts to journal, and the replies to send once they are
/// durable. An id is looked up in this group's earlier puts, then the pending map, then redb. A
/// failed lookup fails only the write it was for. The audit events of the writes that go ahead
/// are stamped onto the chain at the end and journaled first, in the same append as the data
/// they describe (so a record is never durable without its create event).
#[expect(
    clippy::too_many_lines,
    reason = "one arm per kind of write; each arm is the rule for that write"
)]
fn decide_group(engine: &Engine, head: &mut ChainHead, group: Vec<Write>) -> GroupDecision {
    let mut puts: Vec<Put> = Vec::new();
    let mut events: Vec<AuditDraft> = Vec::new();
    let mut in_group: HashMap<(Table, u128), usize> = HashMap::new();
    let mut replies = Vec::with_capacity(group.len());
    let failure = engine.ledger().failure.clone();
    let mut reader = None;
    let mut stored =
        |table: Table, key: u128, puts: &[Put], in_group: &HashMap<_, usize>| match in_group
            .get(&(table, key))
        {
            Some(&at) => Ok(Some(puts[at].value.clone())),
            None => lookup(engine, &mut reader, table, key),
        };
    let put = |puts: &mut Vec<Put>, in_group: &mut HashMap<_, _>, table, key, value, index| {
        in_group.insert((table, key), puts.len());
        puts.push(Put {
            table,
            key,
            value,
            index,
            audited: None,
        });
    };
    for write in group {
        if failure.is_some() {
            // A latched failure: every write of the group is failed with it (by `write_group`).
            replies.extend(undecided(write));
            continue;
        }
        match write {
            Write::Insert(records, template, reply) => {
                // All or nothing for one caller: if a lookup fails, its puts leave the group.
                let mark = puts.len();
                let events_mark = events.len();
                let mut outcomes = Vec::with_capacity(records.len());
                let mut lookup_failed = None;
                for (id, value, index) in records {
                    let key = id.as_uuid().as_u128();
                    match stored(Table::Records, key, &puts, &in_group) {
                        Ok(Some(existing)) => outcomes.push(EncodedOutcome::Existing(existing)),
                        Ok(None) => {
                            let index = Some(index);
                            put(&mut puts, &mut in_group, Table::Records, key, value, index);
                            events.push(template.created(id));
                            outcomes.push(EncodedOutcome::Created);
                        }
                        Err(reason) => {
                            lookup_failed = Some(reason);
                            break;
                        }
                    }
                }
                match lookup_failed {
                    None => replies.push(HeldReply::Insert(reply, outcomes)),
                    Some(reason) => {
                        for undone in puts.drain(mark..) {
                            in_group.remove(&(undone.table, undone.key));
                        }
                        events.truncate(events_mark);
                        replies.push(HeldReply::Refused(Refusal::Insert(reply), reason));
                    }
                }
            }
            Write::Replace(replacement, reply) => {
                let Replacement {
                    key,
                    expected,
                    value,
                    index,
                    event,
                } = *replacement;
                match stored(Table::Records, key, &puts, &in_group) {
                    Ok(Some(current)) if current == expected => {
                        let index = Some(index);
                        put(&mut puts, &mut in_group, Table::Records, key, value, index);
                        events.push(event);
                        replies.push(HeldReply::Replace(reply, EncodedOutcome::Created));
                    }
                    Ok(Some(current)) => {
                        replies.push(HeldReply::Replace(reply, EncodedOutcome::Existing(current)));
                    }
                    Ok(None) => replies.push(HeldReply::Replace(reply, EncodedOutcome::Missing)),
                    Err(reason) => replies.push(HeldReply::Refused(Refusal::One(reply), reason)),
                }
            }
            Write::Audit(drafts, reply) => {
                events.extend(drafts);
                replies.push(HeldReply::Audit(reply));
            }
            Write::InsertBatch(key, value, reply) => {
                match stored(Table::Batches, key, &puts, &in_group) {
                    Ok(Some(existing)) => {
                        replies.push(HeldReply::InsertBatch(
                            reply,
                            EncodedOutcome::Existing(existing),
                        ));
                    }
                    Ok(None) => {
                        put(&mut puts, &mut in_group, Table::Batches, key, value, None);
                        replies.push(HeldReply::InsertBatch(reply, EncodedOutcome::Created));
                    }
                    Err(reason) => {
                        replies.push(HeldReply::Refused(Refusal::One(reply), reason));
                    }
                }
            }
            Write::PutBatch(key, value, reply) => {
                put(&mut puts, &mut in_group, Table::Batches, key, value, None);
                replies.push(HeldReply::PutBatch(reply));
            }
            Write::PutBatchIf(key, value, expected, reply) => {
                let unchanged = stored(Table::Batches, key, &puts, &in_group).map(|current| {
                    current.is_some_and(|bytes| {
                        decode::<BatchReport>(&bytes).is_ok_and(|current| current == *expected)
                    })
                });
                match unchanged {
                    Ok(true) => {
                        put(&mut puts, &mut in_group, Table::Batches, key, value, None);
                        replies.push(HeldReply::PutBatchIf(reply, true));
                    }
                    Ok(false) => replies.push(HeldReply::PutBatchIf(reply, false)),
                    Err(reason) => replies.push(HeldReply::Refused(Refusal::Flag(reply), reason)),
                }
            }
            #[cfg(test)]
            Write::Crash => panic!("injected writer crash"),
            #[cfg(test)]
            Write::Block(until) => drop(until.recv()),
        }
    }
    if failure.is_some() || events.is_empty() {
        return GroupDecision {
            puts,
            replies,
            failure,
        };
    }
    // The events first: a torn append can keep an event whose data is cut, never the reverse.
    let mut journaled = Vec::with_capacity(events.len() + puts.len());
    for draft in events {
        match head.append(draft) {
            Ok(event) => journaled.push(event),
            Err(reason) => {
                return GroupDecision {
                    puts: Vec::new(),
                    replies,
                    failure: Some(format!("cannot encode an audit event: {reason}")),
                };
            }
        }
    }
    journaled.extend(puts);
    GroupDecision {
        puts: journaled,
        replies,
        failure,
    }
}

/// The held reply of a write that is not decided (its group fails as a whole).
#[cfg_attr(
    not(test),
    expect(
        clippy::unnecessary_wraps,
        reason = "only test-only writes have no reply"
    )
)]
fn undecided(write: Write) -> Option<HeldReply> {
    match write {
        Write::Insert(_, _, reply) => Some(HeldReply::Insert(reply, Vec::new())),
        Write::InsertBatch(_, _, reply) => {
            Some(HeldReply::InsertBatch(reply, EncodedOutcome::Created))
        }
        Write::Replace(_, reply) => Some(HeldReply::Replace(reply, EncodedOutcome::Missing)),
        Write::Audit(_, reply) => Some(HeldReply::Audit(reply)),
        Write::PutBatch(_, _, reply) => Some(HeldReply::PutBatch(reply)),
        Write::PutBatchIf(_, _, _, reply) => Some(HeldReply::PutBatchIf(reply, false)),
        #[cfg(test)]
        Write::Crash | Write::Block(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::Record;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::embedded::tests::{draft, record, within};
    use crate::store::{Inserted, RecordStore, StoreHealth};

    #[tokio::test]
    async fn an_io_error_is_latched_fails_health_and_keeps_acknowledged_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let kept = record("before the fault");
        within(store.insert(kept.clone(), &draft()))
            .await
            .expect("insert");
        assert_eq!(store.health(), StoreHealth::Ok);

        store
            .engine
            .fail_appends
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let refused = within(store.insert(record("during the fault"), &draft())).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable { .. })),
            "{refused:?}"
        );
        assert!(
            matches!(store.health(), StoreHealth::Failed(reason) if reason.contains("journal write failed")),
            "health reports the latched failure"
        );

        // Latched: the device "recovering" does not make unsynced writes look durable again.
        store
            .engine
            .fail_appends
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let after = within(store.insert(record("after the fault"), &draft())).await;
        assert!(
            matches!(after, Err(StoreError::Unavailable { .. })),
            "{after:?}"
        );
        assert!(within(store.check()).await.is_err(), "readiness fails too");
        assert_eq!(within(store.get(kept.id)).await.expect("get"), Some(kept));
    }

    #[tokio::test]
    async fn a_dead_writer_fails_health_and_callers_do_not_hang() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store.enqueue(Write::Crash).expect("enqueue the crash");
        let refused = within(store.insert(record("after the crash"), &draft())).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable { .. })),
            "{refused:?}"
        );
        // The reply of a write queued behind the crash is dropped while the writer unwinds, a
        // moment before the thread's latch: wait (bounded) for health to say so.
        within(async {
            while store.health() == StoreHealth::Ok {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(
            matches!(store.health(), StoreHealth::Failed(reason) if reason.contains("writer")),
            "health reports the dead writer: {:?}",
            store.health()
        );
        let after = within(store.insert(record("after the latch"), &draft())).await;
        assert!(
            matches!(after, Err(StoreError::Unavailable { .. })),
            "{after:?}"
        );
    }

    /// One write whose lookup fails, in a group with others: it alone is refused, the others are
    /// stored, and the store stays healthy.
    #[tokio::test]
    async fn one_bad_write_in_a_group_fails_only_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let (before, bad, after) = (record("before"), record("bad"), record("after"));
        *store.engine.fail_lookup.lock().expect("lock") = Some(bad.id.as_uuid().as_u128());
        // Hold the writer so that the three writes wait in the queue and form one group.
        let (release, blocked) = std_mpsc::channel();
        store
            .enqueue(Write::Block(blocked))
            .expect("enqueue the block");
        let calls = [before.clone(), bad.clone(), after.clone()].map(|r| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_many(vec![r], &draft()).await })
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(release);
        let [first, second, third] = calls;
        assert_eq!(
            within(first).await.expect("join").expect("stored"),
            vec![Inserted::Created]
        );
        assert!(
            matches!(
                within(second).await.expect("join"),
                Err(StoreError::Unavailable { .. })
            ),
            "the bad write is refused"
        );
        assert_eq!(
            within(third).await.expect("join").expect("stored"),
            vec![Inserted::Created]
        );
        assert_eq!(store.health(), StoreHealth::Ok);
        assert_eq!(
            within(store.get(before.id)).await.expect("get"),
            Some(before)
        );
        assert_eq!(within(store.get(after.id)).await.expect("get"), Some(after));
        *store.engine.fail_lookup.lock().expect("lock") = None;
        assert_eq!(within(store.get(bad.id)).await.expect("get"), None);
    }

    /// The writer's lookup of an id just acknowledged, while the applier moves it from the pending
    /// map into redb: it must find it in one or the other (a stale read snapshot once missed it,
    /// and the resubmission overwrote the acknowledged record).
    #[tokio::test]
    async fn a_write_acknowledged_a_moment_ago_is_never_missed_by_the_next_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        for round in 0..1000 {
            let first = record(&format!("first {round}"));
            within(store.insert(first.clone(), &draft()))
                .await
                .expect("insert");
            // A new id first, so that the group opens its read snapshot before the second lookup.
            let again = Record::new(first.id, record("resubmitted").fields);
            let outcomes = within(store.insert_many(vec![record("new"), again], &draft()))
                .await
                .expect("insert_many");
            assert_eq!(
                outcomes,
                vec![Inserted::Created, Inserted::Existing(first)],
                "round {round}"
            );
        }
    }
}

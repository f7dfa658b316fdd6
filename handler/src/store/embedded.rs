//! The embedded store: a [redb](https://docs.rs/redb) file in `MEDIFLOW_DATA_DIR`.
//!
//! Durability: every acknowledged write was committed with `Durability::Immediate` (fsync) before
//! the caller hears back. Throughput: one writer thread takes every write waiting in its queue
//! and commits them in one transaction (group commit), so concurrent clients share one fsync.
//! Reads go straight to redb's MVCC read transactions and never wait for the writer.
//! See docs/adr/0002-embedded-store.md.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::embedded_site_index as site_index;
use super::{Inserted, RecordStore, StoreError};
use crate::domain::{BatchId, BatchReport, ListQuery, Record, RecordId};

const RECORDS: TableDefinition<u128, &[u8]> = TableDefinition::new("records");
const BATCHES: TableDefinition<u128, &[u8]> = TableDefinition::new("batches");

/// redb's page cache. Its default (1 GiB) would outgrow a pod's memory limit as data grows; reads
/// beyond the cache go to the OS page cache, which the kernel can reclaim.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Most writes folded into one commit.
const MAX_GROUP: usize = 256;

enum Write {
    Insert(
        Vec<Record>,
        oneshot::Sender<Result<Vec<Inserted>, StoreError>>,
    ),
    InsertBatch(
        BatchReport,
        oneshot::Sender<Result<BatchReport, StoreError>>,
    ),
    PutBatch(BatchReport, oneshot::Sender<Result<(), StoreError>>),
}

/// The embedded backend. Cheap to clone; all clones share one database and one writer thread.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: std_mpsc::Sender<Write>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join("mediflow.redb"))
            .map_err(|e| StoreError::unavailable(format!("cannot open the embedded store: {e}")))?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(RECORDS).map_err(unavailable)?;
        txn.open_table(BATCHES).map_err(unavailable)?;
        site_index::open_and_backfill(&txn, RECORDS)?;
        txn.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let (writer, queue) = std_mpsc::channel();
        let writer_db = Arc::clone(&db);
        std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || run_writer(&writer_db, &queue))
            .map_err(|e| StoreError::unavailable(format!("cannot start the store writer: {e}")))?;
        Ok(Self { db, writer })
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (done, outcome) = oneshot::channel();
        self.writer
            .send(make(done))
            .map_err(|_| StoreError::unavailable("the store writer has stopped"))?;
        outcome
            .await
            .map_err(|_| StoreError::unavailable("the store writer has stopped"))?
    }

    fn read<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<u128, &[u8]>,
        key: u128,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(table).map_err(unavailable)?;
        let Some(bytes) = table.get(key).map_err(unavailable)? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

fn unavailable(err: impl Into<redb::Error>) -> StoreError {
    StoreError::unavailable(err.into())
}

/// The writer thread: block for one write, take whatever else is waiting, commit once, answer all.
fn run_writer(db: &Database, queue: &std_mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

enum Outcome {
    Inserted(Vec<Inserted>),
    Batch(BatchReport),
    Done,
}

fn commit_group(db: &Database, group: Vec<Write>) {
    let result = db.begin_write().map_err(unavailable).and_then(|txn| {
        let outcomes = group
            .iter()
            .map(|write| apply(&txn, write))
            .collect::<Result<Vec<_>, _>>()?;
        txn.commit().map_err(unavailable)?;
        Ok(outcomes)
    });
    match result {
        Ok(outcomes) => {
            for (write, outcome) in group.into_iter().zip(outcomes) {
                match (write, outcome) {
                    (Write::Insert(_, done), Outcome::Inserted(v)) => drop(done.send(Ok(v))),
                    (Write::InsertBatch(_, done), Outcome::Batch(r)) => drop(done.send(Ok(r))),
                    (Write::PutBatch(_, done), Outcome::Done) => drop(done.send(Ok(()))),
                    _ => unreachable!("apply answers each write with its own outcome kind"),
                }
            }
        }
        Err(err) => {
            let reason = err.to_string();
            for write in group {
                let failed = || StoreError::unavailable(&reason);
                match write {
                    Write::Insert(_, done) => drop(done.send(Err(failed()))),
                    Write::InsertBatch(_, done) => drop(done.send(Err(failed()))),
                    Write::PutBatch(_, done) => drop(done.send(Err(failed()))),
                }
            }
        }
    }
}

fn apply(txn: &WriteTransaction, write: &Write) -> Result<Outcome, StoreError> {
    match write {
        Write::Insert(records, _) => {
            let mut table = txn.open_table(RECORDS).map_err(unavailable)?;
            let mut index = site_index::open(txn)?;
            let mut outcomes = Vec::with_capacity(records.len());
            for record in records {
                let key = record.id.as_uuid().as_u128();
                if let Some(existing) = table.get(key).map_err(unavailable)? {
                    let existing = serde_json::from_slice(existing.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    outcomes.push(Inserted::Existing(existing));
                    continue;
                }
                table
                    .insert(key, encode(record)?.as_slice())
                    .map_err(unavailable)?;
                site_index::add(&mut index, record)?;
                outcomes.push(Inserted::Created);
            }
            Ok(Outcome::Inserted(outcomes))
        }
        Write::InsertBatch(report, _) => {
            let mut table = txn.open_table(BATCHES).map_err(unavailable)?;
            let key = report.batch_id.as_uuid().as_u128();
            if let Some(existing) = table.get(key).map_err(unavailable)? {
                return serde_json::from_slice(existing.value())
                    .map(Outcome::Batch)
                    .map_err(|e| StoreError::Corrupt(e.to_string()));
            }
            table
                .insert(key, encode(report)?.as_slice())
                .map_err(unavailable)?;
            Ok(Outcome::Batch(report.clone()))
        }
        Write::PutBatch(report, _) => {
            let mut table = txn.open_table(BATCHES).map_err(unavailable)?;
            table
                .insert(
                    report.batch_id.as_uuid().as_u128(),
                    encode(report)?.as_slice(),
                )
                .map_err(unavailable)?;
            Ok(Outcome::Done)
        }
    }
}

fn encode(value: &impl serde::Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl RecordStore for EmbeddedStore {
    async fn insert(&self, record: Record) -> Result<Inserted, StoreError> {
        let mut outcomes = self.insert_many(vec![record]).await?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("insert returned no outcome".into()))
    }

    async fn insert_many(&self, records: Vec<Record>) -> Result<Vec<Inserted>, StoreError> {
        self.submit(|done| Write::Insert(records, done)).await
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.read(RECORDS, id.as_uuid().as_u128())
    }

    async fn insert_batch(&self, report: BatchReport) -> Result<BatchReport, StoreError> {
        self.submit(|done| Write::InsertBatch(report, done)).await
    }

    async fn put_batch(&self, report: BatchReport) -> Result<(), StoreError> {
        self.submit(|done| Write::PutBatch(report, done)).await
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchReport>, StoreError> {
        self.read(BATCHES, id.as_uuid().as_u128())
    }

    /// One read transaction: the index page and the records it names are one snapshot.
    async fn list(&self, query: &ListQuery, max: usize) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let ids = site_index::page(&txn, query, max)?;
        let table = txn.open_table(RECORDS).map_err(unavailable)?;
        ids.into_iter()
            .map(|id| {
                let bytes = table
                    .get(id.as_uuid().as_u128())
                    .map_err(unavailable)?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("indexed record {id} is missing"))
                    })?;
                serde_json::from_slice(bytes.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn check(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        txn.open_table(RECORDS).map_err(unavailable)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

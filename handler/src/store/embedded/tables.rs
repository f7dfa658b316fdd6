//! The embedded store's redb tables (records, batch reports, the audit trail and its by-record
//! index), how a journal [`Table`] maps to its redb table, and how values are kept in them: the
//! JSON bytes of the domain type, exactly as the journal holds them. The by-site index has its
//! own tables ([`super::site_index`]).

use bytes::Bytes;
use redb::{Database, TableDefinition};

use super::journal::Table;
use super::site_index;
use crate::store::StoreError;

pub(super) const RECORDS: TableDefinition<u128, &[u8]> = TableDefinition::new("records");
pub(super) const BATCHES: TableDefinition<u128, &[u8]> = TableDefinition::new("batches");
/// Audit events by seq (the embedded store has one chain, [`super::CHAIN`]); append-only: nothing
/// in the store updates or removes an entry.
pub(super) const AUDIT: TableDefinition<u128, &[u8]> = TableDefinition::new("audit");
/// `(record key, seq)` of every event naming a record: a record's history without a scan.
pub(super) const AUDIT_BY_RECORD: TableDefinition<(u128, u128), ()> =
    TableDefinition::new("audit_by_record");

/// Creates every table that does not exist yet, and the by-site index (filled once from the
/// records written before it existed), in one transaction.
pub(super) fn create(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    txn.open_table(RECORDS).map_err(unavailable)?;
    txn.open_table(BATCHES).map_err(unavailable)?;
    txn.open_table(AUDIT).map_err(unavailable)?;
    txn.open_table(AUDIT_BY_RECORD).map_err(unavailable)?;
    site_index::open_and_backfill(&txn, RECORDS)?;
    txn.commit().map_err(unavailable)?;
    Ok(())
}

pub(super) const fn definition(table: Table) -> TableDefinition<'static, u128, &'static [u8]> {
    match table {
        Table::Records => RECORDS,
        Table::Batches => BATCHES,
        Table::Audit => AUDIT,
    }
}

pub(super) fn unavailable(err: impl Into<redb::Error>) -> StoreError {
    StoreError::unavailable(err.into())
}

pub(super) fn encode(value: &impl serde::Serialize) -> Result<Bytes, StoreError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

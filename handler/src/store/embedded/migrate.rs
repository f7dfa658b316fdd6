//! One-time migration of a data directory written before ADR 0006's LSM tree: the records and
//! batch reports of `mediflow.redb` are copied into the tree (with their by-site index entries),
//! the tree is persisted, and only then is the redb file renamed `mediflow.redb.migrated` (kept,
//! not deleted: the operator removes it). A crash midway leaves the redb file in place, and the
//! next open copies everything again; copying is a put of the same bytes, so nothing doubles.

use std::path::Path;

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::Tree;
use super::journal::{Put, Table};
use crate::store::StoreError;

const REDB_FILE: &str = "mediflow.redb";
const MIGRATED_FILE: &str = "mediflow.redb.migrated";
const RECORDS: TableDefinition<u128, &[u8]> = TableDefinition::new("records");
const BATCHES: TableDefinition<u128, &[u8]> = TableDefinition::new("batches");

/// Puts per tree batch while copying.
const CHUNK: usize = 1024;

/// Migrates `dir`'s redb file into `tree`, if there is one.
pub(super) fn from_redb(dir: &Path, tree: &Tree) -> Result<(), StoreError> {
    let path = dir.join(REDB_FILE);
    if !path.exists() {
        return Ok(());
    }
    let failed = |e: &dyn std::fmt::Display| {
        StoreError::unavailable(format!("cannot migrate {}: {e}", path.display()))
    };
    let db = redb::Database::builder()
        .set_cache_size(super::CACHE_BYTES)
        .open(&path)
        .map_err(|e| failed(&e))?;
    let txn = db.begin_read().map_err(|e| failed(&e))?;
    let mut copied = 0_usize;
    for (definition, table) in [(RECORDS, Table::Records), (BATCHES, Table::Batches)] {
        let opened = match txn.open_table(definition) {
            Ok(opened) => opened,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(failed(&e)),
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        for entry in opened.iter().map_err(|e| failed(&e))? {
            let (key, value) = entry.map_err(|e| failed(&e))?;
            chunk.push(Put {
                table,
                key: key.value(),
                value: Bytes::copy_from_slice(value.value()),
                index: None,
            });
            if chunk.len() == CHUNK {
                tree.apply(chunk.iter()).map_err(|e| failed(&e))?;
                copied += chunk.len();
                chunk.clear();
            }
        }
        tree.apply(chunk.iter()).map_err(|e| failed(&e))?;
        copied += chunk.len();
    }
    drop(txn);
    drop(db);
    tree.persist().map_err(|e| failed(&e))?;
    std::fs::rename(&path, dir.join(MIGRATED_FILE)).map_err(|e| failed(&e))?;
    tracing::info!(
        copied,
        "migrated the embedded store from {REDB_FILE}; the old file is kept as {MIGRATED_FILE}"
    );
    Ok(())
}

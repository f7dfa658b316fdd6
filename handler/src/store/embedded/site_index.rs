//! The embedded store's index of records by site: redb table `records_by_site` keyed by
//! `(site_id, submission_date, record id)` with no value. It is written in the same transaction
//! as the record it points to, so the index and the records can never disagree, and it is read in
//! one MVCC read transaction together with the records (a page is a consistent snapshot).
//!
//! Kept apart from the rest of the embedded store on purpose: the write path calls [`add`] once
//! per new record and [`open_and_backfill`] once at open; everything else about the index lives
//! here.

use std::ops::Bound;

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

use crate::domain::{ListQuery, Record, RecordId};
use crate::store::StoreError;

pub(super) const BY_SITE: TableDefinition<(&str, &str, u128), ()> =
    TableDefinition::new("records_by_site");

/// Records written before the index existed are indexed once, at open; this marks it done.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INDEX_VERSION_KEY: &str = "records_by_site_version";
const INDEX_VERSION: u64 = 1;

/// The lowest and highest `YYYY-MM-DD` strings (bounds when `from`/`to` are absent).
const FIRST_DATE: &str = "0000-00-00";
const LAST_DATE: &str = "9999-12-31";

/// Creates the index table, and fills it from the records table the first time.
pub(super) fn open_and_backfill(
    txn: &WriteTransaction,
    records: TableDefinition<u128, &[u8]>,
) -> Result<(), StoreError> {
    let mut index = txn.open_table(BY_SITE).map_err(unavailable)?;
    let mut meta = txn.open_table(META).map_err(unavailable)?;
    if meta.get(INDEX_VERSION_KEY).map_err(unavailable)?.is_some() {
        return Ok(());
    }
    let records = txn.open_table(records).map_err(unavailable)?;
    if records.len().map_err(unavailable)? > 0 {
        tracing::info!("indexing stored records by site (once)");
    }
    for entry in records.iter().map_err(unavailable)? {
        let (id, bytes) = entry.map_err(unavailable)?;
        add(&mut index, &IndexKey::from_json(bytes.value())?, id.value())?;
    }
    meta.insert(INDEX_VERSION_KEY, INDEX_VERSION)
        .map_err(unavailable)?;
    Ok(())
}

/// Opens the index for writing in `txn` (once per write, then [`add`] per new record).
pub(super) fn open(
    txn: &WriteTransaction,
) -> Result<Table<'_, (&'static str, &'static str, u128), ()>, StoreError> {
    txn.open_table(BY_SITE).map_err(unavailable)
}

/// What the index needs of a record besides its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKey {
    site: Box<str>,
    date: Box<str>,
}

impl IndexKey {
    pub fn of(record: &Record) -> Self {
        Self {
            site: record.fields.site_id.as_str().into(),
            date: record.fields.submission_date.as_str().into(),
        }
    }

    /// Reads the key from a stored record's JSON without decoding (and validating) the rest.
    pub fn from_json(stored: &[u8]) -> Result<Self, StoreError> {
        #[derive(serde::Deserialize)]
        struct Keyed<'a> {
            #[serde(borrow)]
            site_id: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            submission_date: std::borrow::Cow<'a, str>,
        }
        let keyed: Keyed<'_> =
            serde_json::from_slice(stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Self {
            site: keyed.site_id.into(),
            date: keyed.submission_date.into(),
        })
    }
}

/// Indexes the record `id` that the same transaction is storing.
pub(super) fn add(
    index: &mut Table<'_, (&'static str, &'static str, u128), ()>,
    key: &IndexKey,
    id: u128,
) -> Result<(), StoreError> {
    index
        .insert((&*key.site, &*key.date, id), ())
        .map_err(unavailable)?;
    Ok(())
}

/// The ids of up to `max` records of the query, newest first (date, then id, descending).
pub(super) fn page(
    txn: &ReadTransaction,
    query: &ListQuery,
    max: usize,
) -> Result<Vec<RecordId>, StoreError> {
    let index = txn.open_table(BY_SITE).map_err(unavailable)?;
    let site = query.site.as_str();
    let from = query.from.as_ref().map_or(FIRST_DATE, |d| d.as_str());
    let to = query.to.as_ref().map_or(LAST_DATE, |d| d.as_str());
    let lower = Bound::Included((site, from, 0_u128));
    let upper = match &query.after {
        // The token is bound to this query's range, so its cursor lies inside it.
        Some(after) => Bound::Excluded((site, after.date.as_str(), after.id.as_uuid().as_u128())),
        None => Bound::Included((site, to, u128::MAX)),
    };
    let mut ids = Vec::with_capacity(max.min(ListQuery::MAX_LIMIT + 1));
    for entry in index
        .range::<(&str, &str, u128)>((lower, upper))
        .map_err(unavailable)?
        .rev()
        .take(max)
    {
        let (key, _) = entry.map_err(unavailable)?;
        let (_, _, id) = key.value();
        ids.push(RecordId::from_uuid(uuid::Uuid::from_u128(id)));
    }
    Ok(ids)
}

fn unavailable(err: impl Into<redb::Error>) -> StoreError {
    StoreError::unavailable(err.into())
}

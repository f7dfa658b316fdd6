//! The embedded store's index of records by site: the partition `records_by_site`, whose keys are
//! `site_id`, a 0 byte, `submission_date` (10 bytes, `YYYY-MM-DD`), then the record id (16 bytes,
//! big-endian), with no value. Site ids are ASCII letters and digits, so the 0 byte ends the site
//! and byte order is (site, date, id) order. An entry is written in the same atomic batch as the
//! record it points to, and a listing reads the index and the records at one instant, so the two
//! never disagree.
//!
//! Kept apart from `embedded.rs` on purpose: the store's write path calls [`IndexKey::entry`]
//! once per new record; everything else about the index lives here.

use std::ops::Bound;

use super::StoreError;
use crate::domain::{ListQuery, Record, RecordId};

pub(super) const PARTITION: &str = "records_by_site";

/// The lowest and highest `YYYY-MM-DD` strings (bounds when `from`/`to` are absent).
const FIRST_DATE: &str = "0000-00-00";
const LAST_DATE: &str = "9999-12-31";

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

    /// The index entry's key for record `id`.
    pub(super) fn entry(&self, id: u128) -> Vec<u8> {
        entry_key(&self.site, &self.date, id)
    }
}

fn entry_key(site: &str, date: &str, id: u128) -> Vec<u8> {
    let mut key = Vec::with_capacity(site.len() + 1 + date.len() + 16);
    key.extend_from_slice(site.as_bytes());
    key.push(0);
    key.extend_from_slice(date.as_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The ids of up to `max` records of the query, newest first (date, then id, descending), read
/// from `index` (a snapshot taken with the records' snapshot).
pub(super) fn page(
    index: &fjall::Snapshot,
    query: &ListQuery,
    max: usize,
) -> Result<Vec<RecordId>, StoreError> {
    let site = query.site.as_str();
    let from = query.from.as_ref().map_or(FIRST_DATE, |d| d.as_str());
    let to = query.to.as_ref().map_or(LAST_DATE, |d| d.as_str());
    let lower = Bound::Included(entry_key(site, from, 0));
    let upper = match &query.after {
        // The token is bound to this query's range, so its cursor lies inside it.
        Some(after) => Bound::Excluded(entry_key(
            site,
            after.date.as_str(),
            after.id.as_uuid().as_u128(),
        )),
        None => Bound::Included(entry_key(site, to, u128::MAX)),
    };
    let mut ids = Vec::with_capacity(max.min(ListQuery::MAX_LIMIT + 1));
    for entry in index.range((lower, upper)).rev().take(max) {
        let (key, _) = entry.map_err(unavailable)?;
        let id = key
            .len()
            .checked_sub(16)
            .and_then(|at| <[u8; 16]>::try_from(&key[at..]).ok())
            .ok_or_else(|| StoreError::Corrupt("a by-site index key is too short".into()))?;
        ids.push(RecordId::from_uuid(uuid::Uuid::from_u128(
            u128::from_be_bytes(id),
        )));
    }
    Ok(ids)
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(err)
}

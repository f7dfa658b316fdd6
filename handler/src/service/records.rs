//! Creating and reading single records, and listing a site's records.

use super::ServiceError;
use crate::domain::decode::record_from_slice;
use crate::domain::{Cursor, FieldError, ListQuery, Record, RecordId, RecordPage};
use crate::store::{Inserted, RecordStore};

/// The largest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A record as created, and whether this call created it or replayed an earlier identical call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub record: Record,
    pub replayed: bool,
}

/// Checks an `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
pub fn check_idempotency_key(raw: &[u8]) -> Result<&str, ServiceError> {
    let valid = !raw.is_empty()
        && raw.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && raw.iter().all(|b| (0x21..=0x7e).contains(b));
    if !valid {
        return Err(ServiceError::Invalid(vec![FieldError::header(
            "idempotency-key",
            "idempotency_key_invalid",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )]));
    }
    // Visible ASCII is valid UTF-8.
    std::str::from_utf8(raw).map_err(|_| ServiceError::Internal("ascii was not utf-8".into()))
}

/// POST /records: decodes and validates `body`, stores it, and returns the stored record.
///
/// With an `Idempotency-Key` the record's id is derived from the key, so a retry finds the record
/// the first call stored: the same body replays it, a different body is a conflict.
pub async fn create(
    store: &dyn RecordStore,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Created, ServiceError> {
    let fields = record_from_slice(body).map_err(ServiceError::Invalid)?;
    let id = idempotency_key.map_or_else(RecordId::random, RecordId::for_idempotency_key);
    let record = Record::new(id, fields);
    match store
        .insert(
            record.clone(),
            &crate::domain::AuditDraft::new(
                "legacy",
                crate::domain::AuditAction::Create,
                "created",
            ),
        )
        .await?
    {
        Inserted::Created => Ok(Created {
            record,
            replayed: false,
        }),
        Inserted::Existing(stored) if idempotency_key.is_some() => {
            if stored.fields == record.fields {
                Ok(Created {
                    record: stored,
                    replayed: true,
                })
            } else {
                Err(ServiceError::IdempotencyConflict)
            }
        }
        Inserted::Existing(_) => Err(ServiceError::Internal("random record id collided".into())),
    }
}

/// GET /records/{id}: the stored JSON document (the response body as it is). Any id that is not a
/// stored record's is a 404, malformed or not.
pub async fn get_json(store: &dyn RecordStore, raw_id: &str) -> Result<bytes::Bytes, ServiceError> {
    let id = RecordId::parse(raw_id).ok_or(ServiceError::RecordNotFound)?;
    store
        .get_json(id)
        .await?
        .ok_or(ServiceError::RecordNotFound)
}

/// GET /records?site_id=...: one page of a site's records, newest first, and the token of the
/// next page when there is one. `raw_query` is the URL's query string as sent.
pub async fn list(
    store: &dyn RecordStore,
    raw_query: Option<&str>,
) -> Result<RecordPage, ServiceError> {
    let query = ListQuery::from_query_string(raw_query).map_err(ServiceError::Invalid)?;
    // One more than a page tells whether another page follows without a second round trip.
    let mut records = store.list(&query, query.limit + 1).await?;
    let continuation = if records.len() > query.limit {
        records.truncate(query.limit);
        records.last().map(|last| {
            query.token(&Cursor {
                date: last.fields.submission_date.clone(),
                id: last.id,
            })
        })
    } else {
        None
    };
    Ok(RecordPage {
        records,
        continuation,
    })
}

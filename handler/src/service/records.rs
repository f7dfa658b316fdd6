//! Creating and reading single records, and listing a site's records.

use sha2::{Digest, Sha256};

use super::ServiceError;
use super::audit::Call;
use crate::domain::audit::hex;
use crate::domain::decode::record_from_slice;
use crate::domain::identity::{Role, Sites};
use crate::domain::record::Status;
use crate::domain::{
    AuditAction, Cursor, FieldError, ListQuery, Principal, Record, RecordId, RecordPage,
};
use crate::store::{Inserted, RecordStore, Replaced};

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

/// POST /records: decodes and validates `body`, checks that the caller may submit it (role
/// `submit`, the record's site, `pending` unless it may review), stores it with its create event,
/// and returns the stored record.
///
/// With an `Idempotency-Key` the record's id is derived from the key (and, for a client of the
/// client table, its id: two clients' keys never meet), so a retry finds the record the first call
/// stored: the same body replays it, a different body is a conflict.
pub async fn create(
    store: &dyn RecordStore,
    call: Call<'_>,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Created, ServiceError> {
    call.require(Role::Submit, AuditAction::Create)?;
    let fields = record_from_slice(body).map_err(ServiceError::Invalid)?;
    call.caller
        .require_site(&fields.site_id)
        .map_err(|denied| call.refuse(denied, AuditAction::Create, Vec::new()))?;
    check_status_allowed(call.caller, fields.status).map_err(ServiceError::Invalid)?;
    let id = idempotency_key.map_or_else(RecordId::random, |key| {
        RecordId::for_idempotency_key(&scoped_key(call.caller, key))
    });
    let record = Record::new(id, fields);
    let template = call.draft(AuditAction::Create, "created");
    match store.insert(record.clone(), &template).await? {
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

/// The name an idempotency key (or batch id) is derived under: the key itself for the legacy and
/// anonymous callers (ids as before), the client id and the key for a client of the table.
pub fn scoped_key(caller: &Principal, key: &str) -> String {
    match caller.id_scope() {
        Some(client) => format!("{client}\u{0}{key}"),
        None => key.to_owned(),
    }
}

/// A submission's status must be `pending` unless the caller may review (422 otherwise).
pub fn check_status_allowed(caller: &Principal, status: Status) -> Result<(), Vec<FieldError>> {
    if status == Status::Pending || caller.may_choose_status() {
        return Ok(());
    }
    Err(vec![FieldError::body(
        "status",
        "status_requires_review",
        "Only a client with the review role may submit a status other than pending; submit it as pending and have it reviewed",
        &serde_json::Value::from(status_name(status)),
    )])
}

fn status_name(status: Status) -> &'static str {
    Status::ALL
        .iter()
        .find(|(_, s)| *s == status)
        .map_or("unknown", |(name, _)| name)
}

/// A record's version as an HTTP entity tag: a digest of its stored JSON (every change to the
/// record changes it).
pub fn etag(json: &[u8]) -> String {
    let digest = hex(&Sha256::digest(json));
    format!("\"{}\"", &digest[..32])
}

/// GET /records/{id}: the stored JSON document (the response body as it is) and its ETag. Any
/// id that is not a stored record's of a site the caller holds is a 404, malformed or not.
pub async fn get_json(
    store: &dyn RecordStore,
    call: Call<'_>,
    raw_id: &str,
) -> Result<(bytes::Bytes, String), ServiceError> {
    call.require(Role::Read, AuditAction::Read)?;
    let Some(id) = RecordId::parse(raw_id) else {
        call.record(call.draft(AuditAction::Read, "not_found"))?;
        return Err(ServiceError::RecordNotFound);
    };
    let Some(json) = store.get_json(id).await? else {
        call.record(call.draft(AuditAction::Read, "not_found").records([id]))?;
        return Err(ServiceError::RecordNotFound);
    };
    if !matches!(call.caller.sites, Sites::All) {
        let record: Record =
            serde_json::from_slice(&json).map_err(|e| ServiceError::Internal(e.to_string()))?;
        if !call.caller.holds_site(&record.fields.site_id) {
            // No existence leak: the answer is the not-found one; the event says why.
            call.record(call.draft(AuditAction::Read, "denied_site").records([id]))?;
            return Err(ServiceError::RecordNotFound);
        }
    }
    call.record(call.draft(AuditAction::Read, "ok").records([id]))?;
    let tag = etag(&json);
    Ok((json, tag))
}

/// GET /records?site_id=...: one page of a site's records, newest first, and the token of the
/// next page when there is one. `params` are the query's parameters, decoded, in order.
pub async fn list(
    store: &dyn RecordStore,
    call: Call<'_>,
    params: &[(String, String)],
) -> Result<RecordPage, ServiceError> {
    call.require(Role::Read, AuditAction::List)?;
    let query = ListQuery::from_params(params).map_err(ServiceError::Invalid)?;
    call.caller
        .require_site(&query.site)
        .map_err(|denied| call.refuse(denied, AuditAction::List, Vec::new()))?;
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
    call.record(
        call.draft(AuditAction::List, "ok")
            .records(records.iter().map(|r| r.id)),
    )?;
    Ok(RecordPage {
        records,
        continuation,
    })
}

use crate::domain::audit::MAX_REASON_CHARS;

/// A reviewed record and its new ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub record: Record,
    pub etag: String,
}

/// POST /records/{id}/review `{"status": "validated"|"rejected", "reason": "..."}`: moves a
/// pending record to its reviewed status, with the old value, the new value and the reason in its
/// review event (durable with the change). 404 as for GET; 409 when it is not pending; 412 when
/// `if_match` is not the record's current ETag.
pub async fn review(
    store: &dyn RecordStore,
    call: Call<'_>,
    raw_id: &str,
    body: &[u8],
    if_match: Option<&str>,
) -> Result<Reviewed, ServiceError> {
    call.require(Role::Review, AuditAction::Review)?;
    let (status, reason) = review_from_slice(body)?;
    let id = RecordId::parse(raw_id).ok_or(ServiceError::RecordNotFound)?;
    let Some(stored_json) = store.get_json(id).await? else {
        return Err(ServiceError::RecordNotFound);
    };
    let stored: Record = serde_json::from_slice(&stored_json)
        .map_err(|e| ServiceError::Internal(format!("stored record {id} is unreadable: {e}")))?;
    if !call.caller.holds_site(&stored.fields.site_id) {
        call.record(call.draft(AuditAction::Review, "denied_site").records([id]))?;
        return Err(ServiceError::RecordNotFound);
    }
    let current_tag = etag(&stored_json);
    if let Some(expected) = if_match
        && !if_match_allows(expected, &current_tag)
    {
        return Err(ServiceError::PreconditionFailed);
    }
    if stored.fields.status != Status::Pending {
        return Err(ServiceError::NotPending {
            status: stored.fields.status,
        });
    }
    let mut new = stored.clone();
    new.fields.status = status;
    let mut event = call.draft(AuditAction::Review, "reviewed").records([id]);
    event.old_status = Some(stored.fields.status);
    event.new_status = Some(status);
    event.reason = Some(reason);
    match store.replace(&stored, new.clone(), event).await? {
        Replaced::Done => {
            let etag = etag(&encode(&new)?);
            Ok(Reviewed { record: new, etag })
        }
        Replaced::Changed(None) => Err(ServiceError::RecordNotFound),
        // Someone else reviewed it in between.
        Replaced::Changed(Some(_)) if if_match.is_some() => Err(ServiceError::PreconditionFailed),
        Replaced::Changed(Some(now)) => Err(ServiceError::NotPending {
            status: now.fields.status,
        }),
    }
}

/// Whether an `If-Match` value admits the current tag: `*`, or a list naming it (weak or strong).
fn if_match_allows(header: &str, current: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current || tag.strip_prefix("W/") == Some(current))
}

fn encode(record: &Record) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(record).map_err(|e| ServiceError::Internal(e.to_string()))
}

/// The review body: every problem listed, unknown fields refused.
fn review_from_slice(body: &[u8]) -> Result<(Status, String), ServiceError> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        ServiceError::Invalid(vec![FieldError::body(
            "body",
            "json_invalid",
            "The body is not valid JSON",
            &Value::Null,
        )])
    })?;
    let Value::Object(mut object) = value else {
        return Err(ServiceError::Invalid(vec![FieldError::body(
            "body",
            "model_attributes_type",
            "Input should be an object with status and reason",
            &Value::Null,
        )]));
    };
    let mut errors = Vec::new();
    let status = match object.remove("status") {
        Some(Value::String(s)) if s == "validated" => Some(Status::Validated),
        Some(Value::String(s)) if s == "rejected" => Some(Status::Rejected),
        None => {
            errors.push(FieldError::body(
                "status",
                "missing",
                "Field required",
                &Value::Null,
            ));
            None
        }
        Some(other) => {
            errors.push(FieldError::body(
                "status",
                "enum",
                "Input should be 'validated' or 'rejected'",
                &other,
            ));
            None
        }
    };
    let reason = match object.remove("reason") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_REASON_CHARS => {
            Some(s)
        }
        None => {
            errors.push(FieldError::body(
                "reason",
                "missing",
                "Field required",
                &Value::Null,
            ));
            None
        }
        Some(other) => {
            errors.push(FieldError::body(
                "reason",
                "string_length",
                "A reason of 1 to 500 characters is required",
                &other,
            ));
            None
        }
    };
    for (name, value) in object {
        errors.push(FieldError::body(
            &name,
            "extra_forbidden",
            "Extra inputs are not permitted",
            &value,
        ));
    }
    match (status, reason) {
        (Some(status), Some(reason)) if errors.is_empty() => Ok((status, reason)),
        _ => Err(ServiceError::Invalid(errors)),
    }
}

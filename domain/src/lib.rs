//! The MediFlow domain: what a clinical-trial record and a batch are, and the rules a submission
//! must pass. Nothing here knows about HTTP, Azure or storage engines.

pub mod audit;
pub mod batch;
pub mod decode;
pub mod errors;
pub mod identity;
pub mod listing;
pub mod record;

pub use audit::{AuditAction, AuditDraft, AuditEvent};
pub use batch::{BatchId, BatchMessage, BatchReport, BatchState, RejectedRecord};
pub use errors::FieldError;
pub use identity::{ClientId, Principal, Role};
pub use listing::{Cursor, ListQuery, RecordPage};
pub use record::{NewRecord, Record, RecordId};

/// Lower-case hex of `bytes` (content hashes, audit hashes, key digests).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

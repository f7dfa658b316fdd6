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

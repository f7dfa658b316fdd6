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

/// Lower-case hex of `bytes` (content hashes, audit hashes, key digests). A table lookup per
/// nibble: `write!("{b:02x}")` per byte went through the formatter and cost about 3% of a GET's
/// CPU (two SHA-256 hashes in hex per audit event; BENCHMARKS.md).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(super::hex(&[]), "");
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        let all: Vec<u8> = (0..=255).collect();
        let expected = all.iter().fold(String::new(), |mut out, b| {
            use std::fmt::Write as _;
            let _ = write!(out, "{b:02x}");
            out
        });
        assert_eq!(
            super::hex(&all),
            expected,
            "every byte as the formatter writes it"
        );
    }
}

//! Splitting rows into batch messages the service accepts, with ids that are the same on every run
//! of the same file.
//!
//! The limits are the service's own ([`BatchMessage::MAX_JSON_BYTES`]: the JSON body of
//! `POST /batches`, measured in bytes as sent, which base64-encodes to the 64 KiB Storage queue
//! message limit; [`BatchMessage::MAX_RECORDS`] records). Rows are packed greedily in file order,
//! so the packing depends only on the file's content.
//!
//! A batch id is a UUID v5 of the file's SHA-256 and the batch's position. Running the same
//! command again after an interruption sends the same batches under the same ids, which the
//! service answers from what it already stored (records of a batch get ids derived from the batch
//! id and their index, so nothing is stored twice). A changed file is a new submission.

use std::ops::Range;

use handler::domain::BatchMessage;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::input::Row;

/// Namespace of batch ids made by this tool (fixed; changing the packing rules needs a new one).
const BATCH_NAMESPACE: Uuid = Uuid::from_u128(0x3b5d_6a0e_52c4_4f7e_9d21_7c4e_0a6f_1c01);

/// `{"batch_id":"<36 characters>","records":[` + `]}`.
const ENVELOPE_BYTES: usize = r#"{"batch_id":"","records":[]}"#.len() + 36;

/// One batch: its id and which rows it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: Uuid,
    pub rows: Range<usize>,
}

impl Batch {
    /// The message JSON, exactly as sent (compact; the same bytes on every run).
    pub fn body(&self, rows: &[Row]) -> String {
        let records = &rows[self.rows.clone()];
        let mut body = String::with_capacity(
            ENVELOPE_BYTES + records.iter().map(|r| r.json.len() + 1).sum::<usize>(),
        );
        body.push_str(r#"{"batch_id":""#);
        body.push_str(&self.id.hyphenated().to_string());
        body.push_str(r#"","records":["#);
        for (i, row) in records.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&row.json);
        }
        body.push_str("]}");
        body
    }
}

/// A row that cannot fit in any batch message on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowTooLarge {
    pub line: u64,
    pub bytes: usize,
}

impl std::fmt::Display for RowTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the row is {} bytes as JSON; a batch message holds at most {} bytes ({} for records)",
            self.bytes,
            BatchMessage::MAX_JSON_BYTES,
            BatchMessage::MAX_JSON_BYTES - ENVELOPE_BYTES
        )
    }
}

/// SHA-256 of the file's bytes, in hex: the root of every batch id of the file.
pub fn file_digest(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Packs `rows` into batches, in order.
pub fn plan(file_digest: &str, rows: &[Row]) -> Result<Vec<Batch>, RowTooLarge> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut size = ENVELOPE_BYTES;
    for (i, row) in rows.iter().enumerate() {
        let len = row.json.len();
        if ENVELOPE_BYTES + len > BatchMessage::MAX_JSON_BYTES {
            return Err(RowTooLarge {
                line: row.line,
                bytes: len,
            });
        }
        let added = if i == start { len } else { len + 1 };
        if size + added > BatchMessage::MAX_JSON_BYTES || i - start == BatchMessage::MAX_RECORDS {
            batches.push(start..i);
            start = i;
            size = ENVELOPE_BYTES + len;
        } else {
            size += added;
        }
    }
    if start < rows.len() {
        batches.push(start..rows.len());
    }
    Ok(batches
        .into_iter()
        .enumerate()
        .map(|(index, rows)| Batch {
            id: Uuid::new_v5(
                &BATCH_NAMESPACE,
                format!("{file_digest}:{index}").as_bytes(),
            ),
            rows,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u64, notes_len: usize) -> Row {
        Row {
            line,
            json: serde_json::json!({"site_id": "SITE001", "notes": "n".repeat(notes_len)})
                .to_string()
                .into_boxed_str(),
        }
    }

    #[test]
    fn batches_fill_up_to_the_byte_limit_and_never_over_it() {
        let rows: Vec<Row> = (0..500_usize)
            .map(|i| row(i as u64 + 2, 400 + i % 97))
            .collect();
        let batches = plan("abc", &rows).expect("fits");
        assert!(batches.len() > 1);
        let mut next = 0;
        for (i, batch) in batches.iter().enumerate() {
            assert_eq!(batch.rows.start, next, "contiguous, in order");
            next = batch.rows.end;
            let body = batch.body(&rows);
            assert!(
                body.len() <= BatchMessage::MAX_JSON_BYTES,
                "batch {i}: {}",
                body.len()
            );
            let parsed = BatchMessage::from_slice(body.as_bytes()).expect("the service accepts it");
            assert_eq!(parsed.records.len(), batch.rows.len());
            if i + 1 < batches.len() {
                let with_next = BatchMessage::MAX_JSON_BYTES - body.len();
                assert!(
                    with_next < rows[batch.rows.end].json.len() + 1,
                    "batch {i} was closed early"
                );
            }
        }
        assert_eq!(next, rows.len());
    }

    #[test]
    fn batches_hold_at_most_the_record_limit() {
        let rows: Vec<Row> = (0..2500)
            .map(|i| Row {
                line: i,
                json: "{}".into(),
            })
            .collect();
        let sizes: Vec<usize> = plan("abc", &rows)
            .expect("fits")
            .iter()
            .map(|b| b.rows.len())
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
    }

    #[test]
    fn ids_depend_on_the_file_and_the_position_only() {
        let rows: Vec<Row> = (0..3000)
            .map(|i| Row {
                line: i,
                json: "{}".into(),
            })
            .collect();
        let a = plan("file-a", &rows).expect("fits");
        assert_eq!(
            a,
            plan("file-a", &rows).expect("fits"),
            "same file, same ids"
        );
        let b = plan("file-b", &rows).expect("fits");
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.id != y.id),
            "another file, other ids"
        );
        assert_ne!(a[0].id, a[1].id);
    }

    #[test]
    fn a_row_too_large_for_any_message_is_named_by_line() {
        let rows = vec![row(2, 10), row(3, BatchMessage::MAX_JSON_BYTES)];
        let err = plan("abc", &rows).expect_err("too large");
        assert_eq!(err.line, 3);
        assert!(err.to_string().contains("at most 49152 bytes"), "{err}");
    }
}

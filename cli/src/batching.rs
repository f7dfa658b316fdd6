//! Splitting rows into batch messages the service accepts, with ids that are the same on every run
//! of the same file.
//!
//! The limits are the service's own ([`BatchMessage::MAX_JSON_BYTES`]: the JSON body of
//! `POST /batches`, measured in bytes as sent, which base64-encodes to the 64 KiB Storage queue
//! message limit; [`BatchMessage::MAX_RECORDS`] records). Rows are packed greedily in file order,
//! so the packing depends only on the file's content.
//!
//! Signed queue messages ([`crate::signing`]) carry the batch message as an escaped JSON string
//! inside an envelope; the limit then applies to the whole envelope ([`Packing::Signed`]), so
//! such batches are packed tighter.
//!
//! A batch id is a UUID v5 of the file's SHA-256 and the batch's position (and, for signed
//! messages, of the client id: its packing differs, so its ids must too). Running the same
//! command again after an interruption sends the same batches under the same ids, which the
//! service answers from what it already stored (records of a batch get ids derived from the batch
//! id and their index, so nothing is stored twice). A changed file is a new submission.

use std::ops::Range;

use mediflow_domain::BatchMessage;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::input::Row;
use crate::signing::{Signer, escaped_len};

/// Namespace of batch ids made by this tool (fixed; changing the packing rules needs a new one).
const BATCH_NAMESPACE: Uuid = Uuid::from_u128(0x3b5d_6a0e_52c4_4f7e_9d21_7c4e_0a6f_1c01);

/// `{"batch_id":"<36 characters>","records":[` + `]}`.
const ENVELOPE_BYTES: usize = r#"{"batch_id":"","records":[]}"#.len() + 36;

/// How a batch message travels, which decides what counts against the size limit.
#[derive(Debug, Clone, Copy)]
pub enum Packing<'a> {
    /// The batch message JSON as is (POST /batches, unsigned queue messages).
    Plain,
    /// Inside a signed envelope ([`Signer::envelope`]).
    Signed(&'a Signer),
}

impl Packing<'_> {
    /// Bytes a message takes before any record.
    fn fixed(self) -> usize {
        match self {
            Self::Plain => ENVELOPE_BYTES,
            Self::Signed(signer) => {
                let empty = Batch {
                    id: Uuid::nil(),
                    rows: 0..0,
                };
                signer.overhead() + escaped_len(&empty.body(&[]))
            }
        }
    }

    /// Bytes a record's JSON takes in the message.
    fn cost(self, json: &str) -> usize {
        match self {
            Self::Plain => json.len(),
            Self::Signed(_) => escaped_len(json),
        }
    }

    /// The name a batch id is derived from.
    fn id_name(self, file_digest: &str, index: usize) -> String {
        match self {
            Self::Plain => format!("{file_digest}:{index}"),
            Self::Signed(signer) => format!("{file_digest}:signed:{}:{index}", signer.client()),
        }
    }
}

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
    /// What the row takes in a message (escaped, when messages are signed).
    pub bytes: usize,
    /// What a message has room for besides its envelope.
    pub room: usize,
}

impl std::fmt::Display for RowTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the row is {} bytes as JSON; a batch message holds at most {} bytes ({} for records)",
            self.bytes,
            BatchMessage::MAX_JSON_BYTES,
            self.room
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

/// Packs `rows` into batches, in order, each message (as it travels: `packing`) within
/// [`BatchMessage::MAX_JSON_BYTES`].
pub fn plan(
    file_digest: &str,
    rows: &[Row],
    packing: Packing<'_>,
) -> Result<Vec<Batch>, RowTooLarge> {
    let fixed = packing.fixed();
    let mut batches = Vec::new();
    let mut start = 0;
    let mut size = fixed;
    for (i, row) in rows.iter().enumerate() {
        let len = packing.cost(&row.json);
        if fixed + len > BatchMessage::MAX_JSON_BYTES {
            return Err(RowTooLarge {
                line: row.line,
                bytes: len,
                room: BatchMessage::MAX_JSON_BYTES.saturating_sub(fixed),
            });
        }
        // The comma between records is one byte, escaped or not.
        let added = if i == start { len } else { len + 1 };
        if size + added > BatchMessage::MAX_JSON_BYTES || i - start == BatchMessage::MAX_RECORDS {
            batches.push(start..i);
            start = i;
            size = fixed + len;
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
                packing.id_name(file_digest, index).as_bytes(),
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
        let batches = plan("abc", &rows, Packing::Plain).expect("fits");
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
        let sizes: Vec<usize> = plan("abc", &rows, Packing::Plain)
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
        let a = plan("file-a", &rows, Packing::Plain).expect("fits");
        assert_eq!(
            a,
            plan("file-a", &rows, Packing::Plain).expect("fits"),
            "same file, same ids"
        );
        let b = plan("file-b", &rows, Packing::Plain).expect("fits");
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.id != y.id),
            "another file, other ids"
        );
        assert_ne!(a[0].id, a[1].id);
    }

    #[test]
    fn signed_envelopes_fit_the_limit_with_their_overhead_and_escaping() {
        // Quotes and backslashes double when the message becomes a JSON string.
        let rows: Vec<Row> = (0..400_usize)
            .map(|i| Row {
                line: i as u64 + 2,
                json:
                    serde_json::json!({"site_id": "SITE001", "notes": "\"q\\".repeat(40 + i % 61)})
                        .to_string()
                        .into_boxed_str(),
            })
            .collect();
        let signer = Signer::new("site001-uploader", "key");
        let tight = plan("abc", &rows, Packing::Signed(&signer)).expect("fits");
        let plain = plan("abc", &rows, Packing::Plain).expect("fits");
        assert!(
            tight.len() > plain.len(),
            "signed batches are packed tighter"
        );
        let mut next = 0;
        for (i, batch) in tight.iter().enumerate() {
            assert_eq!(batch.rows.start, next, "contiguous, in order");
            next = batch.rows.end;
            let envelope = signer.envelope(&batch.body(&rows));
            assert!(
                envelope.len() <= BatchMessage::MAX_JSON_BYTES,
                "batch {i}: {} bytes",
                envelope.len()
            );
            if let Some(following) = rows.get(batch.rows.end) {
                let with_next = Batch {
                    id: batch.id,
                    rows: batch.rows.start..batch.rows.end + 1,
                };
                assert!(
                    signer.envelope(&with_next.body(&rows)).len() > BatchMessage::MAX_JSON_BYTES,
                    "batch {i} was closed early (next row: {} bytes)",
                    following.json.len()
                );
            }
        }
        assert_eq!(next, rows.len());
        assert!(
            tight.iter().zip(&plain).all(|(s, p)| s.id != p.id),
            "signed packing, other ids"
        );
        let other = Signer::new("site002-uploader", "key");
        assert_ne!(
            plan("abc", &rows, Packing::Signed(&other)).expect("fits")[0].id,
            tight[0].id,
            "ids depend on the client"
        );
    }

    #[test]
    fn a_row_too_large_for_any_message_is_named_by_line() {
        let rows = vec![row(2, 10), row(3, BatchMessage::MAX_JSON_BYTES)];
        let err = plan("abc", &rows, Packing::Plain).expect_err("too large");
        assert_eq!(err.line, 3);
        assert!(err.to_string().contains("at most 49152 bytes"), "{err}");
    }
}

//! The embedded store's write-ahead journal: an append-only file of puts, each framed with its
//! length and a CRC-32 of its bytes, made durable with one `fdatasync` per group of writes.
//!
//! On open the journal is read from the start; the first entry whose frame is incomplete or whose
//! checksum does not match ends it (a torn tail: the process died during a write that was never
//! acknowledged), and the file is cut back to the last whole entry. See
//! docs/adr/0006-durable-write-path.md.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use bytes::Bytes;

use crate::store::embedded_site_index::IndexKey;

/// Bytes of an entry's frame: payload length (u32 LE), then the payload's CRC-32 (u32 LE).
const FRAME: usize = 8;

/// Bytes of a payload before the value: the table tag, then the key (u128 LE).
const HEADER: usize = 1 + 16;

/// The largest payload a frame may announce; a larger length is damage, not an entry.
const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// Which redb table a put goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Records,
    Batches,
    /// Audit events, keyed by their seq in the embedded chain.
    Audit,
}

impl Table {
    const fn tag(self) -> u8 {
        match self {
            Self::Records => 1,
            Self::Batches => 2,
            Self::Audit => 3,
        }
    }

    const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Records),
            2 => Some(Self::Batches),
            3 => Some(Self::Audit),
            _ => None,
        }
    }
}

/// One journaled write: `value` stored under `key` in `table`, replacing what was there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub table: Table,
    pub key: u128,
    pub value: Bytes,
    /// A record's by-site index key, carried from the caller so that the applier does not decode
    /// the value again. Not journaled: a replayed put has `None` and its key is read from the
    /// value.
    pub index: Option<IndexKey>,
}

/// The open journal file, positioned at its end.
#[derive(Debug)]
pub struct Journal {
    file: File,
    len: u64,
    buffer: Vec<u8>,
}

/// What [`Journal::open`] found in the file.
#[derive(Debug)]
pub struct Replay {
    /// Every whole entry, in the order written.
    pub puts: Vec<Put>,
    /// Bytes cut from the end because they were not a whole, intact entry.
    pub torn_bytes: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, reads every intact entry, and cuts a torn tail.
    pub fn open(path: &Path) -> std::io::Result<(Self, Replay)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut contents = Vec::new();
        file.read_to_end(&mut contents)?;
        let (puts, valid) = decode_all(&contents);
        let torn_bytes = (contents.len() - valid) as u64;
        if torn_bytes > 0 {
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let journal = Self {
            file,
            len: valid as u64,
            buffer: Vec::new(),
        };
        Ok((journal, Replay { puts, torn_bytes }))
    }

    /// Appends `puts` and waits until they are on the device (`fdatasync`).
    pub fn append(&mut self, puts: &[Put]) -> std::io::Result<()> {
        self.buffer.clear();
        for put in puts {
            encode(put, &mut self.buffer)?;
        }
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()?;
        self.len += self.buffer.len() as u64;
        // A huge group should not pin its buffer for the life of the process.
        if self.buffer.capacity() > 1024 * 1024 {
            self.buffer = Vec::new();
        }
        Ok(())
    }

    /// Empties the journal once everything in it is durable elsewhere.
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    /// Bytes in the journal.
    pub const fn len(&self) -> u64 {
        self.len
    }
}

fn encode(put: &Put, out: &mut Vec<u8>) -> std::io::Result<()> {
    let payload_len = HEADER + put.value.len();
    if payload_len > MAX_PAYLOAD {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a journal entry of {payload_len} bytes exceeds {MAX_PAYLOAD}"),
        ));
    }
    let start = out.len();
    out.extend_from_slice(&[0; FRAME]);
    out.push(put.table.tag());
    out.extend_from_slice(&put.key.to_le_bytes());
    out.extend_from_slice(&put.value);
    let crc = crc32fast::hash(&out[start + FRAME..]);
    let len = u32::try_from(payload_len).map_err(std::io::Error::other)?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes entries from the start of `contents`; returns them and the length of the intact prefix.
fn decode_all(contents: &[u8]) -> (Vec<Put>, usize) {
    let mut puts = Vec::new();
    let mut at = 0;
    while let Some((put, next)) = decode_one(contents, at) {
        puts.push(put);
        at = next;
    }
    (puts, at)
}

fn decode_one(contents: &[u8], at: usize) -> Option<(Put, usize)> {
    let frame = contents.get(at..at + FRAME)?;
    let len = usize::try_from(u32::from_le_bytes(frame[..4].try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(frame[4..].try_into().ok()?);
    if !(HEADER..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let payload = contents.get(at + FRAME..at + FRAME + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let table = Table::from_tag(payload[0])?;
    let key = u128::from_le_bytes(payload[1..HEADER].try_into().ok()?);
    let value = Bytes::copy_from_slice(&payload[HEADER..]);
    let put = Put {
        table,
        key,
        value,
        index: None,
    };
    Some((put, at + FRAME + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(n: u8) -> Put {
        Put {
            table: if n.is_multiple_of(2) {
                Table::Records
            } else {
                Table::Batches
            },
            key: u128::from(n) << 64 | 7,
            value: Bytes::from(vec![n; 40 + usize::from(n)]),
            index: None,
        }
    }

    fn reopen(path: &Path) -> Replay {
        Journal::open(path).expect("reopen").1
    }

    #[test]
    fn appended_puts_replay_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (mut journal, replay) = Journal::open(&path).expect("open");
        assert!(replay.puts.is_empty(), "a new journal is empty");
        journal.append(&[put(1), put(2)]).expect("append");
        journal.append(&[put(3)]).expect("append");
        drop(journal);
        let replay = reopen(&path);
        assert_eq!(replay.puts, vec![put(1), put(2), put(3)]);
        assert_eq!(replay.torn_bytes, 0);
    }

    /// Every cut inside the last entry (a write the process died in) loses exactly that entry,
    /// keeps the ones before it, and leaves a file that takes new appends.
    #[test]
    fn a_torn_tail_is_ignored_and_cut_at_every_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&path).expect("open");
        journal.append(&[put(1), put(2)]).expect("append");
        let whole = journal.len();
        journal.append(&[put(3)]).expect("append");
        let full = journal.len();
        drop(journal);
        let original = std::fs::read(&path).expect("read");
        for cut in whole + 1..full {
            std::fs::write(&path, &original[..usize::try_from(cut).expect("small")])
                .expect("truncate");
            let (mut journal, replay) = Journal::open(&path).expect("open torn");
            assert_eq!(replay.puts, vec![put(1), put(2)], "cut at {cut}");
            assert_eq!(replay.torn_bytes, cut - whole, "cut at {cut}");
            assert_eq!(
                journal.len(),
                whole,
                "file cut back to the last whole entry"
            );
            journal.append(&[put(4)]).expect("append after a torn tail");
            drop(journal);
            assert_eq!(
                reopen(&path).puts,
                vec![put(1), put(2), put(4)],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_damaged_entry_ends_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&path).expect("open");
        journal.append(&[put(1)]).expect("append");
        let first = usize::try_from(journal.len()).expect("small");
        journal.append(&[put(2), put(3)]).expect("append");
        drop(journal);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[first + FRAME + HEADER + 3] ^= 0xff; // a flipped bit in put(2)'s value
        std::fs::write(&path, &bytes).expect("write");
        let replay = reopen(&path);
        assert_eq!(replay.puts, vec![put(1)]);
        assert_eq!(replay.torn_bytes, (bytes.len() - first) as u64);
    }

    #[test]
    fn reset_empties_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&path).expect("open");
        journal.append(&[put(1)]).expect("append");
        journal.reset().expect("reset");
        assert_eq!(journal.len(), 0);
        journal.append(&[put(2)]).expect("append");
        drop(journal);
        assert_eq!(reopen(&path).puts, vec![put(2)]);
    }
}

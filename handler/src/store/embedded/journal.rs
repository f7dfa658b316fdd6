//! The embedded store's write-ahead journal: an append-only file of puts, each framed with its
//! length and a CRC-32 of its bytes, made durable with one `fdatasync` per group of writes.
//!
//! Format: frames of u32 LE payload length, u32 LE CRC-32 of the payload; the payload is a
//! one-byte table tag, the key (u128 LE), then the value.
//!
//! On open the whole file is scanned ([`Scan::of`]). Where a frame is bad (incomplete, an
//! impossible length, a checksum or tag that does not match), the scan looks for the next valid
//! frame byte by byte. What it finds decides:
//! - no valid frame anywhere after the bad spot: a **torn tail** (the process died during a write
//!   that was never acknowledged). The file is cut back to the last whole entry and opens.
//! - a valid frame after it: **damage** (a flipped byte, a lost page) in front of acknowledged
//!   writes. [`Journal::open`] refuses ([`OpenError::Damaged`]) and changes nothing; the operator
//!   runs `handler store check` ([`Scan`]) and `handler store salvage` ([`salvage`]), which copies
//!   the file aside and keeps every valid frame.
//!
//! See docs/adr/0006-durable-write-path.md.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::site_index::IndexKey;

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
    /// An audit event's record keys (its by-record index entries), carried from the writer for the
    /// same reason. Not journaled: a replayed event has `None` and its keys are read from the value.
    pub audited: Option<Vec<u128>>,
}

/// The open journal file, positioned at its end.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
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

/// Why [`Journal::open`] did not open the journal.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Valid frames follow a bad one: acknowledged writes sit behind damage. Not retryable; the
    /// file is left exactly as it was.
    #[error(transparent)]
    Damaged(#[from] Damaged),
}

/// A journal with valid frames after a bad one, as [`Journal::open`] refuses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the journal {} is damaged at byte {offset}: {frames_after} valid frames ({bytes_after} bytes) \
     of acknowledged writes follow the bad frame, so it is not a torn tail; the file was left \
     unchanged. `handler store check` lists every damaged region; `handler store salvage` (with \
     the service stopped) copies the journal aside and keeps every valid frame",
    path.display()
)]
pub struct Damaged {
    pub path: PathBuf,
    /// Byte offset of the first bad frame.
    pub offset: u64,
    /// Valid frames anywhere after it.
    pub frames_after: usize,
    /// Bytes of those frames.
    pub bytes_after: u64,
}

/// A run of bytes that are no valid frame, with valid frames after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRegion {
    /// Byte offset where the run starts (a frame that should have started there is bad).
    pub offset: u64,
    /// Bytes up to the next valid frame.
    pub len: u64,
    /// Valid frames in a row right after the run (up to the next damaged region or the end).
    pub frames_after: usize,
    /// Bytes of those frames.
    pub bytes_after: u64,
}

/// A journal file read frame by frame, changing nothing: what `handler store check` reports and
/// what [`Journal::open`] and [`salvage`] decide from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every valid frame's bytes, in file order.
    pub frames: Vec<Range<usize>>,
    /// Every bad run followed by a valid frame, in file order.
    pub damaged: Vec<DamagedRegion>,
    /// Bytes at the end after which no valid frame follows (a write never acknowledged).
    pub torn_bytes: u64,
    /// Bytes in the file.
    pub len: u64,
}

impl Scan {
    /// Scans `contents`: whole frames in a row; after a bad one, the next valid frame is looked
    /// for at every following byte (most offsets fail on the length check, before any checksum).
    pub fn of(contents: &[u8]) -> Self {
        let mut frames = Vec::new();
        let mut damaged: Vec<DamagedRegion> = Vec::new();
        let mut at = 0;
        let mut torn_bytes = 0;
        loop {
            let run_start = frames.len();
            while let Some(end) = frame_end(contents, at) {
                frames.push(at..end);
                at = end;
            }
            if let Some(region) = damaged.last_mut()
                && region.frames_after == 0
            {
                let run = &frames[run_start..];
                region.frames_after = run.len();
                region.bytes_after = run.iter().map(|f| (f.end - f.start) as u64).sum();
            }
            if at == contents.len() {
                break;
            }
            let Some(next) =
                (at + 1..contents.len()).find(|&next| frame_end(contents, next).is_some())
            else {
                torn_bytes = (contents.len() - at) as u64;
                break;
            };
            damaged.push(DamagedRegion {
                offset: at as u64,
                len: (next - at) as u64,
                frames_after: 0,
                bytes_after: 0,
            });
            at = next;
        }
        Self {
            frames,
            damaged,
            torn_bytes,
            len: contents.len() as u64,
        }
    }

    /// Whether valid frames follow a bad one (a torn tail alone is not damage).
    pub fn is_damaged(&self) -> bool {
        !self.damaged.is_empty()
    }

    /// Bytes in valid frames.
    pub fn valid_bytes(&self) -> u64 {
        self.frames.iter().map(|f| (f.end - f.start) as u64).sum()
    }

    /// The damage as [`Journal::open`] refuses it, if there is any.
    pub fn damage(&self, path: &Path) -> Option<Damaged> {
        let first = self.damaged.first()?;
        let after = self.frames.iter().filter(|f| f.start as u64 > first.offset);
        Some(Damaged {
            path: path.to_owned(),
            offset: first.offset,
            frames_after: after.clone().count(),
            bytes_after: after.map(|f| (f.end - f.start) as u64).sum(),
        })
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path`, reads every intact entry, and cuts a torn tail.
    /// Damage (valid frames after a bad one) is refused and the file left untouched.
    pub fn open(path: &Path) -> Result<(Self, Replay), OpenError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut contents = Vec::new();
        file.read_to_end(&mut contents)?;
        let scan = Scan::of(&contents);
        if let Some(damage) = scan.damage(path) {
            return Err(damage.into());
        }
        let puts = scan
            .frames
            .iter()
            // Every scanned frame has a known tag, so none is left out.
            .filter_map(|frame| decode(&contents[frame.clone()]))
            .collect();
        let valid = scan.len - scan.torn_bytes;
        if scan.torn_bytes > 0 {
            file.set_len(valid)?;
            file.sync_all()?;
        }
        let journal = Self {
            file,
            path: path.to_owned(),
            len: valid,
            buffer: Vec::new(),
        };
        let replay = Replay {
            puts,
            torn_bytes: scan.torn_bytes,
        };
        Ok((journal, replay))
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

    /// Closes this segment without waiting for anything: the file is renamed to `closed` (which
    /// must not exist) and appends go on in a new, empty file at the journal's path. The closed
    /// segment stays until everything in it is durable elsewhere; then its owner deletes it.
    /// Whatever happens in between, the journal's directory holds every acknowledged put: a crash
    /// after the rename and before the new file leaves the closed segment alone, which the next
    /// open replays.
    pub fn roll(&mut self, closed: &Path) -> std::io::Result<()> {
        // A rename replaces its target: a closed segment still there must never be lost so.
        if closed.try_exists()? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} is still there", closed.display()),
            ));
        }
        std::fs::rename(&self.path, closed)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = file;
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

/// Where the valid frame starting at `at` ends, if one starts there: an announced length within
/// bounds that fits in `contents`, a known table tag, a matching checksum (checked last: it is the
/// only costly test).
fn frame_end(contents: &[u8], at: usize) -> Option<usize> {
    let frame = contents.get(at..at.checked_add(FRAME)?)?;
    let len = usize::try_from(u32::from_le_bytes(frame[..4].try_into().ok()?)).ok()?;
    if !(HEADER..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let payload = contents.get(at + FRAME..at + FRAME + len)?;
    Table::from_tag(payload[0])?;
    let crc = u32::from_le_bytes(frame[4..].try_into().ok()?);
    (crc32fast::hash(payload) == crc).then_some(at + FRAME + len)
}

/// The put in `frame`, a valid frame as [`frame_end`] found it.
fn decode(frame: &[u8]) -> Option<Put> {
    let payload = frame.get(FRAME..)?;
    Some(Put {
        table: Table::from_tag(*payload.first()?)?,
        key: u128::from_le_bytes(payload.get(1..HEADER)?.try_into().ok()?),
        value: Bytes::copy_from_slice(payload.get(HEADER..)?),
        index: None,
        audited: None,
    })
}

/// What [`salvage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// The journal as it was found.
    pub scan: Scan,
    /// Where the journal as it was found was copied; `None` when there was no damage (nothing
    /// was changed).
    pub aside: Option<PathBuf>,
}

/// Rewrites the damaged journal at `path` with every valid frame, in order. First the file is
/// copied to `aside` (which must not exist) and made durable; the new journal is written to a
/// temporary file, made durable, renamed over `path`, and the rename made durable. A journal
/// without damage is left as it is (the service cuts a torn tail itself). The caller must hold
/// the store (no service may be appending).
pub fn salvage(path: &Path, aside: &Path) -> std::io::Result<Salvaged> {
    let contents = std::fs::read(path)?;
    let scan = Scan::of(&contents);
    if !scan.is_damaged() {
        return Ok(Salvaged { scan, aside: None });
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    write_durably(aside, &[&contents])?;
    sync_dir(dir)?;
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".salvage-tmp");
    let temp = PathBuf::from(temp_name);
    let kept: Vec<&[u8]> = scan.frames.iter().map(|f| &contents[f.clone()]).collect();
    // A temporary file left by a salvage that was interrupted holds nothing the journal lacks.
    if let Err(e) = std::fs::remove_file(&temp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(e);
    }
    write_durably(&temp, &kept)?;
    std::fs::rename(&temp, path)?;
    sync_dir(dir)?;
    Ok(Salvaged {
        scan,
        aside: Some(aside.to_owned()),
    })
}

/// Writes `parts` to a new file at `path` and waits until they are on the device.
fn write_durably(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    for part in parts {
        file.write_all(part)?;
    }
    file.sync_all()
}

/// Makes the directory's entries (a new file, a rename) durable.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
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
            audited: None,
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

    /// Every cut inside the last group (a write the process died in, never acknowledged), with
    /// or without the zeros a file system may leave after it, is a torn tail: the whole entries
    /// before the cut replay, the rest is cut, and the file takes new appends.
    #[test]
    fn a_torn_tail_is_ignored_and_cut_at_every_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&path).expect("open");
        journal.append(&[put(1), put(2)]).expect("append");
        let whole = usize::try_from(journal.len()).expect("small");
        journal.append(&[put(3), put(5)]).expect("append");
        let full = usize::try_from(journal.len()).expect("small");
        drop(journal);
        let original = std::fs::read(&path).expect("read");
        let third_end = whole + FRAME + HEADER + put(3).value.len();
        for (zeros, cut) in [0, 512]
            .into_iter()
            .flat_map(|zeros| (whole + 1..full).map(move |cut| (zeros, cut)))
        {
            let case = format!("cut at {cut}, then {zeros} zero bytes");
            let mut torn = original[..cut].to_vec();
            torn.resize(cut + zeros, 0);
            std::fs::write(&path, &torn).expect("write torn");
            let (mut journal, replay) = Journal::open(&path).expect(&case);
            let (mut expected, kept) = if cut >= third_end {
                (vec![put(1), put(2), put(3)], third_end)
            } else {
                (vec![put(1), put(2)], whole)
            };
            assert_eq!(replay.puts, expected, "{case}");
            assert_eq!(replay.torn_bytes, (torn.len() - kept) as u64, "{case}");
            assert_eq!(
                journal.len(),
                kept as u64,
                "{case}: cut to the last whole entry"
            );
            journal.append(&[put(4)]).expect("append after a torn tail");
            drop(journal);
            expected.push(put(4));
            assert_eq!(reopen(&path).puts, expected, "{case}");
        }
    }

    /// A journal of `count` puts, appended one per group; returns each frame's byte range.
    fn journal_of(path: &Path, count: u8) -> Vec<Range<usize>> {
        let (mut journal, _) = Journal::open(path).expect("open");
        let mut frames = Vec::new();
        for n in 0..count {
            let start = usize::try_from(journal.len()).expect("small");
            journal.append(&[put(n)]).expect("append");
            frames.push(start..usize::try_from(journal.len()).expect("small"));
        }
        frames
    }

    /// The frame holding byte `at`.
    fn frame_holding(frames: &[Range<usize>], at: usize) -> usize {
        frames
            .iter()
            .position(|f| f.contains(&at))
            .expect("a byte inside the journal")
    }

    /// Damage in front of valid frames refuses the open, leaves every byte of the file as it
    /// was, and names the first bad frame's offset and what follows it.
    #[test]
    fn damage_in_the_middle_refuses_to_open_and_changes_nothing() {
        type Damage = fn(&mut Vec<u8>, &[Range<usize>]);
        let cases: [(&str, Damage); 6] = [
            ("a flipped byte in a value", |bytes, frames| {
                bytes[frames[40].start + FRAME + HEADER + 3] ^= 0xff;
            }),
            ("a flipped byte in a length", |bytes, frames| {
                bytes[frames[40].start] ^= 0x01;
            }),
            ("a flipped byte in a checksum", |bytes, frames| {
                bytes[frames[40].start + 5] ^= 0x10;
            }),
            ("an unknown table tag", |bytes, frames| {
                bytes[frames[40].start + FRAME] = 9;
            }),
            ("a zeroed 4 KiB page", |bytes, _| {
                bytes[4096..8192].fill(0);
            }),
            ("a huge announced length", |bytes, frames| {
                bytes[frames[40].start + 3] = 0xff;
            }),
        ];
        for (case, damage) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("journal");
            let frames = journal_of(&path, 100);
            let mut bytes = std::fs::read(&path).expect("read");
            let intact = bytes.clone();
            damage(&mut bytes, &frames);
            std::fs::write(&path, &bytes).expect("write");
            let first_bad = (0..bytes.len())
                .find(|&i| bytes[i] != intact[i])
                .map(|i| frame_holding(&frames, i))
                .expect("the case changed a byte");
            let last_bad = (0..bytes.len())
                .rfind(|&i| bytes[i] != intact[i])
                .map(|i| frame_holding(&frames, i))
                .expect("the case changed a byte");

            let err = Journal::open(&path).expect_err(case);
            let OpenError::Damaged(damaged) = &err else {
                panic!("{case}: not damage: {err}");
            };
            let offset = frames[first_bad].start;
            assert_eq!(damaged.offset, offset as u64, "{case}: first bad frame");
            assert_eq!(
                damaged.frames_after,
                frames.len() - 1 - last_bad,
                "{case}: every frame after the damage counted"
            );
            assert_eq!(
                damaged.bytes_after,
                (bytes.len() - frames[last_bad].end) as u64,
                "{case}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("byte {offset}")),
                "{case}: {message}"
            );
            assert!(message.contains("handler store salvage"), "{case}");
            assert_eq!(
                std::fs::read(&path).expect("read"),
                bytes,
                "{case}: the file is unchanged"
            );
        }
    }

    /// Every damaged region is listed with the run of valid frames behind it; a torn tail after
    /// the last valid frame is reported apart.
    #[test]
    fn the_scan_lists_each_damaged_region_and_the_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let frames = journal_of(&path, 10);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[frames[2].start + FRAME + 1] ^= 0x01; // frame 2's key
        bytes[frames[6].end - 1] ^= 0x01; // frame 6's last byte
        bytes[frames[7].start..frames[7].end].fill(0); // frame 7 zeroed
        bytes.extend_from_slice(&[0xab; 5]); // a torn tail

        let found = Scan::of(&bytes);
        let span = |frame: &Range<usize>| (frame.end - frame.start) as u64;
        assert_eq!(
            found.damaged,
            vec![
                DamagedRegion {
                    offset: frames[2].start as u64,
                    len: span(&frames[2]),
                    frames_after: 3,
                    bytes_after: frames[3..6].iter().map(span).sum(),
                },
                DamagedRegion {
                    offset: frames[6].start as u64,
                    len: span(&frames[6]) + span(&frames[7]),
                    frames_after: 2,
                    bytes_after: frames[8..].iter().map(span).sum(),
                },
            ]
        );
        let kept: Vec<usize> = [0, 1, 3, 4, 5, 8, 9].into();
        assert_eq!(
            found.frames,
            kept.iter().map(|&i| frames[i].clone()).collect::<Vec<_>>(),
            "every valid frame, in order"
        );
        assert_eq!(found.torn_bytes, 5);
        assert_eq!(
            found.valid_bytes(),
            kept.iter().map(|&i| span(&frames[i])).sum::<u64>()
        );
        assert_eq!(found.len, bytes.len() as u64);
    }

    /// Salvage copies the damaged file aside byte for byte, then keeps every valid frame in
    /// order: the journal opens again and replays all but the damaged entry.
    #[test]
    fn salvage_keeps_every_valid_frame_and_copies_the_file_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let frames = journal_of(&path, 20);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[frames[9].start + FRAME + HEADER] ^= 0xff;
        bytes.extend_from_slice(&[0; 3]); // and a torn tail
        std::fs::write(&path, &bytes).expect("write");
        let aside = dir.path().join("journal.damaged");

        let salvaged = salvage(&path, &aside).expect("salvage");
        assert_eq!(salvaged.aside.as_deref(), Some(aside.as_path()));
        assert_eq!(salvaged.scan.damaged.len(), 1);
        assert_eq!(salvaged.scan.damaged[0].offset, frames[9].start as u64);
        assert_eq!(
            std::fs::read(&aside).expect("aside"),
            bytes,
            "copied as found"
        );
        let (_, replay) = Journal::open(&path).expect("opens after salvage");
        let expected: Vec<Put> = (0..20).filter(|&n| n != 9).map(put).collect();
        assert_eq!(replay.puts, expected, "every valid frame, in order");
        assert_eq!(replay.torn_bytes, 0, "the torn tail is not kept");

        let before = std::fs::read(&path).expect("read");
        let again = salvage(&path, &dir.path().join("unused")).expect("salvage a clean journal");
        assert_eq!(again.aside, None, "nothing to salvage");
        assert!(!dir.path().join("unused").exists(), "no copy made");
        assert_eq!(std::fs::read(&path).expect("read"), before, "unchanged");
    }

    /// A copy aside that already exists is never overwritten, and the journal is left as it was.
    #[test]
    fn salvage_refuses_to_overwrite_an_earlier_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let frames = journal_of(&path, 5);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[frames[1].start + FRAME + HEADER] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let aside = dir.path().join("journal.damaged");
        std::fs::write(&aside, b"an earlier copy").expect("write");

        let err = salvage(&path, &aside).expect_err("the copy exists");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&aside).expect("aside"), b"an earlier copy");
        assert_eq!(std::fs::read(&path).expect("journal"), bytes);
    }

    #[test]
    fn a_roll_keeps_the_closed_segment_and_appends_to_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, closed) = (
            dir.path().join("journal"),
            dir.path().join("journal.closed"),
        );
        let (mut journal, _) = Journal::open(&path).expect("open");
        journal.append(&[put(1), put(2)]).expect("append");
        journal.roll(&closed).expect("roll");
        assert_eq!(journal.len(), 0);
        journal.append(&[put(3)]).expect("append");
        drop(journal);
        assert_eq!(reopen(&closed).puts, vec![put(1), put(2)]);
        assert_eq!(reopen(&path).puts, vec![put(3)]);
        // A second roll while the closed segment is still there is refused, not an overwrite.
        let (mut journal, _) = Journal::open(&path).expect("open");
        let err = journal
            .roll(&closed)
            .expect_err("the closed segment is still there");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(reopen(&closed).puts, vec![put(1), put(2)]);
        journal
            .append(&[put(4)])
            .expect("append after a refused roll");
        drop(journal);
        assert_eq!(reopen(&path).puts, vec![put(3), put(4)]);
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

//! `handler store check` and `handler store salvage`: the embedded store's journal in
//! `MEDIFLOW_DATA_DIR` (same environment as the service), for an operator after the service
//! refused to start on a damaged journal (docs/adr/0006-durable-write-path.md).
//!
//! Both read the closed journal segment too when one is still there (`mediflow.journal.closed`,
//! left when the service stopped before redb held it durably), before the journal.
//!
//! `check` reads the journal and changes nothing: exit 0 when it is clean or ends in a torn tail
//! (which the service cuts on its own), 1 when it is damaged, 2 when it cannot be read.
//! `salvage` takes the store's lock (it opens `mediflow.redb`, which redb lets one process hold,
//! so it refuses while the service runs), copies the journal aside as
//! `mediflow.journal.damaged-<UTC time>`, and rewrites the journal with every valid frame.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;

use crate::config::{Config, StoreConfig};
use crate::store::embedded::journal::{self, Salvaged, Scan};
use crate::store::embedded::{CACHE_BYTES, CLOSED_JOURNAL_FILE, DATABASE_FILE, JOURNAL_FILE};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Report the journal's frames, torn tail and damaged regions; change nothing. Exit 0 when
    /// clean or only torn at the end, 1 when damaged, 2 when it cannot be read.
    Check,
    /// With the service stopped: copy the journal aside, then keep every valid frame of it.
    Salvage,
}

impl StoreCommand {
    pub fn run(self, config: &Config) -> ExitCode {
        let StoreConfig::Embedded { data_dir } = &config.store else {
            eprintln!(
                "handler: store commands are for the embedded store (MEDIFLOW_STORE=embedded)"
            );
            return ExitCode::from(2);
        };
        let outcome = match self {
            Self::Check => check(data_dir).map(|report| {
                let code = if report.is_damaged() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                };
                (report.to_string(), code)
            }),
            Self::Salvage => {
                salvage(data_dir).map(|report| (report.to_string(), ExitCode::SUCCESS))
            }
        };
        match outcome {
            Ok((report, code)) => {
                // A closed stdout loses the report, never the exit code.
                let _ = std::io::stdout().lock().write_all(report.as_bytes());
                code
            }
            Err(err) => {
                eprintln!("handler: {err}");
                err.exit_code()
            }
        }
    }
}

/// Why a store command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum StoreCommandError {
    #[error("cannot read the journal {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot take the store {}: {source} (stop the service first: only one process may hold it)",
        path.display()
    )]
    Locked { path: PathBuf, source: redb::Error },
    #[error("salvaging the journal {} failed: {source}", path.display())]
    Salvage {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreCommandError {
    /// 2 when the journal could not be read at all (a check that did not happen), 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Read { .. } => ExitCode::from(2),
            Self::Locked { .. } | Self::Salvage { .. } => ExitCode::FAILURE,
        }
    }
}

/// What `handler store check` found: the closed journal segment when one is still there (the
/// service stopped before redb held it durably), then the journal.
#[derive(Debug)]
pub struct CheckReport {
    pub segments: Vec<SegmentCheck>,
}

/// One journal file and what its scan found.
#[derive(Debug)]
pub struct SegmentCheck {
    pub journal: PathBuf,
    pub scan: Scan,
}

impl CheckReport {
    /// Whether any segment is damaged (the service will not start on it).
    pub fn is_damaged(&self) -> bool {
        self.segments
            .iter()
            .any(|segment| segment.scan.is_damaged())
    }
}

/// The journal files of `data_dir`, in replay order: the closed segment if it is there, then the
/// journal.
fn segments(data_dir: &Path) -> Result<Vec<PathBuf>, StoreCommandError> {
    let closed = data_dir.join(CLOSED_JOURNAL_FILE);
    let there = closed
        .try_exists()
        .map_err(|source| StoreCommandError::Read {
            path: closed.clone(),
            source,
        })?;
    Ok(there
        .then_some(closed)
        .into_iter()
        .chain([data_dir.join(JOURNAL_FILE)])
        .collect())
}

/// Scans the journal in `data_dir` without changing anything. A data folder without a journal
/// is clean (the service creates it); a data folder that does not exist is an error (a wrong
/// `MEDIFLOW_DATA_DIR`).
pub fn check(data_dir: &Path) -> Result<CheckReport, StoreCommandError> {
    std::fs::metadata(data_dir).map_err(|source| StoreCommandError::Read {
        path: data_dir.join(JOURNAL_FILE),
        source,
    })?;
    let mut checked = Vec::new();
    for journal in segments(data_dir)? {
        let contents = match std::fs::read(&journal) {
            Ok(contents) => contents,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StoreCommandError::Read {
                    path: journal,
                    source,
                });
            }
        };
        checked.push(SegmentCheck {
            scan: Scan::of(&contents),
            journal,
        });
    }
    Ok(CheckReport { segments: checked })
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.segments.iter().try_for_each(|segment| segment.fmt(f))
    }
}

impl fmt::Display for SegmentCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scan = &self.scan;
        writeln!(f, "journal: {}", self.journal.display())?;
        writeln!(f, "bytes: {}", scan.len)?;
        writeln!(f, "valid frames: {}", scan.frames.len())?;
        writeln!(f, "valid bytes: {}", scan.valid_bytes())?;
        writeln!(f, "torn tail bytes: {}", scan.torn_bytes)?;
        write_regions(f, scan)?;
        if scan.is_damaged() {
            writeln!(
                f,
                "verdict: damaged; the service will not start on it. Stop the service and run \
                 `handler store salvage` (the journal is copied aside first)"
            )
        } else if scan.torn_bytes > 0 {
            writeln!(
                f,
                "verdict: clean but for a torn tail (a write never acknowledged), which the \
                 service cuts when it starts"
            )
        } else {
            writeln!(f, "verdict: clean")
        }
    }
}

fn write_regions(f: &mut fmt::Formatter<'_>, scan: &Scan) -> fmt::Result {
    writeln!(f, "damaged regions: {}", scan.damaged.len())?;
    for region in &scan.damaged {
        writeln!(
            f,
            "  damaged: offset {} length {}; then {} valid frames ({} bytes)",
            region.offset, region.len, region.frames_after, region.bytes_after
        )?;
    }
    Ok(())
}

/// What `handler store salvage` did, per journal file (the closed segment first, when there).
#[derive(Debug)]
pub struct SalvageReport {
    pub segments: Vec<SegmentSalvage>,
}

/// One journal file and what salvaging it did.
#[derive(Debug)]
pub struct SegmentSalvage {
    pub journal: PathBuf,
    pub salvaged: Salvaged,
}

/// Holds the store's lock, then salvages each journal file in `data_dir` ([`journal::salvage`]).
pub fn salvage(data_dir: &Path) -> Result<SalvageReport, StoreCommandError> {
    let journal = data_dir.join(JOURNAL_FILE);
    std::fs::metadata(&journal).map_err(|source| StoreCommandError::Read {
        path: journal.clone(),
        source,
    })?;
    let database = data_dir.join(DATABASE_FILE);
    // Held until the journal is rewritten: the service cannot open the store meanwhile, and
    // this cannot start while the service has it.
    let lock = redb::Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(&database)
        .map_err(|e| StoreCommandError::Locked {
            path: database,
            source: e.into(),
        })?;
    let stamp = utc_stamp();
    let mut salvaged = Vec::new();
    for journal in segments(data_dir)? {
        let name = journal.file_name().map_or_else(
            || JOURNAL_FILE.into(),
            |name| name.to_string_lossy().into_owned(),
        );
        let aside = data_dir.join(format!("{name}.damaged-{stamp}"));
        let done =
            journal::salvage(&journal, &aside).map_err(|source| StoreCommandError::Salvage {
                path: journal.clone(),
                source,
            })?;
        salvaged.push(SegmentSalvage {
            journal,
            salvaged: done,
        });
    }
    drop(lock);
    Ok(SalvageReport { segments: salvaged })
}

impl fmt::Display for SalvageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.segments.iter().try_for_each(|segment| segment.fmt(f))
    }
}

impl fmt::Display for SegmentSalvage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scan = &self.salvaged.scan;
        writeln!(f, "journal: {}", self.journal.display())?;
        let Some(aside) = &self.salvaged.aside else {
            return writeln!(
                f,
                "nothing to salvage: the journal is not damaged ({} valid frames, {} torn tail \
                 bytes the service cuts when it starts); nothing was changed",
                scan.frames.len(),
                scan.torn_bytes
            );
        };
        writeln!(f, "copied aside: {}", aside.display())?;
        writeln!(
            f,
            "kept frames: {} ({} bytes)",
            scan.frames.len(),
            scan.valid_bytes()
        )?;
        writeln!(f, "dropped regions: {}", scan.damaged.len())?;
        for region in &scan.damaged {
            writeln!(
                f,
                "  dropped: offset {} length {}",
                region.offset, region.len
            )?;
        }
        writeln!(f, "dropped torn tail bytes: {}", scan.torn_bytes)?;
        writeln!(
            f,
            "the service now opens and replays the kept frames; the copy aside holds the journal \
             as it was"
        )
    }
}

/// The UTC time now as `YYYYMMDDTHHMMSSZ`, for a file name.
fn utc_stamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let time = crate::domain::audit::format_utc(now.as_secs(), 0);
    // `YYYY-MM-DDTHH:MM:SS.000000Z` without separators or the fraction.
    let seconds = time.split('.').next().unwrap_or_default();
    let mut stamp: String = seconds.chars().filter(|c| *c != '-' && *c != ':').collect();
    stamp.push('Z');
    stamp
}

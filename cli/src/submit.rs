//! `mediflow submit`: read the file, split it into batches, send them (over HTTP, or straight to
//! the Storage queue), wait until the service has judged every batch, write the rejected rows to
//! `FILE.rejected.jsonl`, and sum up.
//!
//! Nothing is sent before the whole file has been read and checked, so malformed input never
//! leaves a half-submitted file. Batches go out a few at a time; the first failure stops the run
//! (what was accepted stays accepted, and rerunning the same command resumes: see
//! [`crate::batching`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use mediflow_domain::{BatchReport, BatchState};
use serde_json::{Value, json};

use crate::batching::{self, Batch, Packing};
use crate::client::{Api, ApiError};
use crate::input::{self, Format, InputError, Row};
use crate::progress::Progress;
use crate::queue::BatchQueue;
use crate::signing::Signer;

/// Batches in flight at once.
const CONCURRENCY: usize = 8;
/// First and longest pause between two reads of a queued batch's report.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(1);

/// What `submit` was asked to do.
#[derive(Debug)]
pub struct Request {
    pub file: PathBuf,
    pub format: Option<Format>,
    /// The service: where batches are posted (no queue) or followed (with a queue).
    pub api: Option<Api>,
    pub queue: Option<BatchQueue>,
    /// Signs queue messages as one client ([`crate::signing`]); unsigned without it.
    pub signer: Option<Signer>,
    pub quiet: bool,
    /// How long to wait for queued batches to be judged.
    pub wait: Duration,
}

/// What became of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: usize,
    pub batches: usize,
    /// `None` when the batches were only enqueued (no `--url` to follow them).
    pub judged: Option<Judged>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub accepted: usize,
    pub rejected: usize,
    /// Where the rejected rows were written (`None` when there were none).
    pub rejected_file: Option<PathBuf>,
}

/// Why a submission stopped.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    Queue(String),
    #[error(
        "batch {id} is still queued after {waited:?}; rerun the same command later to collect its result (nothing is sent twice)"
    )]
    StillQueued { id: String, waited: Duration },
    #[error("batch {id}: {reason}")]
    Inconsistent { id: String, reason: String },
    #[error(
        "batch {id} failed: {reason}; once the cause is fixed, `handler redrive` (or submitting the same batch again) completes it"
    )]
    Failed { id: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// The rejected-rows file next to `file`.
pub fn rejected_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".rejected.jsonl");
    PathBuf::from(name)
}

pub async fn run(request: Request) -> Result<Summary, SubmitError> {
    let started = Instant::now();
    let path = request.file.as_path();
    let bytes = std::fs::read(path).map_err(|e| InputError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let format = request
        .format
        .or_else(|| Format::from_path(path))
        .ok_or_else(|| InputError::UnknownFormat {
            path: path.to_owned(),
        })?;
    let digest = batching::file_digest(&bytes);
    let rows = input::read(path, &bytes, format)?;
    drop(bytes);
    let packing = match (&request.queue, &request.signer) {
        (Some(_), Some(signer)) => Packing::Signed(signer),
        _ => Packing::Plain,
    };
    let batches =
        batching::plan(&digest, &rows, packing).map_err(|too_large| InputError::Malformed {
            path: path.to_owned(),
            line: too_large.line,
            message: too_large.to_string(),
        })?;
    let progress = Progress::new(rows.len() as u64, request.quiet);
    let request = &request;
    let (rows, progress) = (&rows, &progress);
    let reports: Vec<Option<BatchReport>> = stream::iter(batches.iter())
        .map(|batch| async move {
            let report = send_and_wait(request, rows, batch).await?;
            progress.advance(batch.rows.len() as u64);
            Ok::<_, SubmitError>(report)
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
        .inspect_err(|_| progress.finish())?;
    progress.finish();
    let judged = if request.api.is_some() {
        Some(judge(path, rows, &batches, &reports)?)
    } else {
        None
    };
    Ok(Summary {
        rows: rows.len(),
        batches: batches.len(),
        judged,
        elapsed: started.elapsed(),
    })
}

/// Sends one batch (unless the service already has its result) and waits for its report.
async fn send_and_wait(
    request: &Request,
    rows: &[Row],
    batch: &Batch,
) -> Result<Option<BatchReport>, SubmitError> {
    let id = batch.id.hyphenated().to_string();
    let report = match (&request.queue, &request.api) {
        (None, Some(api)) => api.submit_batch(batch.body(rows)).await?,
        (Some(queue), api) => {
            if let Some(api) = api
                && let Some(done) = api.batch(&id).await?
                && done.status == BatchState::Completed
            {
                return check(batch, done).map(Some);
            }
            let body = batch.body(rows);
            let text = match &request.signer {
                Some(signer) => signer.envelope(&body),
                None => body,
            };
            queue.send(&text).await.map_err(SubmitError::Queue)?;
            let Some(api) = api else {
                return Ok(None);
            };
            wait_for(api, &id, request.wait, None).await?
        }
        (None, None) => {
            return Err(SubmitError::Queue(
                "nowhere to send: give --url or --queue-url".into(),
            ));
        }
    };
    let report = match report.status {
        BatchState::Completed => report,
        BatchState::Queued | BatchState::Failed => {
            let api = request.api.as_ref().ok_or_else(|| {
                SubmitError::Queue("a queued batch cannot be followed without --url".into())
            })?;
            wait_for(api, &id, request.wait, Some(report)).await?
        }
    };
    check(batch, report).map(Some)
}

/// Reads the batch's report until it is completed (a 404 means the queue has not delivered it yet).
async fn wait_for(
    api: &Api,
    id: &str,
    wait: Duration,
    mut latest: Option<BatchReport>,
) -> Result<BatchReport, SubmitError> {
    let deadline = Instant::now() + wait;
    let mut pause = POLL_FIRST;
    loop {
        if let Some(report) = &latest {
            match report.status {
                BatchState::Completed => return Ok(report.clone()),
                BatchState::Failed => {
                    return Err(SubmitError::Failed {
                        id: id.to_owned(),
                        reason: report.failure.clone().unwrap_or_default(),
                    });
                }
                BatchState::Queued => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(SubmitError::StillQueued {
                id: id.to_owned(),
                waited: wait,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
        latest = api.batch(id).await?;
    }
}

fn check(batch: &Batch, report: BatchReport) -> Result<BatchReport, SubmitError> {
    if report.received != batch.rows.len() || report.accepted + report.rejected != report.received {
        return Err(SubmitError::Inconsistent {
            id: batch.id.to_string(),
            reason: format!(
                "the report counts {} records ({} accepted, {} rejected) but the batch has {}",
                report.received,
                report.accepted,
                report.rejected,
                batch.rows.len()
            ),
        });
    }
    Ok(report)
}

/// Sums the reports and writes the rejected rows (or removes a stale file from an earlier run).
fn judge(
    path: &Path,
    rows: &[Row],
    batches: &[Batch],
    reports: &[Option<BatchReport>],
) -> Result<Judged, SubmitError> {
    let mut accepted = 0;
    let mut rejected: Vec<(u64, Value)> = Vec::new();
    for (batch, report) in batches.iter().zip(reports) {
        let Some(report) = report else { continue };
        accepted += report.accepted;
        for item in &report.rejected_records {
            let position = batch.rows.start + item.index;
            let row = rows
                .get(position)
                .filter(|_| item.index < batch.rows.len())
                .ok_or_else(|| SubmitError::Inconsistent {
                    id: batch.id.to_string(),
                    reason: format!(
                        "the report rejects record {} of {}",
                        item.index,
                        batch.rows.len()
                    ),
                })?;
            let as_read: Value = serde_json::from_str(&row.json).unwrap_or(Value::Null);
            rejected.push((
                row.line,
                json!({
                    "line": row.line,
                    "data_row": position + 1,
                    "row": as_read,
                    "errors": item.detail,
                }),
            ));
        }
    }
    rejected.sort_by_key(|(line, _)| *line);
    let file = rejected_path(path);
    let write_error = |e: std::io::Error| SubmitError::Write {
        path: file.clone(),
        reason: e.to_string(),
    };
    let rejected_file = if rejected.is_empty() {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(write_error(e)),
            _ => None,
        }
    } else {
        let mut text = String::new();
        for (_, line) in &rejected {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        // Written whole, then renamed: a reader never sees half a file.
        let partial = PathBuf::from(format!("{}.partial", file.display()));
        std::fs::write(&partial, text).map_err(write_error)?;
        std::fs::rename(&partial, &file).map_err(write_error)?;
        Some(file)
    };
    Ok(Judged {
        accepted,
        rejected: rejected.len(),
        rejected_file,
    })
}

impl Summary {
    /// The exit code: 0 every row accepted (or only enqueued), 2 some rows rejected.
    pub fn exit_code(&self) -> u8 {
        match &self.judged {
            Some(judged) if judged.rejected > 0 => 2,
            _ => 0,
        }
    }

    /// The lines printed at the end.
    pub fn lines(&self, file: &Path, queue: Option<&str>) -> Vec<String> {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
        let rate = self.rows as f64 / secs;
        let mut lines = vec![format!("rows read:  {} ({})", self.rows, file.display())];
        match &self.judged {
            Some(judged) => {
                lines.push(format!("accepted:   {}", judged.accepted));
                lines.push(match &judged.rejected_file {
                    Some(path) => format!(
                        "rejected:   {} (line numbers and reasons: {})",
                        judged.rejected,
                        path.display()
                    ),
                    None => format!("rejected:   {}", judged.rejected),
                });
            }
            None => lines.push(format!(
                "enqueued:   {} rows to {}; not followed (give --url to wait for the results; rerunning sends nothing twice)",
                self.rows,
                queue.unwrap_or("the queue")
            )),
        }
        lines.push(format!("batches:    {}", self.batches));
        lines.push(format!("time:       {secs:.2} s ({rate:.0} rows/s)"));
        lines
    }
}

//! `mediflow`, the command line for people who submit clinical-trial records to MediFlow and read
//! them back: `submit` a CSV or JSON Lines file (over HTTP, or straight to the Storage queue),
//! `get` a record, `batch` a batch report, `list` a site's records.
//!
//! Reading order: `input` (the file), `batching` (messages and their ids), `client` (HTTP),
//! `queue` (Storage queue), `submit` (the whole run), `progress`, `output`.

pub mod batching;
pub mod client;
pub mod input;
pub mod output;
pub mod progress;
pub mod queue;
pub mod submit;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::client::Api;
use crate::input::Format;

const ABOUT: &str = "Submit clinical-trial records to MediFlow and read them back.";

const EXAMPLES: &str = "\
Examples:
  export MEDIFLOW_URL=https://mediflow.example.org MEDIFLOW_API_KEY_FILE=~/.mediflow-key
  mediflow submit site001-march.csv
  mediflow list --site SITE001 --from 2025-03-01 --table
  mediflow get 1d0d5edd-9738-453c-8966-aaa2be88a9f5
  mediflow batch 6c1f3e1e-7d0a-4a55-9f6e-0d1b2c3d4e5f --table

Exit codes: 0 success (every row accepted); 2 some rows rejected (see FILE.rejected.jsonl);
1 failure (unreachable, refused key, malformed file, a batch that failed), with a one-line reason.";

const SUBMIT_EXAMPLES: &str = "\
Examples:
  mediflow submit --url http://localhost:8080 visits.csv
  mediflow submit --api-key-file key.txt --format jsonl export.txt
  mediflow submit --queue-url https://acct.queue.core.windows.net/mediflow-batches visits.csv
  mediflow submit --queue-url https://acct.queue.core.windows.net/mediflow-batches --url https://mediflow.example.org visits.csv

CSV: a header row with the record's fields in any order: site_id, trial_phase, submission_date,
status, patient_count and (optional) notes. JSON Lines: one record object per line.

Safe to rerun: batch ids come from the file's content and each batch's position, so running the
same command again after an interruption resumes without duplicates. Editing the file makes it a
new submission: submit corrections as a new file (for example built from FILE.rejected.jsonl).

Rejected rows go to FILE.rejected.jsonl, one JSON object per line, in file order:
  {\"line\": 17, \"data_row\": 16, \"row\": {...}, \"errors\": [{\"type\",\"loc\",\"msg\",\"input\",\"ctx\"}]}
`line` is the line of the file as an editor shows it (the header is line 1, blank lines count;
for a CSV record spanning lines because of a quoted line break, its first line; for JSON Lines,
the line). `data_row` is the record's position among the file's records (1 = the first record;
blank lines and the header not counted). Messages about malformed input (FILE:LINE: ...) use the
same line numbers.

Exit codes: 0 every row accepted (or, without --url, enqueued); 2 some rows rejected; 1 failure.";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "mediflow", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the service is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct Service {
    /// The MediFlow service URL, e.g. `--url http://localhost:8080` (or the Functions app's
    /// `https://<app>.azurewebsites.net/api`).
    #[arg(long, env = "MEDIFLOW_URL", value_name = "URL")]
    pub url: Option<String>,
    /// A file whose first line is the API key sent as `X-API-Key`, e.g. `--api-key-file ~/.mediflow-key`.
    #[arg(long, env = "MEDIFLOW_API_KEY_FILE", value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a CSV or JSON Lines file of records, wait until every row is judged, and report.
    #[command(after_help = SUBMIT_EXAMPLES)]
    Submit(SubmitArgs),
    /// Print one record, e.g. `mediflow get 1d0d5edd-9738-453c-8966-aaa2be88a9f5`.
    #[command(
        after_help = "Example:\n  mediflow get --url http://localhost:8080 1d0d5edd-9738-453c-8966-aaa2be88a9f5 --table"
    )]
    Get {
        /// The record's id, e.g. `1d0d5edd-9738-453c-8966-aaa2be88a9f5`.
        id: String,
        #[command(flatten)]
        service: Service,
        /// Print a table instead of JSON, e.g. `--table`.
        #[arg(long)]
        table: bool,
    },
    /// Print a batch's report: status, counts, accepted ids, rejected records with their errors.
    #[command(
        after_help = "Example:\n  mediflow batch --url http://localhost:8080 6c1f3e1e-7d0a-4a55-9f6e-0d1b2c3d4e5f --table"
    )]
    Batch {
        /// The batch id, e.g. `6c1f3e1e-7d0a-4a55-9f6e-0d1b2c3d4e5f`.
        id: String,
        #[command(flatten)]
        service: Service,
        /// Print a table instead of JSON, e.g. `--table`.
        #[arg(long)]
        table: bool,
    },
    /// List a site's records, newest submission date first.
    #[command(
        after_help = "Examples:\n  mediflow list --site SITE001\n  mediflow list --site SITE001 --from 2025-01-01 --to 2025-03-31 --table\n  mediflow list --site SITE001 --limit 20 --table"
    )]
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The file: CSV with a header row, or JSON Lines; e.g. `visits.csv`.
    pub file: PathBuf,
    /// The file's format when its extension does not say (.csv, .jsonl, .ndjson), e.g. `--format jsonl`.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub service: Service,
    /// Send the batches straight to this Storage queue with Entra ID instead of POST /batches,
    /// e.g. `--queue-url https://acct.queue.core.windows.net/mediflow-batches`. With `--url` as
    /// well, results are followed there; without it, only what was enqueued is reported.
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// The Entra ID credential for `--queue-url`, e.g. `--credential managed-identity` (default:
    /// workload identity when AZURE_FEDERATED_TOKEN_FILE is set, else the Azure CLI login).
    #[arg(long, value_enum)]
    pub credential: Option<queue::Credential>,
    /// No progress output, e.g. `--quiet` (the summary is still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// How long to wait for queued batches to be judged, in seconds, e.g. `--wait 1800`.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The site, e.g. `--site SITE001` (any case).
    #[arg(long)]
    pub site: String,
    /// Earliest submission date included, e.g. `--from 2025-01-01`.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<String>,
    /// Latest submission date included, e.g. `--to 2025-03-31`.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<String>,
    /// Print at most this many records, e.g. `--limit 20` (default: all of them, a page at a time).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub service: Service,
    /// Print a table instead of JSON, e.g. `--table`.
    #[arg(long)]
    pub table: bool,
}

/// A failure of a command, printed as `mediflow: <reason>` with exit code 1.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(err: E) -> Self {
        Self(err.to_string())
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Submit(args) => submit(args).await,
        Command::Get { id, service, table } => get(&id, &service, table).await,
        Command::Batch { id, service, table } => batch(&id, &service, table).await,
        Command::List(args) => list(args).await,
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(Failure(reason)) => {
            eprintln!("mediflow: {reason}");
            ExitCode::from(1)
        }
    }
}

fn api(service: &Service) -> Result<Api, Failure> {
    let url = service
        .url
        .as_deref()
        .ok_or_else(|| Failure("no service URL: pass --url URL or set MEDIFLOW_URL".into()))?;
    Ok(Api::new(url, api_key(service)?)?)
}

fn api_key(service: &Service) -> Result<Option<String>, Failure> {
    let Some(path) = &service.api_key_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure(format!(
            "cannot read the API key file {}: {e}",
            path.display()
        ))
    })?;
    let key = text.lines().map(str::trim).find(|l| !l.is_empty());
    key.map(|k| Some(k.to_owned()))
        .ok_or_else(|| Failure(format!("the API key file {} is empty", path.display())))
}

async fn submit(args: SubmitArgs) -> Result<u8, Failure> {
    let api = match (&args.service.url, &args.queue_url) {
        (None, None) => {
            return Err(Failure(
                "nowhere to submit: pass --url URL (or set MEDIFLOW_URL), or --queue-url".into(),
            ));
        }
        (None, Some(_)) => None,
        (Some(_), _) => Some(api(&args.service)?),
    };
    let queue = args
        .queue_url
        .as_deref()
        .map(|url| queue::BatchQueue::connect(url, args.credential))
        .transpose()?;
    let shown_queue = queue.as_ref().map(|q| q.display.clone());
    let file = args.file.clone();
    let request = submit::Request {
        file: args.file,
        format: args.format,
        api,
        queue,
        quiet: args.quiet,
        wait: Duration::from_secs(args.wait),
    };
    let summary = tokio::select! {
        result = submit::run(request) => result?,
        _ = tokio::signal::ctrl_c() => {
            return Err(Failure(
                "interrupted; run the same command again to resume (accepted batches are not sent twice)".into(),
            ));
        }
    };
    output::print(&(summary.lines(&file, shown_queue.as_deref()).join("\n") + "\n"))?;
    Ok(summary.exit_code())
}

async fn get(id: &str, service: &Service, table: bool) -> Result<u8, Failure> {
    let record = api(service)?.record(id).await?;
    show(record, "record", id, table, output::record_table)
}

async fn batch(id: &str, service: &Service, table: bool) -> Result<u8, Failure> {
    let report = api(service)?.batch(id).await?;
    show(report, "batch", id, table, output::batch_table)
}

/// Prints what a read command found: JSON, or a table with `--table`.
fn show<T: serde::Serialize>(
    found: Option<T>,
    what: &str,
    id: &str,
    table: bool,
    as_table: fn(&T) -> String,
) -> Result<u8, Failure> {
    let found = found.ok_or_else(|| Failure(format!("no {what} with id {id}")))?;
    output::print(&if table {
        as_table(&found)
    } else {
        output::pretty(&found)
    })?;
    Ok(0)
}

async fn list(args: ListArgs) -> Result<u8, Failure> {
    const PAGE: usize = 1000;
    let api = api(&args.service)?;
    let wanted = args.limit.unwrap_or(usize::MAX);
    let mut printed = 0;
    let mut continuation: Option<String> = None;
    let mut table_rows = Vec::new();
    if !args.table {
        output::print("[")?;
    }
    while printed < wanted {
        let mut query = vec![
            ("site_id", args.site.clone()),
            ("limit", (wanted - printed).min(PAGE).to_string()),
        ];
        query.extend(args.from.clone().map(|d| ("from", d)));
        query.extend(args.to.clone().map(|d| ("to", d)));
        query.extend(continuation.take().map(|t| ("continuation", t)));
        let page = api.list_page(&query).await?;
        let records: Vec<Value> = page
            .records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .collect();
        if args.table {
            table_rows.extend(output::record_rows(&records));
        } else {
            let mut text = String::new();
            for record in &records {
                text.push_str(if printed == 0 { "\n" } else { ",\n" });
                text.push_str(output::pretty(record).trim_end());
                printed += 1;
            }
            output::print(&text)?;
        }
        if args.table {
            printed += records.len();
        }
        match page.continuation {
            Some(token) if !records.is_empty() => continuation = Some(token),
            _ => break,
        }
    }
    if args.table {
        output::print(&output::table(&output::RECORD_COLUMNS, &table_rows))?;
    } else {
        output::print(if printed == 0 { "]\n" } else { "\n]\n" })?;
    }
    Ok(0)
}

//! `mediflow`, the command line for people who submit clinical-trial records to MediFlow and read
//! them back: `submit` a CSV or JSON Lines file (over HTTP, or straight to the Storage queue),
//! `get` a record, `batch` a batch report, `list` a site's records, `review` a record, read the
//! `audit` trail or a record's `history`, and make a client's API key (`keys new`).
//!
//! Reading order: `input` (the file), `batching` (messages and their ids), `signing` (signed
//! queue messages), `client` (HTTP), `queue` (Storage queue), `submit` (the whole run),
//! `progress`, `output`; then `review`, `trail` (audit and history) and `keys`.

pub mod batching;
pub mod client;
pub mod input;
pub mod keys;
pub mod output;
pub mod progress;
pub mod queue;
pub mod review;
pub mod signing;
pub mod submit;
pub mod trail;

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
  mediflow review 1d0d5edd-9738-453c-8966-aaa2be88a9f5 --status validated --reason \"source data verified\"
  mediflow audit --from 2026-12-01 --client site001-uploader --table
  mediflow history 1d0d5edd-9738-453c-8966-aaa2be88a9f5
  mediflow keys new --client site001-uploader --roles submit,read --sites SITE001

Exit codes: 0 success (every row accepted); 2 some rows rejected (see FILE.rejected.jsonl);
1 failure (unreachable, refused key, malformed file, a batch that failed), with a one-line reason.";

const SUBMIT_EXAMPLES: &str = "\
Examples:
  mediflow submit --url http://localhost:8080 visits.csv
  mediflow submit --api-key-file key.txt --format jsonl export.txt
  mediflow submit --queue-url https://acct.queue.core.windows.net/mediflow-batches visits.csv
  mediflow submit --queue-url https://acct.queue.core.windows.net/mediflow-batches --url https://mediflow.example.org visits.csv
  mediflow submit --queue-url https://acct.queue.core.windows.net/mediflow-batches --client site001-uploader --api-key-file key.txt visits.csv

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

Queue messages: with --client and an API key, each message is signed (an HMAC-SHA256 envelope
keyed by the SHA-256 of the API key) so the service knows which client sent it. Without --client
they go unsigned, which the service accepts only from a deployment with one legacy key.

Exit codes: 0 every row accepted (or, without --url, enqueued); 2 some rows rejected; 1 failure.";

const AUDIT_EXAMPLES: &str = "\
Examples:
  mediflow audit --from 2026-12-01 --to 2026-12-07 --table
  mediflow audit --client site001-uploader --from 2026-12-07T05:00:00Z > events.jsonl
  mediflow audit --record 1d0d5edd-9738-453c-8966-aaa2be88a9f5 --limit 50 --table

Output: JSON Lines, one event per line as the service sent it (for export), or --table. Pages are
followed until the end of the trail, or until --limit events in total.";

const KEYS_EXAMPLES: &str = "\
Examples:
  mediflow keys new --client site001-uploader --roles submit,read --sites SITE001
  mediflow keys new --client monitor-eu --roles read,review,audit --sites SITE001,SITE002
  mediflow keys new --client auditor --roles audit --sites '*'

Prints the new key on the first line of stdout, then the client-table entry (JSON) to add to the
service's key file. The key is shown once and stored nowhere: save it now (e.g. in Key Vault);
the service keeps only its SHA-256. The key is 32 random bytes from the operating system, as
URL-safe base64 without padding (43 characters).";

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

/// How a read of the audit trail is printed.
#[derive(Debug, Clone, Args)]
pub struct EventOutput {
    /// Print a table instead of JSON Lines, e.g. `--table`.
    #[arg(long)]
    pub table: bool,
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
    /// Review a pending record: validated or rejected, with a reason.
    #[command(
        after_help = "Examples:\n  mediflow review 1d0d5edd-9738-453c-8966-aaa2be88a9f5 --status validated --reason \"source data verified\"\n  mediflow review 1d0d5edd-9738-453c-8966-aaa2be88a9f5 --status rejected --reason \"visit date precedes consent\" --if-match '\"3\"'\n\nPrints the reviewed record (JSON, or --table) and its new ETag (on stderr, or in the table).\nExit 1 with the service's reason when the record is not pending (409), changed since --if-match\n(412), unknown (404), not yours to review (403), or the request is invalid (422)."
    )]
    Review(ReviewArgs),
    /// Print the audit trail: who did what, when, to which records, oldest first.
    #[command(after_help = AUDIT_EXAMPLES)]
    Audit(AuditArgs),
    /// Print every audit event naming one record, oldest first.
    #[command(
        after_help = "Examples:\n  mediflow history 1d0d5edd-9738-453c-8966-aaa2be88a9f5\n  mediflow history 1d0d5edd-9738-453c-8966-aaa2be88a9f5 --table\n\nOutput: JSON Lines, one event per line as the service sent it, or --table."
    )]
    History {
        /// The record's id, e.g. `1d0d5edd-9738-453c-8966-aaa2be88a9f5`.
        id: String,
        #[command(flatten)]
        service: Service,
        #[command(flatten)]
        output: EventOutput,
    },
    /// Make API keys for the service's client table.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random API key (shown once) and the client-table entry that grants it.
    #[command(after_help = KEYS_EXAMPLES)]
    New(KeysNewArgs),
}

#[derive(Debug, Args)]
pub struct KeysNewArgs {
    /// The client's id, 1 to 64 of A-Z a-z 0-9 . _ -, e.g. `--client site001-uploader`.
    #[arg(long, value_name = "ID")]
    pub client: String,
    /// Its roles, from submit, read, review, audit, e.g. `--roles submit,read`.
    #[arg(long, value_name = "ROLES")]
    pub roles: String,
    /// The sites it may touch (3 to 20 letters or digits; any case) or `*` for every site,
    /// e.g. `--sites SITE001,SITE002`.
    #[arg(long, value_name = "SITES")]
    pub sites: String,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The record's id, e.g. `1d0d5edd-9738-453c-8966-aaa2be88a9f5`.
    pub id: String,
    /// The reviewed status, e.g. `--status validated`.
    #[arg(long, value_enum)]
    pub status: review::Verdict,
    /// Why, 1 to 500 characters, e.g. `--reason "source data verified"`.
    #[arg(long)]
    pub reason: String,
    /// Review only if the record is still this version (its ETag), e.g. `--if-match '"3"'`.
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
    #[command(flatten)]
    pub service: Service,
    /// Print a table (with the ETag) instead of JSON, e.g. `--table`.
    #[arg(long)]
    pub table: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Earliest event time included: RFC 3339 UTC or a date, e.g. `--from 2026-12-01` or
    /// `--from 2026-12-07T05:00:00Z`.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Latest event time included, same forms, e.g. `--to 2026-12-07`.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only this client's events, e.g. `--client site001-uploader`.
    #[arg(long, value_name = "ID")]
    pub client: Option<String>,
    /// Only events naming this record, e.g. `--record 1d0d5edd-9738-453c-8966-aaa2be88a9f5`.
    #[arg(long, value_name = "ID")]
    pub record: Option<String>,
    /// Print at most this many events in total, e.g. `--limit 50` (default: the whole trail, a
    /// page at a time).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub service: Service,
    #[command(flatten)]
    pub output: EventOutput,
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
    /// Sign `--queue-url` messages as this client (needs the API key), e.g. `--client
    /// site001-uploader`. Without it queue messages go unsigned, which the service accepts only
    /// from a one-key legacy deployment. Over HTTP the API key alone identifies the client.
    #[arg(long, env = "MEDIFLOW_CLIENT", value_name = "ID")]
    pub client: Option<String>,
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
        Command::Review(args) => review::run(args).await,
        Command::Audit(args) => trail::audit(args).await,
        Command::History {
            id,
            service,
            output,
        } => trail::history(&id, &service, &output).await,
        Command::Keys(KeysCommand::New(args)) => keys::run(&args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(Failure(reason)) => {
            eprintln!("mediflow: {reason}");
            ExitCode::from(1)
        }
    }
}

pub(crate) fn api(service: &Service) -> Result<Api, Failure> {
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
    let signer = match (&args.client, &args.queue_url) {
        (Some(client), Some(_)) => {
            let client = keys::client_id(client)?;
            let key = api_key(&args.service)?.ok_or_else(|| {
                Failure(
                    "--client signs queue messages with the API key: pass --api-key-file or set MEDIFLOW_API_KEY_FILE"
                        .into(),
                )
            })?;
            Some(signing::Signer::new(&client, &key))
        }
        _ => None,
    };
    let shown_queue = queue.as_ref().map(|q| q.display.clone());
    let file = args.file.clone();
    let request = submit::Request {
        file: args.file,
        format: args.format,
        api,
        queue,
        signer,
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

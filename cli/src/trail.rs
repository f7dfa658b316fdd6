//! Reading the audit trail: `mediflow audit` (GET /audit, every page until the end or `--limit`
//! events) and `mediflow history ID` (GET /records/{id}/history). Events are printed as the
//! service sent them, one JSON object per line (fields this version does not know included), or
//! as a table with `--table`.

use serde_json::Value;

use crate::{AuditArgs, EventOutput, Failure, Service, api, output};

/// Events asked for per page: the service's largest page.
const PAGE: u64 = mediflow_domain::audit::MAX_PAGE_EVENTS as u64;

/// The query of one page: the filters as given (the service checks them), the page size, and the
/// previous page's continuation.
pub fn page_query(
    args: &AuditArgs,
    remaining: u64,
    continuation: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    query.extend(args.from.clone().map(|t| ("from", t)));
    query.extend(args.to.clone().map(|t| ("to", t)));
    query.extend(args.client.clone().map(|c| ("client", c)));
    query.extend(args.record.clone().map(|r| ("record_id", r)));
    query.push(("limit", remaining.min(PAGE).to_string()));
    query.extend(continuation.map(|c| ("continuation", c.to_owned())));
    query
}

pub async fn audit(args: AuditArgs) -> Result<u8, Failure> {
    let api = api(&args.service)?;
    let wanted = args.limit.unwrap_or(u64::MAX);
    let mut printer = Printer::new(&args.output);
    let mut continuation: Option<String> = None;
    while printer.printed < wanted {
        let query = page_query(&args, wanted - printer.printed, continuation.as_deref());
        let page = api.audit_page(&query).await?;
        let room = usize::try_from(wanted - printer.printed).unwrap_or(usize::MAX);
        printer.events(page.events.iter().take(room))?;
        match page.continuation {
            // A page may be empty and still continue (events of other sites are left out).
            Some(next) if continuation.as_deref() != Some(next.as_str()) => {
                continuation = Some(next);
            }
            Some(_) => {
                return Err(Failure(
                    "GET /audit: the service returned the same continuation twice".into(),
                ));
            }
            None => break,
        }
    }
    printer.finish()
}

pub async fn history(id: &str, service: &Service, output: &EventOutput) -> Result<u8, Failure> {
    let history = api(service)?
        .history(id)
        .await?
        .ok_or_else(|| Failure(format!("no record with id {id}")))?;
    let mut printer = Printer::new(output);
    printer.events(history.events.iter())?;
    printer.finish()
}

/// Prints events as they come (JSON Lines) or gathers them into one table.
struct Printer {
    table: Option<Vec<Vec<String>>>,
    printed: u64,
}

impl Printer {
    fn new(output: &EventOutput) -> Self {
        Self {
            table: output.table.then(Vec::new),
            printed: 0,
        }
    }

    fn events<'a>(&mut self, events: impl Iterator<Item = &'a Value>) -> Result<(), Failure> {
        let mut text = String::new();
        for event in events {
            self.printed += 1;
            if let Some(rows) = &mut self.table {
                rows.push(output::event_row(event));
            } else {
                text.push_str(&event.to_string());
                text.push('\n');
            }
        }
        output::print(&text)?;
        Ok(())
    }

    fn finish(self) -> Result<u8, Failure> {
        if let Some(rows) = self.table {
            output::print(&output::table(&output::EVENT_COLUMNS, &rows))?;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> AuditArgs {
        let mut argv = vec!["mediflow", "audit"];
        argv.extend_from_slice(line);
        match crate::Cli::try_parse_from(argv).expect("parses").command {
            crate::Command::Audit(parsed) => parsed,
            other => panic!("{other:?}"),
        }
    }

    /// What a case proves, the command line, events still wanted, the continuation, the query.
    type Case = (
        &'static str,
        AuditArgs,
        u64,
        Option<&'static str>,
        &'static [(&'static str, &'static str)],
    );

    #[test]
    fn page_queries_pass_the_filters_through_and_ask_for_what_is_left() {
        let cases: [Case; 3] = [
            (
                "no filters: a full page",
                args(&[]),
                u64::MAX,
                None,
                &[("limit", "1000")],
            ),
            (
                "every filter, a continuation, the rest of --limit",
                args(&[
                    "--from",
                    "2026-12-01",
                    "--to",
                    "2026-12-07T05:00:00Z",
                    "--client",
                    "c1",
                    "--record",
                    "r1",
                ]),
                7,
                Some("tok"),
                &[
                    ("from", "2026-12-01"),
                    ("to", "2026-12-07T05:00:00Z"),
                    ("client", "c1"),
                    ("record_id", "r1"),
                    ("limit", "7"),
                    ("continuation", "tok"),
                ],
            ),
            (
                "a large --limit: pages of 1000",
                args(&["--limit", "2500"]),
                2500,
                None,
                &[("limit", "1000")],
            ),
        ];
        for (what, args, remaining, continuation, expected) in cases {
            let query = page_query(&args, remaining, continuation);
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(query, expected, "{what}");
        }
    }

    #[test]
    fn a_zero_limit_is_refused() {
        let argv = ["mediflow", "audit", "--limit", "0"];
        assert!(crate::Cli::try_parse_from(argv).is_err());
    }
}

//! `mediflow review ID --status validated|rejected --reason TEXT [--if-match ETAG]`: moves a
//! pending record to its reviewed status (POST /records/{id}/review). The reason is checked here
//! by the service's own rule before anything is sent; each refusal the contract names (404, 403,
//! 409, 412, 422) ends the command with one line saying why, in the service's words.

use std::fmt::Write as _;

use mediflow_domain::audit::MAX_REASON_CHARS;

use crate::client::ApiError;
use crate::{Failure, ReviewArgs, api, output};

/// The reviewed status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verdict {
    Validated,
    Rejected,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validated => "validated",
            Self::Rejected => "rejected",
        }
    }
}

/// A reason the service will take: not blank, at most [`MAX_REASON_CHARS`] characters.
pub fn check_reason(reason: &str) -> Result<(), String> {
    let chars = reason.chars().count();
    if reason.trim().is_empty() {
        return Err("--reason is required: say why, in 1 to 500 characters".into());
    }
    if chars > MAX_REASON_CHARS {
        return Err(format!(
            "--reason is {chars} characters; at most {MAX_REASON_CHARS} are kept in the audit trail"
        ));
    }
    Ok(())
}

/// The one line for a refused review.
fn refusal(id: &str, err: &ApiError) -> Failure {
    let ApiError::Refused { status, detail, .. } = err else {
        return Failure(err.to_string());
    };
    let why = match status {
        404 => format!("no record with id {id}"),
        403 => format!("not allowed to review record {id}"),
        409 => format!("record {id} is not pending"),
        412 => format!(
            "record {id} changed since that ETag (--if-match); read it again with `mediflow get`"
        ),
        422 => "the service refused the review as invalid".to_owned(),
        _ => return Failure(err.to_string()),
    };
    Failure(format!("{why} ({status}): {detail}"))
}

pub async fn run(args: ReviewArgs) -> Result<u8, Failure> {
    check_reason(&args.reason)?;
    let api = api(&args.service)?;
    let reviewed = api
        .review(
            &args.id,
            args.status.as_str(),
            &args.reason,
            args.if_match.as_deref(),
        )
        .await
        .map_err(|e| refusal(&args.id, &e))?;
    let etag = reviewed.etag.unwrap_or_default();
    if args.table {
        let mut text = output::record_table(&reviewed.record);
        // Aligned with the table's field column (its widest name, `submission_date`).
        let _ = writeln!(text, "{:<15}  {etag}", "etag");
        output::print(&text)?;
    } else {
        output::print(&output::pretty(&reviewed.record))?;
        if !etag.is_empty() {
            eprintln!("ETag: {etag}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_to_500_characters_not_blank() {
        let cases = [
            ("one character", "x".to_owned(), true),
            ("500 characters", "x".repeat(500), true),
            ("500 characters, not bytes", "é".repeat(500), true),
            ("501 characters", "x".repeat(501), false),
            ("empty", String::new(), false),
            ("blank", "  \t".to_owned(), false),
        ];
        for (what, reason, valid) in cases {
            assert_eq!(check_reason(&reason).is_ok(), valid, "{what}");
        }
    }

    #[test]
    fn each_refusal_says_why_in_one_line_with_the_services_detail() {
        let cases = [
            (404, "no record with id R (404): Record not found"),
            (
                403,
                "not allowed to review record R (403): Record not found",
            ),
            (409, "record R is not pending (409): Record not found"),
            (412, "record R changed since that ETag"),
            (422, "refused the review as invalid (422): Record not found"),
            (500, "the service answered 500: Record not found"),
        ];
        for (status, expected) in cases {
            let err = ApiError::Refused {
                what: "POST /records/R/review".into(),
                status,
                detail: "Record not found".into(),
            };
            let Failure(line) = refusal("R", &err);
            assert!(line.contains(expected), "{status}: {line}");
            assert!(!line.contains('\n'), "{status}: one line");
        }
    }
}

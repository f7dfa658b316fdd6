//! Printing what the service answered: pretty JSON by default, aligned text tables with `--table`.

use std::io::Write;

use mediflow_domain::BatchReport;
use serde_json::Value;

/// Longest cell in a table (longer text is cut with `…`).
const MAX_CELL: usize = 40;

/// Columns of a record, in the contract's order.
pub const RECORD_COLUMNS: [&str; 7] = [
    "submission_date",
    "site_id",
    "trial_phase",
    "status",
    "patient_count",
    "notes",
    "id",
];

fn cell(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.replace(['\n', '\r', '\t'], " "),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_CELL {
        format!("{}…", text.chars().take(MAX_CELL - 1).collect::<String>())
    } else {
        text
    }
}

/// An aligned table: a header row, then one row per entry.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    push_line(&mut out, &widths, header.iter().copied());
    for row in rows {
        push_line(&mut out, &widths, row.iter().map(String::as_str));
    }
    out
}

fn push_line<'a>(out: &mut String, widths: &[usize], cells: impl Iterator<Item = &'a str>) {
    let text: Vec<String> = cells.zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
    out.push_str(text.join("  ").trim_end());
    out.push('\n');
}

/// Table rows of records.
pub fn record_rows(records: &[Value]) -> Vec<Vec<String>> {
    records
        .iter()
        .map(|r| RECORD_COLUMNS.iter().map(|c| cell(&r[*c])).collect())
        .collect()
}

/// Columns of an audit event table.
pub const EVENT_COLUMNS: [&str; 8] = [
    "seq",
    "time",
    "client",
    "action",
    "outcome",
    "records/batch",
    "old→new",
    "reason",
];

/// One audit event as a table row: the record ids and the batch id share a column, and a status
/// change reads `old→new`.
pub fn event_row(event: &Value) -> Vec<String> {
    let mut ids: Vec<String> = event["record_ids"]
        .as_array()
        .map(|ids| ids.iter().map(cell).collect())
        .unwrap_or_default();
    if let Some(batch) = event["batch_id"].as_str() {
        ids.push(format!("batch {batch}"));
    }
    let change = match (&event["old_status"], &event["new_status"]) {
        (Value::Null, Value::Null) => String::new(),
        (old, new) => format!("{}→{}", cell(old), cell(new)),
    };
    vec![
        cell(&event["seq"]),
        cell(&event["time"]),
        cell(&event["client"]),
        cell(&event["action"]),
        cell(&event["outcome"]),
        cell(&Value::from(ids.join(" "))),
        change,
        cell(&event["reason"]),
    ]
}

/// One record as `field  value` lines.
pub fn record_table(record: &Value) -> String {
    let rows: Vec<Vec<String>> = RECORD_COLUMNS
        .iter()
        .map(|c| vec![(*c).to_owned(), cell(&record[*c])])
        .collect();
    table(&["field", "value"], &rows)
}

/// A batch report: its counts, then each rejected record's errors.
pub fn batch_table(report: &BatchReport) -> String {
    let status = serde_json::to_value(report.status).unwrap_or(Value::Null);
    let mut out = table(
        &["batch_id", "status", "received", "accepted", "rejected"],
        &[vec![
            report.batch_id.to_string(),
            cell(&status),
            report.received.to_string(),
            report.accepted.to_string(),
            report.rejected.to_string(),
        ]],
    );
    if !report.rejected_records.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = report
            .rejected_records
            .iter()
            .flat_map(|r| {
                r.detail.iter().map(move |e| {
                    let field = e.loc.iter().skip(1).map(cell).collect::<Vec<_>>().join(".");
                    vec![
                        r.index.to_string(),
                        field,
                        e.msg.clone(),
                        e.input.as_ref().map(cell).unwrap_or_default(),
                    ]
                })
            })
            .collect();
        out.push_str(&table(&["index", "field", "error", "input"], &rows));
    }
    out
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends quietly.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

pub fn pretty(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_rows_show_ids_and_status_changes() {
        let review = serde_json::json!({
            "chain": "c", "seq": 7, "time": "2026-12-07T05:00:00.123456Z", "client": "monitor",
            "action": "review", "record_ids": ["r1"], "batch_id": null, "request_id": null,
            "outcome": "ok", "old_status": "pending", "new_status": "validated",
            "reason": "source\nverified", "prev_hash": "0", "hash": "1", "extra": true
        });
        let submit = serde_json::json!({
            "seq": 8, "action": "submit_batch", "record_ids": ["r1", "r2"], "batch_id": "b1",
            "old_status": null, "new_status": null, "reason": null
        });
        assert_eq!(
            event_row(&review),
            [
                "7",
                "2026-12-07T05:00:00.123456Z",
                "monitor",
                "review",
                "ok",
                "r1",
                "pending→validated",
                "source verified"
            ]
        );
        assert_eq!(
            event_row(&submit),
            ["8", "", "", "submit_batch", "", "r1 r2 batch b1", "", ""]
        );
    }

    #[test]
    fn tables_align_columns_and_cut_long_cells() {
        let long = "x".repeat(100);
        let text = table(
            &["a", "bee"],
            &[
                vec!["1".into(), "2".into()],
                vec!["333".into(), cell(&Value::from(long))],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "a    bee");
        assert_eq!(lines[1], "1    2");
        assert!(lines[2].starts_with("333  xxx"));
        assert_eq!(lines[2].chars().count(), 5 + MAX_CELL);
        assert!(lines[2].ends_with('…'));
    }
}

//! Reading a submission file: CSV (a header row naming the record's fields, in any order) or JSON
//! Lines (one record object per line). Every row keeps its line number in the file; anything that
//! is not a readable file of rows is an [`InputError`] naming the line, found before anything is
//! sent.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The record's fields, in the service's wire order (the service's own list). `notes` is optional.
pub use handler::domain::decode::FIELDS;
/// The first five are required.
const REQUIRED: usize = 5;

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// JSON Lines: one JSON object per line.
    Jsonl,
}

impl Format {
    /// From the file's extension: `.csv`; `.jsonl`, `.ndjson` or `.json`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            _ => None,
        }
    }
}

/// One row: where it is in the file, and the record object as it will be sent (compact JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// 1-based line number where the row starts.
    pub line: u64,
    pub json: Box<str>,
}

/// Why a file cannot be submitted. Each message names the file and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: cannot read the file: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "{path}: cannot tell the format from the extension; name it .csv or .jsonl, or pass --format csv|jsonl"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path}: no records to submit (the file is empty{header})")]
    Empty { path: PathBuf, header: &'static str },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// Reads every row of `bytes` (the content of `path`).
pub fn read(path: &Path, bytes: &[u8], format: Format) -> Result<Vec<Row>, InputError> {
    let rows = match format {
        Format::Csv => read_csv(path, bytes)?,
        Format::Jsonl => read_jsonl(path, bytes)?,
    };
    if rows.is_empty() {
        return Err(InputError::Empty {
            path: path.to_owned(),
            header: match format {
                Format::Csv => " or has only a header row",
                Format::Jsonl => " or has only blank lines",
            },
        });
    }
    Ok(rows)
}

fn malformed(path: &Path, line: u64, message: impl Into<String>) -> InputError {
    InputError::Malformed {
        path: path.to_owned(),
        line,
        message: message.into(),
    }
}

fn read_csv(path: &Path, bytes: &[u8]) -> Result<Vec<Row>, InputError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let csv_error = |err: &csv::Error| {
        let line = err.position().map_or(1, csv::Position::line);
        let message = match err.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!(
                "expected {expected_len} fields like the header, found {len} \
                 (a missing or extra comma, or an unclosed quote that swallowed a line break)"
            ),
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8 text".to_owned(),
            _ => format!("not valid CSV: {err}"),
        };
        malformed(path, line, message)
    };
    let header = reader.headers().map_err(|e| csv_error(&e))?.clone();
    if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
        return Err(InputError::Empty {
            path: path.to_owned(),
            header: "",
        });
    }
    // Column index -> field name, in header order.
    let mut columns: Vec<&'static str> = Vec::with_capacity(header.len());
    for name in &header {
        let name = name.trim();
        let Some(field) = FIELDS.iter().find(|f| **f == name) else {
            return Err(malformed(
                path,
                1,
                format!(
                    "unknown column `{name}` in the header (the columns are {}; notes is optional)",
                    FIELDS.join(", ")
                ),
            ));
        };
        if columns.contains(field) {
            return Err(malformed(
                path,
                1,
                format!("column `{name}` appears twice in the header"),
            ));
        }
        columns.push(*field);
    }
    let missing: Vec<&str> = FIELDS[..REQUIRED]
        .iter()
        .filter(|f| !columns.contains(*f))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(malformed(
            path,
            1,
            format!("the header lacks column(s) {}", missing.join(", ")),
        ));
    }
    // Emit fields in the service's order whatever the column order.
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by_key(|&i| FIELDS.iter().position(|f| *f == columns[i]));

    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => return Err(csv_error(&err)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        // A line with only separators or spaces is a blank line, not a row.
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let mut object = Map::with_capacity(columns.len());
        for &i in &order {
            let cell = &record[i];
            let value = if columns[i] == "patient_count" {
                // A whole number goes as a JSON number (the API wants an integer); anything else
                // goes as read, and the API's error names it.
                cell.trim()
                    .parse::<i64>()
                    .map_or_else(|_| Value::from(cell), Value::from)
            } else {
                Value::from(cell)
            };
            object.insert(columns[i].to_owned(), value);
        }
        rows.push(Row {
            line,
            json: Value::Object(object).to_string().into_boxed_str(),
        });
    }
    Ok(rows)
}

fn read_jsonl(path: &Path, bytes: &[u8]) -> Result<Vec<Row>, InputError> {
    let mut rows = Vec::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = index as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = if line == 1 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text =
            std::str::from_utf8(raw).map_err(|_| malformed(path, line, "not valid UTF-8 text"))?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| malformed(path, line, format!("not valid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(malformed(
                path,
                line,
                format!(
                    "expected a JSON object (one record per line), found {}",
                    kind_of(&value)
                ),
            ));
        };
        rows.push(Row {
            line,
            json: Value::Object(object).to_string().into_boxed_str(),
        });
    }
    Ok(rows)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<Vec<Row>, InputError> {
        read(Path::new("f.csv"), text.as_bytes(), Format::Csv)
    }

    fn jsonl(text: &str) -> Result<Vec<Row>, InputError> {
        read(Path::new("f.jsonl"), text.as_bytes(), Format::Jsonl)
    }

    #[test]
    fn csv_columns_in_any_order_become_records_in_wire_order_with_line_numbers() {
        let rows = csv(
            "notes,patient_count,status,submission_date,trial_phase,site_id\n\
                        \"a, quoted\nnote\",42,pending,2025-03-15,II,SITE001\n\
                        ,x,pending,2025-03-15,II,SITE001\n",
        )
        .expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(
            &*rows[0].json,
            r#"{"site_id":"SITE001","trial_phase":"II","submission_date":"2025-03-15","status":"pending","patient_count":42,"notes":"a, quoted\nnote"}"#
        );
        assert_eq!(rows[1].line, 4, "the quoted line break counts");
        assert!(
            rows[1].json.contains(r#""patient_count":"x""#),
            "sent as read for the API to judge"
        );
    }

    #[test]
    fn malformed_files_are_refused_naming_the_line() {
        type Case = (&'static str, Result<Vec<Row>, InputError>, &'static str);
        let header = "site_id,trial_phase,submission_date,status,patient_count\n";
        let cases: Vec<Case> = vec![
            ("empty CSV", csv(""), "no records"),
            ("header only", csv(header), "only a header row"),
            ("unknown column", csv("site_id,trial_phase,submission_date,status,patient_count,colour\n"), "f.csv:1: unknown column `colour`"),
            ("missing column", csv("site_id,status\nA,B\n"), "f.csv:1: the header lacks column(s) trial_phase, submission_date, patient_count"),
            ("duplicate column", csv("site_id,site_id\n"), "f.csv:1: column `site_id` appears twice"),
            ("extra field", csv(&format!("{header}SITE001,II,2025-01-01,pending,1\nSITE001,II,2025-01-01,pending,1,extra\n")), "f.csv:3: expected 5 fields"),
            ("unclosed quote", csv(&format!("{header}SITE001,II,2025-01-01,pending,1\n\"SITE001,II,2025-01-01,pending,1\nSITE002,II,2025-01-01,pending,1\n")), "f.csv:3: expected 5 fields"),
            ("not UTF-8", read(Path::new("f.csv"), b"site_id,trial_phase,submission_date,status,patient_count\nSIT\xff,II,2025-01-01,pending,1\n", Format::Csv), "f.csv:2: not valid UTF-8"),
            ("empty JSONL", jsonl("\n \n"), "only blank lines"),
            ("array line", jsonl("{\"a\":1}\n[1,2]\n"), "f.jsonl:2: expected a JSON object (one record per line), found an array"),
            ("broken JSON", jsonl("{\"a\":1}\n\n{\"a\":\n"), "f.jsonl:3: not valid JSON"),
            ("string line", jsonl("\"SITE001\"\n"), "f.jsonl:1: expected a JSON object (one record per line), found a string"),
        ];
        for (what, result, expected) in cases {
            let message = result.expect_err(what).to_string();
            assert!(message.contains(expected), "{what}: {message}");
        }
    }

    #[test]
    fn jsonl_skips_blank_lines_and_keeps_line_numbers() {
        let rows = jsonl("\u{feff}{\"site_id\":\"A\"}\r\n\n{\"notes\":\"x\"}").expect("valid");
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(&*rows[1].json, r#"{"notes":"x"}"#);
    }

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(Format::from_path(Path::new("a.CSV")), Some(Format::Csv));
        assert_eq!(
            Format::from_path(Path::new("a.ndjson")),
            Some(Format::Jsonl)
        );
        assert_eq!(Format::from_path(Path::new("a.txt")), None);
    }
}

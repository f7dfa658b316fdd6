//! Decoding a submission from JSON: exact JSON types, every field error reported at once, unknown
//! fields refused by name. The same decoder serves POST /records and every record of a batch.

use serde_json::{Map, Value, json};

use super::errors::FieldError;
use super::record::{
    NewRecord, Notes, PatientCount, SiteId, Status, SubmissionDate, TrialPhase, Violation,
};

/// The fields a submission may carry, in wire order.
pub const FIELDS: [&str; 6] = [
    "site_id",
    "trial_phase",
    "submission_date",
    "status",
    "patient_count",
    "notes",
];

/// Decodes a request body (raw bytes) into a submission.
pub fn record_from_slice(body: &[u8]) -> Result<NewRecord, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body).map_err(|err| vec![json_invalid(body, &err)])?;
    record_from_value(&value)
}

/// The 422 item for a body that is not JSON. `loc` carries the byte offset of the error, as the
/// previous service did; the message comes from the parser and depends only on the input.
pub fn json_invalid(body: &[u8], err: &serde_json::Error) -> FieldError {
    FieldError {
        kind: "json_invalid".into(),
        loc: vec![Value::from("body"), Value::from(byte_offset(body, err))],
        msg: "JSON decode error".to_owned(),
        input: Some(json!({})),
        ctx: Some(json!({ "error": err.to_string() })),
    }
}

fn byte_offset(body: &[u8], err: &serde_json::Error) -> usize {
    let (line, column) = (err.line(), err.column());
    if line == 0 {
        return 0;
    }
    let line_start: usize = body
        .split(|b| *b == b'\n')
        .take(line - 1)
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

/// Decodes an already-parsed JSON value (a batch item, or a body parsed elsewhere).
pub fn record_from_value(value: &Value) -> Result<NewRecord, Vec<FieldError>> {
    let Value::Object(object) = value else {
        return Err(vec![FieldError {
            kind: "model_attributes_type".into(),
            loc: vec![Value::from("body")],
            msg: "Input should be a valid dictionary or object to extract fields from".to_owned(),
            input: Some(value.clone()),
            ctx: None,
        }]);
    };
    let mut errors = Vec::new();
    let mut field = |name: &str| {
        let found = object.get(name);
        if found.is_none() && name != "notes" {
            errors.push(FieldError::body(name, "missing", "Field required", value.clone()));
        }
        found
    };
    let site_id = field("site_id");
    let trial_phase = field("trial_phase");
    let submission_date = field("submission_date");
    let status = field("status");
    let patient_count = field("patient_count");
    let notes = field("notes");

    let site_id = site_id.and_then(|v| collect(&mut errors, decode_site_id(v)));
    let trial_phase = trial_phase.and_then(|v| collect(&mut errors, decode_trial_phase(v)));
    let submission_date =
        submission_date.and_then(|v| collect(&mut errors, decode_submission_date(v)));
    let status = status.and_then(|v| collect(&mut errors, decode_status(v)));
    let patient_count = patient_count.and_then(|v| collect(&mut errors, decode_patient_count(v)));
    let notes = match notes {
        None => Some(Notes::default()),
        Some(v) => collect(&mut errors, decode_notes(v)),
    };
    errors.extend(unknown_fields(object));

    match (site_id, trial_phase, submission_date, status, patient_count, notes) {
        (Some(site_id), Some(trial_phase), Some(submission_date), Some(status), Some(patient_count), Some(notes))
            if errors.is_empty() =>
        {
            Ok(NewRecord { site_id, trial_phase, submission_date, status, patient_count, notes })
        }
        _ => Err(errors),
    }
}

fn collect<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

fn unknown_fields(object: &Map<String, Value>) -> impl Iterator<Item = FieldError> + '_ {
    object
        .iter()
        .filter(|(name, _)| !FIELDS.contains(&name.as_str()))
        .map(|(name, input)| {
            FieldError::body(name, "extra_forbidden", "Extra inputs are not permitted", input.clone())
        })
}

fn string<'a>(field: &str, value: &'a Value) -> Result<&'a str, FieldError> {
    value
        .as_str()
        .ok_or_else(|| FieldError::body(field, "string_type", "Input should be a valid string", value.clone()))
}

fn too_short(field: &str, value: &Value, min: u64) -> FieldError {
    let plural = if min == 1 { "" } else { "s" };
    FieldError::body(field, "string_too_short", format!("String should have at least {min} character{plural}"), value.clone())
        .with_ctx(json!({ "min_length": min }))
}

fn too_long(field: &str, value: &Value, max: u64) -> FieldError {
    FieldError::body(field, "string_too_long", format!("String should have at most {max} characters"), value.clone())
        .with_ctx(json!({ "max_length": max }))
}

fn not_one_of(field: &str, value: &Value, names: &[&str]) -> FieldError {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let expected = match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    };
    FieldError::body(field, "literal_error", format!("Input should be {expected}"), value.clone())
        .with_ctx(json!({ "expected": expected }))
}

fn decode_site_id(value: &Value) -> Result<SiteId, FieldError> {
    const FIELD: &str = "site_id";
    SiteId::parse(string(FIELD, value)?).map_err(|violation| match violation {
        Violation::TooShort => too_short(FIELD, value, SiteId::MIN_LEN),
        Violation::TooLong => too_long(FIELD, value, SiteId::MAX_LEN),
        _ => FieldError::body(
            FIELD,
            "string_pattern_mismatch",
            "String should match pattern '^[A-Za-z0-9]{3,20}$'",
            value.clone(),
        )
        .with_ctx(json!({ "pattern": "^[A-Za-z0-9]{3,20}$" })),
    })
}

fn decode_trial_phase(value: &Value) -> Result<TrialPhase, FieldError> {
    const FIELD: &str = "trial_phase";
    TrialPhase::parse(string(FIELD, value)?)
        .map_err(|_| not_one_of(FIELD, value, &TrialPhase::ALL.map(|(name, _)| name)))
}

fn decode_status(value: &Value) -> Result<Status, FieldError> {
    const FIELD: &str = "status";
    Status::parse(string(FIELD, value)?)
        .map_err(|_| not_one_of(FIELD, value, &Status::ALL.map(|(name, _)| name)))
}

fn decode_submission_date(value: &Value) -> Result<SubmissionDate, FieldError> {
    const FIELD: &str = "submission_date";
    let Some(raw) = value.as_str() else {
        return Err(FieldError::body(FIELD, "date_type", "Input should be a valid date in the format YYYY-MM-DD", value.clone()));
    };
    SubmissionDate::parse(raw).map_err(|_| {
        FieldError::body(FIELD, "date_parsing", "Input should be a valid calendar date in the format YYYY-MM-DD", value.clone())
    })
}

fn decode_patient_count(value: &Value) -> Result<PatientCount, FieldError> {
    const FIELD: &str = "patient_count";
    let Some(raw) = integer(value) else {
        let fractional = value.as_f64().is_some_and(|f| f.fract() != 0.0);
        return Err(if fractional {
            FieldError::body(FIELD, "int_from_float", "Input should be a valid integer, got a number with a fractional part", value.clone())
        } else {
            FieldError::body(FIELD, "int_type", "Input should be a valid integer", value.clone())
        });
    };
    PatientCount::parse(raw).map_err(|violation| match violation {
        Violation::TooSmall => FieldError::body(FIELD, "greater_than_equal", "Input should be greater than or equal to 1", value.clone())
            .with_ctx(json!({ "ge": PatientCount::MIN })),
        _ => FieldError::body(FIELD, "less_than_equal", "Input should be less than or equal to 10000", value.clone())
            .with_ctx(json!({ "le": PatientCount::MAX })),
    })
}

/// A JSON integer literal only: `42`, not `42.0`, `"42"` or `true`. Integers beyond i64 are
/// clamped so they report as out of range rather than as a wrong type.
fn integer(value: &Value) -> Option<i64> {
    let Value::Number(number) = value else { return None };
    if let Some(i) = number.as_i64() {
        return Some(i);
    }
    number.as_u64().map(|_| i64::MAX)
}

fn decode_notes(value: &Value) -> Result<Notes, FieldError> {
    const FIELD: &str = "notes";
    Notes::parse(string(FIELD, value)?).map_err(|_| too_long(FIELD, value, Notes::MAX_CHARS))
}

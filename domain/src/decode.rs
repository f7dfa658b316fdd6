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

/// The most JSON values a record body may hold before it is refused unparsed. A record has six
/// scalar fields; a body of hundreds of thousands of tiny values would cost ~40 times its size as
/// a parsed tree, so it is refused (`too_many_values`) before a tree is built.
pub const MAX_BODY_VALUES: usize = 4096;

/// Decodes a request body (raw bytes) into a submission.
pub fn record_from_slice(body: &[u8]) -> Result<NewRecord, Vec<FieldError>> {
    if more_values_than(body, MAX_BODY_VALUES) {
        // Checking the syntax allocates nothing; a broken body still gets its `json_invalid`.
        return Err(vec![
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Err(err) => json_invalid(body, &err),
                Ok(_) => FieldError {
                    kind: "too_many_values".into(),
                    loc: vec![Value::from("body")],
                    msg: format!(
                        "The body holds more than {MAX_BODY_VALUES} JSON values; a record has six fields"
                    ),
                    input: Some(super::errors::echo_prefix(body)),
                    ctx: Some(json!({ "max_values": MAX_BODY_VALUES })),
                },
            },
        ]);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|err| vec![json_invalid(body, &err)])?;
    record_from_value(&value)
}

/// Whether `body` holds more than `limit` JSON values, counted without parsing: each `,`, `[`
/// and `{` outside a string starts at most one more value. Stops at the first byte past the limit.
fn more_values_than(body: &[u8], limit: usize) -> bool {
    let (mut count, mut in_string, mut escaped) = (0_usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b',' | b'[' | b'{' => {
                count += 1;
                if count > limit {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
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
            input: Some(super::errors::echo(value)),
            ctx: None,
        }]);
    };
    let mut errors = Vec::new();
    // Fields are judged in wire order, so errors come back in the order clients list the fields.
    let site_id = required_then(&mut errors, object, value, "site_id", decode_site_id);
    let trial_phase = required_then(
        &mut errors,
        object,
        value,
        "trial_phase",
        decode_trial_phase,
    );
    let submission_date = required_then(
        &mut errors,
        object,
        value,
        "submission_date",
        decode_submission_date,
    );
    let status = required_then(&mut errors, object, value, "status", decode_status);
    let patient_count = required_then(
        &mut errors,
        object,
        value,
        "patient_count",
        decode_patient_count,
    );
    let notes = match object.get("notes") {
        None => Some(Notes::default()),
        Some(v) => collect(&mut errors, decode_notes(v)),
    };
    errors.extend(unknown_fields(object));

    match (
        site_id,
        trial_phase,
        submission_date,
        status,
        patient_count,
        notes,
    ) {
        (
            Some(site_id),
            Some(trial_phase),
            Some(submission_date),
            Some(status),
            Some(patient_count),
            Some(notes),
        ) if errors.is_empty() => Ok(NewRecord {
            site_id,
            trial_phase,
            submission_date,
            status,
            patient_count,
            notes,
        }),
        _ => Err(super::errors::cap_errors(errors)),
    }
}

/// Looks a required field up and decodes it, recording a `missing` or decode error.
fn required_then<T>(
    errors: &mut Vec<FieldError>,
    object: &Map<String, Value>,
    body: &Value,
    name: &str,
    decode: fn(&Value) -> Result<T, FieldError>,
) -> Option<T> {
    match object.get(name) {
        None => {
            errors.push(FieldError::body(name, "missing", "Field required", body));
            None
        }
        Some(found) => collect(errors, decode(found)),
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
            FieldError::body(
                name,
                "extra_forbidden",
                "Extra inputs are not permitted",
                input,
            )
        })
}

fn string<'a>(field: &str, value: &'a Value) -> Result<&'a str, FieldError> {
    value.as_str().ok_or_else(|| {
        FieldError::body(
            field,
            "string_type",
            "Input should be a valid string",
            value,
        )
    })
}

fn too_short(field: &str, value: &Value, min: u64) -> FieldError {
    let plural = if min == 1 { "" } else { "s" };
    FieldError::body(
        field,
        "string_too_short",
        format!("String should have at least {min} character{plural}"),
        value,
    )
    .with_ctx(json!({ "min_length": min }))
}

fn too_long(field: &str, value: &Value, max: u64) -> FieldError {
    FieldError::body(
        field,
        "string_too_long",
        format!("String should have at most {max} characters"),
        value,
    )
    .with_ctx(json!({ "max_length": max }))
}

fn not_one_of(field: &str, value: &Value, names: &[&str]) -> FieldError {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let expected = match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    };
    FieldError::body(
        field,
        "literal_error",
        format!("Input should be {expected}"),
        value,
    )
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
            value,
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
        return Err(FieldError::body(
            FIELD,
            "date_type",
            "Input should be a valid date in the format YYYY-MM-DD",
            value,
        ));
    };
    SubmissionDate::parse(raw).map_err(|_| {
        FieldError::body(
            FIELD,
            "date_parsing",
            "Input should be a valid calendar date in the format YYYY-MM-DD",
            value,
        )
    })
}

fn decode_patient_count(value: &Value) -> Result<PatientCount, FieldError> {
    const FIELD: &str = "patient_count";
    let Some(raw) = integer(value) else {
        let fractional = value.as_f64().is_some_and(|f| f.fract() != 0.0);
        return Err(if fractional {
            FieldError::body(
                FIELD,
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        } else {
            FieldError::body(FIELD, "int_type", "Input should be a valid integer", value)
        });
    };
    PatientCount::parse(raw).map_err(|violation| match violation {
        Violation::TooSmall => FieldError::body(
            FIELD,
            "greater_than_equal",
            "Input should be greater than or equal to 1",
            value,
        )
        .with_ctx(json!({ "ge": PatientCount::MIN })),
        _ => FieldError::body(
            FIELD,
            "less_than_equal",
            "Input should be less than or equal to 10000",
            value,
        )
        .with_ctx(json!({ "le": PatientCount::MAX })),
    })
}

/// A JSON integer literal only: `42`, not `42.0`, `"42"` or `true`. Integers beyond i64 are
/// clamped so they report as out of range rather than as a wrong type.
fn integer(value: &Value) -> Option<i64> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(i) = number.as_i64() {
        return Some(i);
    }
    number.as_u64().map(|_| i64::MAX)
}

fn decode_notes(value: &Value) -> Result<Notes, FieldError> {
    const FIELD: &str = "notes";
    Notes::parse(string(FIELD, value)?).map_err(|_| too_long(FIELD, value, Notes::MAX_CHARS))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn valid() -> Value {
        json!({"site_id": "site001", "trial_phase": "II", "submission_date": "2025-03-15",
               "status": "pending", "patient_count": 42, "notes": "Initial submission"})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = valid();
        body[field] = value;
        body
    }

    fn without(field: &str) -> Value {
        let mut body = valid();
        body.as_object_mut().expect("object").remove(field);
        body
    }

    /// `(type, field)` of every error a case expects, in order.
    type Expected = Vec<(&'static str, &'static str)>;

    /// (what the case proves, body, expected errors).
    #[expect(clippy::too_many_lines, reason = "one table row per rule is the point")]
    fn cases() -> Vec<(&'static str, Value, Expected)> {
        let long = |n: usize| Value::from("a".repeat(n));
        vec![
            ("the seed example is valid", valid(), vec![]),
            ("notes may be omitted", without("notes"), vec![]),
            ("notes may be empty", with("notes", json!("")), vec![]),
            (
                "notes of exactly 500 characters fit",
                with("notes", long(500)),
                vec![],
            ),
            (
                "500 multi-byte characters are 500 characters",
                with("notes", Value::from("é".repeat(500))),
                vec![],
            ),
            (
                "501 characters do not",
                with("notes", long(501)),
                vec![("string_too_long", "notes")],
            ),
            (
                "notes must be a string",
                with("notes", json!(5)),
                vec![("string_type", "notes")],
            ),
            (
                "notes cannot be null",
                with("notes", Value::Null),
                vec![("string_type", "notes")],
            ),
            (
                "site_id of 3 characters fits",
                with("site_id", json!("abc")),
                vec![],
            ),
            (
                "site_id of 20 characters fits",
                with("site_id", long(20)),
                vec![],
            ),
            (
                "site_id of 2 is too short",
                with("site_id", json!("ab")),
                vec![("string_too_short", "site_id")],
            ),
            (
                "site_id of 21 is too long",
                with("site_id", long(21)),
                vec![("string_too_long", "site_id")],
            ),
            (
                "site_id must be ASCII",
                with("site_id", json!("éte123")),
                vec![("string_pattern_mismatch", "site_id")],
            ),
            (
                "11 × ß is 11 characters but not ASCII (the old 500)",
                with("site_id", Value::from("ß".repeat(11))),
                vec![("string_pattern_mismatch", "site_id")],
            ),
            (
                "site_id has no punctuation",
                with("site_id", json!("site-01")),
                vec![("string_pattern_mismatch", "site_id")],
            ),
            (
                "site_id has no spaces",
                with("site_id", json!("site 01")),
                vec![("string_pattern_mismatch", "site_id")],
            ),
            (
                "site_id must be a string",
                with("site_id", json!(12345)),
                vec![("string_type", "site_id")],
            ),
            ("trial_phase IV", with("trial_phase", json!("IV")), vec![]),
            (
                "trial_phase is case-sensitive",
                with("trial_phase", json!("ii")),
                vec![("literal_error", "trial_phase")],
            ),
            (
                "trial_phase V does not exist",
                with("trial_phase", json!("V")),
                vec![("literal_error", "trial_phase")],
            ),
            (
                "trial_phase as a number",
                with("trial_phase", json!(2)),
                vec![("string_type", "trial_phase")],
            ),
            (
                "status validated",
                with("status", json!("validated")),
                vec![],
            ),
            (
                "status is case-sensitive",
                with("status", json!("Pending")),
                vec![("literal_error", "status")],
            ),
            (
                "leap day in a leap year",
                with("submission_date", json!("2024-02-29")),
                vec![],
            ),
            (
                "leap day in 2000 (divisible by 400)",
                with("submission_date", json!("2000-02-29")),
                vec![],
            ),
            (
                "no leap day in 1900",
                with("submission_date", json!("1900-02-29")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no 30 February",
                with("submission_date", json!("2025-02-30")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no month 13",
                with("submission_date", json!("2025-13-01")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no day 0",
                with("submission_date", json!("2025-01-00")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no 31 April",
                with("submission_date", json!("2025-04-31")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no year 0000",
                with("submission_date", json!("0000-01-01")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no time part",
                with("submission_date", json!("2025-03-15T00:00:00")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no unpadded month",
                with("submission_date", json!("2025-3-15")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no slashes",
                with("submission_date", json!("2025/03/15")),
                vec![("date_parsing", "submission_date")],
            ),
            (
                "no unix timestamp",
                with("submission_date", json!(1_741_996_800)),
                vec![("date_type", "submission_date")],
            ),
            ("patient_count 1", with("patient_count", json!(1)), vec![]),
            (
                "patient_count 10000",
                with("patient_count", json!(10_000)),
                vec![],
            ),
            (
                "patient_count 0",
                with("patient_count", json!(0)),
                vec![("greater_than_equal", "patient_count")],
            ),
            (
                "patient_count -5",
                with("patient_count", json!(-5)),
                vec![("greater_than_equal", "patient_count")],
            ),
            (
                "patient_count 10001",
                with("patient_count", json!(10_001)),
                vec![("less_than_equal", "patient_count")],
            ),
            (
                "patient_count beyond u64",
                with("patient_count", json!(u64::MAX)),
                vec![("less_than_equal", "patient_count")],
            ),
            (
                "patient_count true is not 1",
                with("patient_count", json!(true)),
                vec![("int_type", "patient_count")],
            ),
            (
                "patient_count \"42\" is not 42",
                with("patient_count", json!("42")),
                vec![("int_type", "patient_count")],
            ),
            (
                "patient_count 42.0 is not 42",
                with("patient_count", json!(42.0)),
                vec![("int_type", "patient_count")],
            ),
            (
                "patient_count 42.5",
                with("patient_count", json!(42.5)),
                vec![("int_from_float", "patient_count")],
            ),
            (
                "an unknown field is named",
                with("id", json!("x")),
                vec![("extra_forbidden", "id")],
            ),
            (
                "every missing field is listed, in order",
                json!({}),
                vec![
                    ("missing", "site_id"),
                    ("missing", "trial_phase"),
                    ("missing", "submission_date"),
                    ("missing", "status"),
                    ("missing", "patient_count"),
                ],
            ),
            (
                "all errors come back together, in field order",
                json!({
                    "site_id": "x", "trial_phase": "V", "submission_date": "2025-02-30",
                    "status": "done", "patient_count": 0, "notes": 1, "extra": true,
                }),
                vec![
                    ("string_too_short", "site_id"),
                    ("literal_error", "trial_phase"),
                    ("date_parsing", "submission_date"),
                    ("literal_error", "status"),
                    ("greater_than_equal", "patient_count"),
                    ("string_type", "notes"),
                    ("extra_forbidden", "extra"),
                ],
            ),
        ]
    }

    #[test]
    fn validation_table() {
        for (proves, body, expected) in cases() {
            let got: Vec<(String, String)> = match record_from_value(&body) {
                Ok(_) => vec![],
                Err(errors) => errors
                    .iter()
                    .map(|e| (e.kind.to_string(), e.field().unwrap_or_default().to_owned()))
                    .collect(),
            };
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(k, f)| ((*k).to_owned(), (*f).to_owned()))
                .collect();
            assert_eq!(got, expected, "{proves}");
        }
    }

    #[test]
    fn site_id_is_stored_upper_cased_and_other_fields_unchanged() {
        let record = record_from_value(&valid()).expect("valid");
        let stored = serde_json::to_value(&record).expect("serialise");
        assert_eq!(
            stored,
            json!({"site_id": "SITE001", "trial_phase": "II", "submission_date": "2025-03-15",
                   "status": "pending", "patient_count": 42, "notes": "Initial submission"})
        );
    }

    #[test]
    fn bodies_that_are_not_objects_are_one_model_attributes_type_error() {
        for body in [json!([]), json!("text"), json!(1), Value::Null] {
            let errors = record_from_value(&body).expect_err("not an object");
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].kind, "model_attributes_type");
        }
    }

    #[test]
    fn malformed_json_reports_json_invalid_at_the_byte_offset() {
        for (body, offset) in [(&b"{bad"[..], 1), (b"", 0), (b"{\"a\":\n  ]", 8)] {
            let errors = record_from_slice(body).expect_err("malformed");
            assert_eq!(errors.len(), 1, "{body:?}");
            assert_eq!(errors[0].kind, "json_invalid");
            assert_eq!(
                errors[0].loc,
                vec![json!("body"), json!(offset)],
                "{body:?}"
            );
        }
    }

    #[test]
    fn messages_are_identical_on_every_call() {
        let body = json!({"status": "nope", "trial_phase": "X"});
        let first =
            serde_json::to_string(&record_from_value(&body).expect_err("invalid")).expect("json");
        for _ in 0..10 {
            let again = serde_json::to_string(&record_from_value(&body).expect_err("invalid"))
                .expect("json");
            assert_eq!(first, again);
        }
    }

    #[test]
    fn bodies_of_many_values_are_refused_before_a_tree_is_built() {
        let zeros = format!("{{\"x\":[{}0]}}", "0,".repeat(500_000));
        let fields = format!(
            "{{{}\"last\":0}}",
            (0..25_000).fold(String::new(), |mut out, i| {
                use std::fmt::Write as _;
                let _ = write!(out, "\"f{i}\":0,");
                out
            })
        );
        let broken = format!("[{}", "0,".repeat(10_000));
        let commas_in_notes = with("notes", json!(",".repeat(500))).to_string();
        for (body, kind, what) in [
            (
                zeros.as_str(),
                Some("too_many_values"),
                "an array of 500,000 zeros",
            ),
            (
                fields.as_str(),
                Some("too_many_values"),
                "25,000 unknown fields",
            ),
            (
                broken.as_str(),
                Some("json_invalid"),
                "broken JSON is still json_invalid",
            ),
            (
                commas_in_notes.as_str(),
                None,
                "commas inside a string are not values",
            ),
        ] {
            let result = record_from_slice(body.as_bytes());
            match kind {
                None => assert!(result.is_ok(), "{what}: {result:?}"),
                Some(kind) => {
                    let errors = result.expect_err(what);
                    assert_eq!(errors.len(), 1, "{what}");
                    assert_eq!(errors[0].kind, kind, "{what}");
                    let text = serde_json::to_string(&errors).expect("json");
                    assert!(
                        text.len() < 1024,
                        "{what}: the error echoes {} bytes",
                        text.len()
                    );
                }
            }
        }
    }

    #[test]
    fn error_answers_stay_small_whatever_the_body() {
        let long = "x".repeat(200_000);
        let bodies = [
            json!({"site_id": long, "trial_phase": long, "submission_date": long,
                   "status": long, "patient_count": long, "notes": long}),
            json!({ long.clone(): 1 }),
            json!({"x": vec![long.as_str(); 4]}),
        ];
        for body in bodies {
            let errors = record_from_slice(body.to_string().as_bytes()).expect_err("invalid");
            let text = serde_json::to_string(&json!({ "detail": errors })).expect("json");
            assert!(text.len() <= 64 * 1024, "{} bytes", text.len());
        }
    }
}

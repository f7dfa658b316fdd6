//! Property tests of every decoder a stranger can reach: the record body, the batch message, the
//! Functions invocation envelope, and the `X-API-Key` and `Idempotency-Key` headers; then random
//! bodies against the running binary.
//!
//! Properties: never a panic; an accepted record round-trips unchanged; a record broken in exactly
//! one field gets exactly one error, naming that field; the same input always gets the same error
//! (in this process and in the server's); no request gets a 5xx.
//!
//! Cases: proptest's default (256 per property) or `PROPTEST_CASES`; the long run is documented in
//! docs/hardening.md.

use std::collections::BTreeSet;

use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

use handler::auth::Clients;
use handler::domain::decode::{FIELDS, record_from_slice, record_from_value};
use handler::domain::{BatchMessage, FieldError};
use handler::functions::envelope::Invocation;
use handler::service::ServiceError;
use handler::service::records::check_idempotency_key;

use crate::support::{App, AppOptions};

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Any JSON value, floats included (finite: JSON has no NaN).
fn any_json() -> impl Strategy<Value = Value> {
    json_tree(true)
}

/// Any JSON value without floats: text round trips are exact.
fn exact_json() -> impl Strategy<Value = Value> {
    json_tree(false)
}

fn json_tree(floats: bool) -> impl Strategy<Value = Value> {
    let float = any::<f64>()
        .prop_filter_map("finite", serde_json::Number::from_f64)
        .prop_map(Value::Number);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "(?s).{0,24}".prop_map(Value::from),
        plausible_field_value(),
    ];
    let leaf = if floats {
        prop_oneof![4 => leaf, 1 => float].boxed()
    } else {
        leaf.boxed()
    };
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("(?s).{0,10}", inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Values close to what a record field holds, so the decoder's deeper branches are reached.
fn plausible_field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[A-Za-z0-9]{0,22}".prop_map(Value::from),
        prop::sample::select(vec![
            "I", "II", "III", "IV", "V", "ii", "pending", "Pending"
        ])
        .prop_map(Value::from),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::from),
        (-5_i64..10_010).prop_map(Value::from),
        Just(json!(42.0)),
        Just(json!(1.5)),
    ]
}

/// Objects with record field names (and some others), holding plausible or arbitrary values.
fn record_like_object() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ];
    let value = prop_oneof![2 => plausible_field_value(), 1 => any_json()];
    prop::collection::vec((key, value), 0..9)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
}

/// Whether `year-month-day` is a day of the Gregorian calendar, as the `time` crate says: an
/// oracle independent of the decoder's own calendar arithmetic (month lengths, leap years).
fn is_calendar_day(year: u32, month: u32, day: u32) -> bool {
    let (Ok(year), Ok(month), Ok(day)) = (
        i32::try_from(year),
        u8::try_from(month).map(time::Month::try_from),
        u8::try_from(day),
    ) else {
        return false;
    };
    month.is_ok_and(|month| time::Date::from_calendar_date(year, month, day).is_ok())
}

/// The day `n` days after 0001-01-01, as `YYYY-MM-DD` (the `time` crate's arithmetic).
fn nth_day(n: i32) -> String {
    let first = time::Date::from_calendar_date(1, time::Month::January, 1).expect("0001-01-01");
    let date = time::Date::from_julian_day(first.to_julian_day() + n).expect("a day");
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Days from 0001-01-01 to 9999-12-31, both included.
fn days_in_years_1_to_9999() -> i32 {
    let day = |year, month, day| {
        time::Date::from_calendar_date(year, month, day)
            .expect("a day")
            .to_julian_day()
    };
    day(9999, time::Month::December, 31) - day(1, time::Month::January, 1) + 1
}

/// The test's own statement of the date rule (an oracle the decoder is compared with): the
/// `YYYY-MM-DD` shape in ASCII digits, a year from 1, and a day the calendar has.
fn is_real_date(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        raw.get(range.clone())
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?
            .parse()
            .ok()
    };
    match (number(0..4), number(5..7), number(8..10)) {
        (Some(y), Some(m), Some(d)) => y >= 1 && is_calendar_day(y, m, d),
        _ => false,
    }
}

/// Any day from 0001-01-01 to 9999-12-31, each as likely (leap days included).
fn real_date() -> impl Strategy<Value = String> {
    (0..days_in_years_1_to_9999()).prop_map(nth_day)
}

/// A valid submission and the record it must be stored as.
#[derive(Debug, Clone)]
struct ValidCase {
    body: Value,
    stored: Value,
}

fn valid_record() -> impl Strategy<Value = ValidCase> {
    (
        "[A-Za-z0-9]{3,20}",
        prop::sample::select(vec!["I", "II", "III", "IV"]),
        real_date(),
        prop::sample::select(vec!["pending", "validated", "rejected"]),
        1_i64..=10_000,
        prop::option::of("(?s).{0,500}"),
    )
        .prop_map(|(site, phase, date, status, count, notes)| {
            let mut body = json!({
                "site_id": site, "trial_phase": phase, "submission_date": date,
                "status": status, "patient_count": count,
            });
            if let Some(notes) = &notes {
                body["notes"] = Value::from(notes.as_str());
            }
            let stored = json!({
                "site_id": site.to_ascii_uppercase(), "trial_phase": phase,
                "submission_date": date, "status": status, "patient_count": count,
                "notes": notes.unwrap_or_default(),
            });
            ValidCase { body, stored }
        })
}

/// JSON that is not a string.
fn not_a_string() -> impl Strategy<Value = Value> {
    any_json().prop_filter("not a string", |v| !v.is_string())
}

/// How one field of a valid record is broken.
#[derive(Debug, Clone)]
enum Break {
    Set(Value),
    Remove,
}

/// A field name and a way to break it that the rules must refuse.
fn broken_field() -> impl Strategy<Value = (String, Break)> {
    let set = |field: &'static str, values: BoxedStrategy<Value>| {
        values.prop_map(move |v| (field.to_owned(), Break::Set(v)))
    };
    let site_id = prop_oneof![
        "[A-Za-z0-9]{0,2}".prop_map(Value::from),
        "[A-Za-z0-9]{21,40}".prop_map(Value::from),
        "[A-Za-z0-9]{1,9}[^A-Za-z0-9][A-Za-z0-9]{1,9}".prop_map(Value::from),
        not_a_string(),
    ]
    .boxed();
    let phase = prop_oneof![
        "(?s).{0,6}"
            .prop_filter("not a phase", |s| !["I", "II", "III", "IV"]
                .contains(&s.as_str()))
            .prop_map(Value::from),
        not_a_string(),
    ]
    .boxed();
    let status = prop_oneof![
        "(?s).{0,10}"
            .prop_filter("not a status", |s| {
                !["pending", "validated", "rejected"].contains(&s.as_str())
            })
            .prop_map(Value::from),
        not_a_string(),
    ]
    .boxed();
    let date = prop_oneof![
        (1_u32..=9999, 1_u32..=12, 32_u32..=99)
            .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        (1_u32..=9999, 13_u32..=99, 1_u32..=28)
            .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        (1_u32..=9999, 1_u32..=28).prop_map(|(y, d)| format!("{y:04}-00-{d:02}")),
        (1_u32..=9999)
            .prop_filter("not a leap year", |y| !is_calendar_day(*y, 2, 29))
            .prop_map(|y| format!("{y:04}-02-29")),
        real_date().prop_map(|d| d.replace('-', "/")),
        real_date().prop_map(|d| format!("{d}T00:00:00Z")),
        Just("0000-01-01".to_owned()),
        "(?s).{0,12}".prop_filter("not a date", |s| !is_real_date(s)),
    ]
    .prop_map(Value::from)
    .boxed();
    let date = prop_oneof![4 => date, 1 => not_a_string().boxed()].boxed();
    let count = prop_oneof![
        (i64::MIN..=0).prop_map(Value::from),
        (10_001_i64..=i64::MAX).prop_map(Value::from),
        ((i64::MAX.unsigned_abs() + 1)..=u64::MAX).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[0-9]{1,5}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
    .boxed();
    let notes = prop_oneof!["(?s).{501,600}".prop_map(Value::from), not_a_string()].boxed();
    let required = [
        "site_id",
        "trial_phase",
        "submission_date",
        "status",
        "patient_count",
    ];
    prop_oneof![
        set("site_id", site_id),
        set("trial_phase", phase),
        set("submission_date", date),
        set("status", status),
        set("patient_count", count),
        set("notes", notes),
        prop::sample::select(required.to_vec()).prop_map(|f| (f.to_owned(), Break::Remove)),
        ("[a-z_]{1,12}", any_json())
            .prop_filter("unknown name", |(name, _)| !FIELDS.contains(&name.as_str()))
            .prop_map(|(name, v)| (name, Break::Set(v))),
    ]
}

fn body_field(error: &FieldError) -> Option<&str> {
    match error.loc.as_slice() {
        [Value::String(body), Value::String(field)] if body == "body" => Some(field),
        _ => None,
    }
}

/// Proptest's default case count (256) unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The record decoder
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Raw bytes: a record or field errors, never a panic; a body that is not JSON is one
    /// `json_invalid` error at a byte offset inside the body; the same bytes, the same errors.
    #[test]
    fn record_decoder_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let first = record_from_slice(&bytes);
        if serde_json::from_slice::<Value>(&bytes).is_err() {
            let errors = first.as_ref().expect_err("not JSON");
            prop_assert_eq!(errors.len(), 1);
            prop_assert_eq!(&errors[0].kind, "json_invalid");
            let offset = errors[0].loc.get(1).and_then(Value::as_u64).expect("offset");
            prop_assert!(usize::try_from(offset).is_ok_and(|o| o <= bytes.len()));
        }
        prop_assert_eq!(&first, &record_from_slice(&bytes));
    }

    /// Any JSON value (and any record-shaped object): never a panic; every error is on a body
    /// field that is a record field or a key the object has, each field named at most once;
    /// an accepted value re-decodes from its own serialisation to the same record.
    #[test]
    fn record_decoder_takes_any_json(value in prop_oneof![any_json(), record_like_object()]) {
        match record_from_value(&value) {
            Ok(record) => {
                let text = serde_json::to_vec(&record).expect("serialise");
                prop_assert_eq!(record_from_slice(&text), Ok(record));
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                let Value::Object(object) = &value else {
                    prop_assert_eq!(errors.len(), 1);
                    prop_assert_eq!(&errors[0].kind, "model_attributes_type");
                    return Ok(());
                };
                let mut named = BTreeSet::new();
                for error in &errors {
                    let field = body_field(error).expect("a body field");
                    prop_assert!(FIELDS.contains(&field) || object.contains_key(field), "{}", field);
                    prop_assert!(named.insert(field.to_owned()), "{} named twice", field);
                }
                // Deterministic: the same value, byte-identical error output.
                let again = record_from_value(&value).expect_err("still invalid");
                prop_assert_eq!(
                    serde_json::to_string(&errors).expect("json"),
                    serde_json::to_string(&again).expect("json")
                );
            }
        }
    }

    /// A valid submission is accepted and every field keeps its value (site_id upper-cased,
    /// notes `""` when omitted); the stored form decodes again to the same record.
    #[test]
    fn valid_records_are_accepted_and_round_trip(case in valid_record()) {
        let text = serde_json::to_vec(&case.body).expect("json");
        let record = record_from_slice(&text).expect("valid");
        let stored = serde_json::to_value(&record).expect("serialise");
        prop_assert_eq!(&stored, &case.stored);
        let again = record_from_value(&stored).expect("the stored form is valid");
        prop_assert_eq!(again, record);
    }

    /// A valid submission with exactly one field broken gets exactly one error, at
    /// `["body", <that field>]`.
    #[test]
    fn one_broken_field_is_one_error_naming_it(case in valid_record(), (field, broken) in broken_field()) {
        let mut body = case.body;
        let object = body.as_object_mut().expect("object");
        match broken {
            Break::Set(value) => { object.insert(field.clone(), value); }
            Break::Remove => { object.remove(&field); }
        }
        let errors = record_from_value(&body).expect_err("broken");
        prop_assert_eq!(errors.len(), 1, "{:?}", errors);
        prop_assert_eq!(&errors[0].loc, &vec![json!("body"), json!(field)]);
    }

    /// The decoder agrees with the test's own statement of the date and site rules on any string.
    #[test]
    fn date_and_site_rules_match_their_statement(
        date in prop_oneof!["[0-9]{4}-[0-9]{2}-[0-9]{2}", "(?s).{0,12}", real_date()],
        site in prop_oneof!["[A-Za-z0-9]{2,21}", "(?s).{0,22}"],
    ) {
        let mut body = crate::support::valid_record();
        body["submission_date"] = Value::from(date.as_str());
        body["site_id"] = Value::from(site.as_str());
        let errors = record_from_value(&body).err().unwrap_or_default();
        let fields: Vec<&str> = errors.iter().filter_map(body_field).collect();
        let site_ok = (3..=20).contains(&site.len()) && site.bytes().all(|b| b.is_ascii_alphanumeric());
        prop_assert_eq!(!fields.contains(&"submission_date"), is_real_date(&date), "{:?}", date);
        prop_assert_eq!(!fields.contains(&"site_id"), site_ok, "{:?}", site);
    }
}

/// The calendar's edges, fixed: the oracle knows them (so it is no copy that shares a mistake with
/// the decoder) and the decoder agrees on each.
#[test]
fn leap_days_and_month_ends_are_judged_as_the_calendar_has_them() {
    // (date, a day of the calendar, what the case proves)
    for (date, real, proves) in [
        ("2024-02-29", true, "a leap year divisible by 4"),
        ("2023-02-29", false, "a common year has no 29 February"),
        ("1900-02-29", false, "a century is not a leap year"),
        ("2000-02-29", true, "unless divisible by 400"),
        ("2025-04-31", false, "April has 30 days"),
        ("2025-12-31", true, "December has 31"),
        ("0001-01-01", true, "the first day of year 1"),
        ("9999-12-31", true, "the last day of a 4-digit year"),
        ("0000-01-01", false, "there is no year 0 in the rule"),
    ] {
        assert_eq!(is_real_date(date), real, "the oracle: {proves} ({date})");
        let mut body = crate::support::valid_record();
        body["submission_date"] = Value::from(date);
        assert_eq!(
            record_from_value(&body).is_ok(),
            real,
            "the decoder: {proves} ({date})"
        );
    }
}

/// Nesting far beyond serde_json's recursion limit is a `json_invalid` error, not a stack
/// overflow, for every decoder that parses JSON.
#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    for open in [b'[', b'{'] {
        let body: Vec<u8> = if open == b'[' {
            std::iter::repeat_n(b'[', 100_000).collect()
        } else {
            b"{\"a\":".repeat(100_000)
        };
        let errors = record_from_slice(&body).expect_err("too deep");
        assert_eq!(errors[0].kind, "json_invalid");
        assert!(BatchMessage::from_slice(&body).is_err());
        assert!(Invocation::from_slice(&body).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// The batch message
// ---------------------------------------------------------------------------------------------

fn uuid() -> impl Strategy<Value = uuid::Uuid> {
    any::<u128>().prop_map(uuid::Uuid::from_u128)
}

/// Batch-shaped objects: a `batch_id` (a UUID or not), `records` (a list or not), maybe extras.
fn batch_like_object() -> impl Strategy<Value = Value> {
    let batch_id = prop_oneof![
        3 => uuid().prop_map(|u| Value::from(u.to_string())),
        1 => any_json(),
    ];
    let records = prop_oneof![
        3 => prop::collection::vec(prop_oneof![record_like_object(), any_json()], 0..5)
            .prop_map(Value::Array),
        1 => any_json(),
    ];
    (
        prop::option::of(batch_id),
        prop::option::of(records),
        prop::option::of(("[a-z_]{1,10}", any_json())),
    )
        .prop_map(|(batch_id, records, extra)| {
            let mut object = Map::new();
            if let Some(v) = batch_id {
                object.insert("batch_id".into(), v);
            }
            if let Some(v) = records {
                object.insert("records".into(), v);
            }
            if let Some((k, v)) = extra {
                object.insert(k, v);
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes and any JSON: a message or envelope errors, never a panic; every error is on a
    /// body field; the same input, the same errors.
    #[test]
    fn batch_decoder_takes_anything(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        value in prop_oneof![any_json(), batch_like_object()],
    ) {
        let _ = BatchMessage::from_slice(&bytes);
        let text = serde_json::to_vec(&value).expect("json");
        let first = BatchMessage::from_slice(&text);
        prop_assert_eq!(&first, &BatchMessage::from_slice(&text));
        if let Err(errors) = first {
            prop_assert!(!errors.is_empty());
            prop_assert!(errors.iter().all(|e| e.loc.first() == Some(&json!("body"))));
        }
    }

    /// An accepted message keeps its id and records, and the canonical text it is queued as
    /// decodes to the same message with the same content hash (the hash is what tells a
    /// redelivery from a different batch reusing the id).
    #[test]
    fn canonical_batch_messages_round_trip_with_their_hash(
        id in uuid(),
        records in prop::collection::vec(prop_oneof![record_like_object(), exact_json()], 1..6),
    ) {
        let records = Value::Array(records);
        // Floats may not survive a text round trip exactly; those messages prove nothing here.
        prop_assume!(serde_json::from_str::<Value>(&records.to_string()).is_ok_and(|v| v == records));
        let Value::Array(records) = records else { unreachable!() };
        let text = json!({"batch_id": id.to_string(), "records": records}).to_string();
        let message = BatchMessage::from_slice(text.as_bytes()).expect("valid envelope");
        prop_assert_eq!(message.batch_id.as_uuid(), id);
        prop_assert_eq!(&message.records, &records);
        let queued = BatchMessage::from_slice(message.to_json().as_bytes()).expect("re-decodes");
        prop_assert_eq!(queued, message);
    }
}

/// Found by this suite and fixed: a POST /batches body that is valid but not in canonical form
/// (`records` before `batch_id`, or the id in upper case / without hyphens / in braces) was
/// registered under the hash of its own text, while the queue carries `to_json()`: the queue
/// trigger then saw a "different batch reusing the id" (poison queue). The hash is now taken over
/// the canonical form.
#[test]
fn any_accepted_batch_keeps_its_hash_when_queued() {
    let id = "6c1f3e1e-7d0a-4a55-9f6e-0d1b2c3d4e5f";
    let records = json!([crate::support::valid_record()]);
    let spellings = [
        format!(r#"{{"batch_id":"{id}","records":{records}}}"#),
        format!(r#"{{"records":{records},"batch_id":"{id}"}}"#),
        format!(
            r#"{{"batch_id":"{}","records":{records}}}"#,
            id.to_uppercase()
        ),
        format!(
            r#"{{"batch_id":"{}","records":{records}}}"#,
            id.replace('-', "")
        ),
    ];
    for text in spellings {
        let message = BatchMessage::from_slice(text.as_bytes()).expect("valid");
        let queued = BatchMessage::from_slice(message.to_json().as_bytes()).expect("valid");
        assert_eq!(queued.content_sha256, message.content_sha256, "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// The Functions invocation envelope
// ---------------------------------------------------------------------------------------------

/// The shapes in which the host may send a value: as is, JSON-encoded once or twice.
fn encodings(value: &Value) -> Vec<Value> {
    let once = Value::from(value.to_string());
    let twice = Value::from(once.to_string());
    vec![value.clone(), once, twice]
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes, and any values in the places the handler reads: never a panic.
    #[test]
    fn envelope_decoder_takes_anything(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        batch in any_json(), req in any_json(), count in any_json(), id in any_json(),
        encode_whole in any::<bool>(),
    ) {
        if let Ok(invocation) = Invocation::from_slice(&bytes) {
            let _ = (invocation.queue_message_text("batch"), invocation.http_request("req"));
            let _ = (invocation.dequeue_count(), invocation.message_id());
        }
        let envelope = json!({"Data": {"batch": batch, "req": req},
                              "Metadata": {"DequeueCount": count, "Id": id}});
        let envelope = if encode_whole { Value::from(envelope.to_string()) } else { envelope };
        let invocation = Invocation::from_slice(envelope.to_string().as_bytes()).expect("an object");
        let _ = (invocation.queue_message_text("batch"), invocation.http_request("req"));
        let _ = (invocation.dequeue_count(), invocation.message_id());
    }

    /// A queue message in any shape the host sends (object, JSON text once or twice encoded,
    /// base64 of the text) decodes to the same JSON (envelope, then the one message decoder).
    #[test]
    fn queue_messages_decode_from_every_host_shape(message in batch_like_object(), pick in 0_usize..4) {
        let text = message.to_string();
        // Floats may not survive a text round trip exactly; those messages prove nothing here.
        prop_assume!(serde_json::from_str::<Value>(&text).is_ok_and(|v| v == message));
        let mut shapes = encodings(&message);
        shapes.push(Value::from(base64::engine::general_purpose::STANDARD.encode(&text)));
        let body = json!({"Data": {"batch": shapes[pick]}, "Metadata": {}}).to_string();
        let text = Invocation::from_slice(body.as_bytes())
            .expect("envelope")
            .queue_message_text("batch")
            .expect("a message");
        let bytes = handler::service::batches::message_json(&text, true).expect("JSON or base64");
        let decoded: Value = serde_json::from_slice(&bytes).expect("JSON");
        prop_assert_eq!(decoded, message);
    }

    /// `DequeueCount` as a number or a (possibly encoded, padded) string reads as that number
    /// (saturated at `u32::MAX`).
    #[test]
    fn dequeue_count_reads_every_spelling(n in any::<u64>(), pick in 0_usize..5) {
        let spelling = [
            json!(n), json!(n.to_string()), json!(format!(" {n} ")),
            json!(json!(n.to_string()).to_string()), json!(json!(n).to_string()),
        ][pick].clone();
        let body = json!({"Data": {}, "Metadata": {"DequeueCount": spelling}}).to_string();
        let invocation = Invocation::from_slice(body.as_bytes()).expect("envelope");
        prop_assert_eq!(invocation.dequeue_count(), Some(u32::try_from(n).unwrap_or(u32::MAX)));
    }

    /// An HTTP request's body text arrives unchanged; every header with a valid name and value
    /// arrives, invalid ones are dropped silently.
    #[test]
    fn http_requests_keep_body_and_valid_headers(
        body in "(?s).{0,200}",
        headers in prop::collection::btree_map("[a-z0-9!#$%&'*+.^_`|~ -]{0,12}", prop::collection::vec("(?s).{0,16}", 0..3), 0..5),
    ) {
        let request = json!({"Method": "POST", "Body": body, "Headers": headers});
        let envelope = json!({"Data": {"req": request}, "Metadata": {}}).to_string();
        let decoded = Invocation::from_slice(envelope.as_bytes())
            .expect("envelope")
            .http_request("req")
            .expect("request");
        prop_assert_eq!(&decoded.body[..], body.as_bytes());
        for (name, values) in &headers {
            let Ok(header) = axum::http::HeaderName::from_bytes(name.as_bytes()) else { continue };
            let valid: Vec<&[u8]> = values
                .iter()
                .filter(|v| axum::http::HeaderValue::from_str(v).is_ok())
                .map(String::as_bytes)
                .collect();
            let got: Vec<&[u8]> = decoded.headers.get_all(&header).iter().map(axum::http::HeaderValue::as_bytes).collect();
            prop_assert_eq!(got, valid);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Headers: X-API-Key and Idempotency-Key
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Every listed key of an old-format file (whitespace around it ignored) is accepted as the
    /// legacy client; any other bytes are refused. (A key file starting with `{` is a client
    /// table, so the first key does not start with one.)
    #[test]
    fn api_keys_accept_exactly_the_listed_keys(
        first in "[!-z|-~][!-~]{0,39}",
        keys in prop::collection::vec(("[ \t]{0,2}", "[!-~]{1,40}", "[ \t]{0,2}"), 0..3),
        presented in prop_oneof![prop::collection::vec(any::<u8>(), 0..48), "[!-~]{1,40}".prop_map(String::into_bytes)],
        crlf in any::<bool>(),
    ) {
        let separator = if crlf { "\r\n" } else { "\n" };
        let mut keys = keys;
        keys.insert(0, (String::new(), first, String::new()));
        let content: Vec<String> = keys.iter().map(|(a, k, b)| format!("{a}{k}{b}")).collect();
        let clients = Clients::from_content(&content.join(separator), None).expect("old format");
        let verify = |presented: &[u8]| {
            clients
                .authenticate(Some(presented))
                .map(|caller| caller.principal.client.to_string())
        };
        for (_, key, _) in &keys {
            prop_assert_eq!(verify(key.as_bytes()), Some("legacy".to_owned()));
        }
        let listed = keys.iter().any(|(_, k, _)| k.as_bytes() == presented.as_slice());
        prop_assert_eq!(verify(&presented).is_some(), listed);
    }

    /// `Idempotency-Key`: accepted iff 1-255 visible ASCII bytes, and then unchanged; refused
    /// with one 422 error on the header otherwise.
    #[test]
    fn idempotency_keys_are_visible_ascii_of_1_to_255(
        raw in prop_oneof![prop::collection::vec(any::<u8>(), 0..300), "[!-~]{0,260}".prop_map(String::into_bytes)],
    ) {
        let expected = (1..=255).contains(&raw.len()) && raw.iter().all(|b| (0x21..=0x7e).contains(b));
        match check_idempotency_key(&raw) {
            Ok(key) => {
                prop_assert!(expected);
                prop_assert_eq!(key.as_bytes(), raw.as_slice());
            }
            Err(ServiceError::Invalid(errors)) => {
                prop_assert!(!expected);
                prop_assert_eq!(errors.len(), 1);
                prop_assert_eq!(&errors[0].loc, &vec![json!("header"), json!("idempotency-key")]);
            }
            Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Over HTTP: random requests to the running binary
// ---------------------------------------------------------------------------------------------

/// One random request to a data route.
#[derive(Debug, Clone)]
struct RandomRequest {
    path: &'static str,
    body: Vec<u8>,
    content_type: Option<String>,
    idempotency_key: Option<Vec<u8>>,
    right_key: bool,
}

fn random_request() -> impl Strategy<Value = RandomRequest> {
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        any_json().prop_map(|v| v.to_string().into_bytes()),
        record_like_object().prop_map(|v| v.to_string().into_bytes()),
        valid_record().prop_map(|c| c.body.to_string().into_bytes()),
        (valid_record(), broken_field()).prop_map(|(c, (field, broken))| {
            let mut body = c.body;
            if let (Some(object), Break::Set(v)) = (body.as_object_mut(), broken) {
                object.insert(field, v);
            }
            body.to_string().into_bytes()
        }),
        batch_like_object().prop_map(|v| v.to_string().into_bytes()),
    ];
    let content_type = prop::option::of(prop_oneof![
        3 => Just("application/json".to_owned()),
        1 => Just("application/problem+json; charset=utf-8".to_owned()),
        1 => Just("text/plain".to_owned()),
        1 => "[ -~]{0,30}",
    ]);
    let idempotency_key = prop::option::of(prop_oneof![
        // A small pool, so replays and conflicts happen.
        2 => "key-[0-3]".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]);
    (
        prop::sample::select(vec!["/records", "/batches"]),
        body,
        content_type,
        idempotency_key,
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(path, body, content_type, idempotency_key, right_key)| RandomRequest {
                path,
                body,
                content_type,
                idempotency_key,
                right_key,
            },
        )
}

/// Random bodies and headers POSTed to the running binary (auth on) never get a 5xx: only the
/// documented statuses, each with a `{"detail": ...}` body; a 422 from POST /records is exactly
/// what the library's decoder says for those bytes (the server's errors are deterministic too).
#[test]
fn random_requests_never_get_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("api-keys");
    std::fs::write(&key_file, "prop-key\n").expect("write keys");
    let app = runtime.block_on(App::start(
        AppOptions::default().env("MEDIFLOW_API_KEYS_FILE", key_file.display().to_string()),
    ));
    let client = reqwest::Client::new();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let sent = std::cell::Cell::new(0_u32);
    let result = runner.run(&random_request(), |request| {
        sent.set(sent.get() + 1);
        let mut builder = client
            .post(app.url(request.path))
            .body(request.body.clone());
        if request.right_key {
            builder = builder.header("x-api-key", "prop-key");
        }
        let content_type = request
            .content_type
            .as_deref()
            .filter(|v| reqwest::header::HeaderValue::from_str(v).is_ok());
        if let Some(value) = content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, value);
        }
        if let Some(value) = request
            .idempotency_key
            .as_deref()
            .and_then(|v| reqwest::header::HeaderValue::from_bytes(v).ok())
        {
            builder = builder.header("idempotency-key", value);
        }
        let (status, body) = runtime.block_on(async {
            let response = builder.send().await.expect("the server answers");
            let status = response.status().as_u16();
            (status, response.bytes().await.expect("a body"))
        });
        let allowed: &[u16] = if request.path == "/records" {
            &[201, 401, 409, 413, 415, 422]
        } else {
            &[202, 401, 409, 413, 415, 422]
        };
        if !allowed.contains(&status) {
            return Err(TestCaseError::fail(format!(
                "{} answered {status}: {}",
                request.path,
                String::from_utf8_lossy(&body)
            )));
        }
        let json: Value = serde_json::from_slice(&body)
            .map_err(|e| TestCaseError::fail(format!("{status} body is not JSON: {e}")))?;
        if status >= 400 && json.get("detail").is_none() {
            return Err(TestCaseError::fail(format!(
                "{status} without detail: {json}"
            )));
        }
        let plain_record_post = request.path == "/records"
            && request.right_key
            && request.idempotency_key.is_none()
            && content_type.is_none_or(handler::api::extract::is_json_content_type);
        if status == 422 && plain_record_post {
            let expected =
                json!({ "detail": record_from_slice(&request.body).expect_err("refused") });
            prop_assert_eq!(&json, &expected);
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}\nlogs:\n{}", app.logs().join("\n"));
    }
    let logs = app.logs().join("\n");
    assert!(
        !logs.contains("\"level\":\"ERROR\"") && !logs.contains("panicked"),
        "the server logged an error:\n{logs}"
    );
    assert!(sent.get() >= cases, "{} requests sent", sent.get());
}

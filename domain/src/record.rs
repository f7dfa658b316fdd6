//! A clinical-trial record: newtypes that cannot hold an invalid value ("parse, don't validate").
//!
//! Each field type has a private inner value and one constructor that enforces the rule. The
//! rules are the previous service's contract made strict (README.md "The API"; the served
//! `/openapi.json` states each rule per field).

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use validator::{ValidateLength, ValidateRange};

/// Why a field value was refused; [`crate::decode`] turns it into a client error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    TooShort,
    TooLong,
    NotAlphanumeric,
    NotOneOf,
    NotADate,
    TooSmall,
    TooLarge,
}

/// The trial site: ASCII `[A-Za-z0-9]{3,20}`, stored upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteId(String);

impl SiteId {
    pub const MIN_LEN: u64 = 3;
    pub const MAX_LEN: u64 = 20;

    pub fn parse(raw: &str) -> Result<Self, Violation> {
        // Length is checked in characters first (a non-ASCII string reports its real length).
        if !raw.validate_length(Some(Self::MIN_LEN), None, None) {
            return Err(Violation::TooShort);
        }
        if !raw.validate_length(None, Some(Self::MAX_LEN), None) {
            return Err(Violation::TooLong);
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Violation::NotAlphanumeric);
        }
        // ASCII upper-casing never changes the length, unlike Unicode upper-casing.
        Ok(Self(raw.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The trial phase, exactly `I`, `II`, `III` or `IV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrialPhase {
    I,
    II,
    III,
    IV,
}

impl TrialPhase {
    pub const ALL: [(&'static str, Self); 4] = [
        ("I", Self::I),
        ("II", Self::II),
        ("III", Self::III),
        ("IV", Self::IV),
    ];

    pub fn parse(raw: &str) -> Result<Self, Violation> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == raw)
            .map(|(_, phase)| *phase)
            .ok_or(Violation::NotOneOf)
    }
}

/// The submission's review status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Validated,
    Rejected,
}

impl Status {
    pub const ALL: [(&'static str, Self); 3] = [
        ("pending", Self::Pending),
        ("validated", Self::Validated),
        ("rejected", Self::Rejected),
    ];

    pub fn parse(raw: &str) -> Result<Self, Violation> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == raw)
            .map(|(_, status)| *status)
            .ok_or(Violation::NotOneOf)
    }
}

/// A real calendar date written `YYYY-MM-DD` (years 0001 to 9999; no time, no offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubmissionDate(String);

impl SubmissionDate {
    pub fn parse(raw: &str) -> Result<Self, Violation> {
        let bytes = raw.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            bytes[range].iter().try_fold(0_u32, |acc, b| {
                b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
            })
        };
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(Violation::NotADate);
        }
        let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10))
        else {
            return Err(Violation::NotADate);
        };
        if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(Violation::NotADate);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Number of patients in the submission, 1 to 10 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct PatientCount(u16);

impl PatientCount {
    pub const MIN: i64 = 1;
    pub const MAX: i64 = 10_000;

    pub fn parse(raw: i64) -> Result<Self, Violation> {
        if !raw.validate_range(Some(Self::MIN), None, None, None) {
            return Err(Violation::TooSmall);
        }
        if !raw.validate_range(None, Some(Self::MAX), None, None) {
            return Err(Violation::TooLarge);
        }
        Ok(Self(u16::try_from(raw).map_err(|_| Violation::TooLarge)?))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// Free-text notes, at most 500 characters (not bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Notes(String);

impl Notes {
    pub const MAX_CHARS: u64 = 500;

    pub fn parse(raw: &str) -> Result<Self, Violation> {
        if raw.validate_length(None, Some(Self::MAX_CHARS), None) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Violation::TooLong)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_conversions {
    ($($ty:ident),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw).map_err(|v| format!("invalid {}: {v:?}", stringify!($ty)))
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> Self {
                value.0
            }
        }
    )*};
}
string_conversions!(SiteId, SubmissionDate, Notes);

impl TryFrom<i64> for PatientCount {
    type Error = String;
    fn try_from(raw: i64) -> Result<Self, Self::Error> {
        Self::parse(raw).map_err(|v| format!("invalid PatientCount: {v:?}"))
    }
}

impl From<PatientCount> for i64 {
    fn from(value: PatientCount) -> Self {
        i64::from(value.0)
    }
}

/// A valid submission, before it has an id. Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRecord {
    pub site_id: SiteId,
    pub trial_phase: TrialPhase,
    pub submission_date: SubmissionDate,
    pub status: Status,
    pub patient_count: PatientCount,
    pub notes: Notes,
}

/// A record's id: a UUID v4 for a plain POST (time-prefixed, see [`RecordId::random`]), derived
/// (v5) for idempotent writes and (v8) for batch items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(Uuid);

impl RecordId {
    /// Namespace of ids derived from an `Idempotency-Key` (a fixed, random UUID of this project).
    const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_1b2a_8c3e_4f0b_9a57_2e4c_1d7b_3a01);

    /// A new id for a plain POST: a UUID in the v4 format the contract names (version 4, RFC
    /// variant), whose first 48 bits are the creation time in Unix milliseconds and whose other
    /// 74 bits are random. Ids made one after another are ordered by time, so the embedded store
    /// appends them at the B-tree's right edge instead of rewriting a random leaf per record
    /// (issue 25, BENCHMARKS.md); 74 random bits keep ids of one millisecond apart.
    pub fn random() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut bytes = *Uuid::new_v4().as_bytes();
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[10..]);
        Self(Uuid::from_bytes(bytes))
    }

    /// The id a POST with this `Idempotency-Key` always gets.
    pub fn for_idempotency_key(key: &str) -> Self {
        Self(Uuid::new_v5(&Self::IDEMPOTENCY_NAMESPACE, key.as_bytes()))
    }

    /// The ids of the records of batch `batch`, by index: the same on every redelivery or
    /// resubmission (the batch's hash is taken once, here, for all of them).
    ///
    /// A UUID v8 (custom): the first 8 bytes come from a v5 hash of the batch id, the last 8 are
    /// the index. Records of one batch get neighbouring keys, so the embedded store writes a batch
    /// into a few B-tree pages instead of hundreds (7x faster commits measured, BENCHMARKS.md);
    /// 60 bits of batch prefix keep batches apart.
    pub fn batch_items(batch: Uuid) -> impl Fn(usize) -> Self {
        let prefix = Uuid::new_v5(&batch, b"mediflow-batch-records");
        move |index| {
            let mut bytes = [0_u8; 16];
            bytes[..8].copy_from_slice(&prefix.as_bytes()[..8]);
            bytes[8..].copy_from_slice(&(index as u64).to_be_bytes());
            Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
        }
    }

    /// Parses a path segment; anything that is not a UUID cannot name a record.
    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::try_parse(raw).ok().map(Self)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// A stored id read back (from an index key or a continuation token).
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A stored record: the submission plus its id, serialised in the contract's key order
/// `site_id, trial_phase, submission_date, status, patient_count, notes, id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub fields: NewRecord,
    pub id: RecordId,
}

impl Record {
    pub fn new(id: RecordId, fields: NewRecord) -> Self {
        Self { fields, id }
    }
}

#[cfg(test)]
mod tests {
    use super::RecordId;
    use uuid::Uuid;

    #[test]
    fn batch_item_ids_are_deterministic_distinct_and_clustered_per_batch() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            RecordId::batch_items(a)(7),
            RecordId::batch_items(a)(7),
            "same on redelivery"
        );
        assert_ne!(
            RecordId::batch_items(a)(7),
            RecordId::batch_items(b)(7),
            "batches differ"
        );
        let ids: Vec<u128> = (0..500)
            .map(|i| RecordId::batch_items(a)(i).as_uuid().as_u128())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one batch's keys are ordered by index"
        );
        assert!(
            ids.iter().all(|k| k >> 64 == ids[0] >> 64),
            "and share one 64-bit prefix"
        );
        assert_eq!(RecordId::batch_items(a)(0).as_uuid().get_version_num(), 8);
        assert_eq!(
            RecordId::random().as_uuid().get_version_num(),
            4,
            "plain POSTs keep v4 ids (the contract)"
        );
    }

    #[test]
    fn plain_ids_are_v4_and_ordered_by_creation_time() {
        let first = RecordId::random().as_uuid();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later: Vec<Uuid> = (0..1000).map(|_| RecordId::random().as_uuid()).collect();
        for id in std::iter::once(&first).chain(&later) {
            assert_eq!(id.get_version_num(), 4, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        assert!(
            later.iter().all(|id| id.as_u128() > first.as_u128()),
            "an id made a millisecond later sorts after"
        );
        let millis = |id: &Uuid| id.as_u128() >> 80;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        assert!(
            now - millis(&later[999]) < 60_000,
            "the prefix is the creation time in ms"
        );
        let distinct: std::collections::HashSet<_> = later.iter().collect();
        assert_eq!(distinct.len(), later.len(), "ids of one millisecond differ");
    }
}

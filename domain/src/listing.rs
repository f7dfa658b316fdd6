//! Listing a site's records: the query (`site_id`, date range, page size, where the last page
//! ended), read from a query's decoded parameters into values that cannot be wrong, and the continuation
//! token that carries a page's end to the next request.
//!
//! Order: newest `submission_date` first, then record id descending, so every record has exactly
//! one place and a page boundary is a single `(date, id)` key (keyset paging: a page costs the same
//! however deep it is, and records stored while a client pages never shift what it has seen).
//!
//! The token is opaque to clients: `base64url(version | date | id | tag)` where `tag` is a
//! truncated HMAC-SHA256 over the cursor *and the query it belongs to* (site and date range). Any
//! edit, or reuse with another site or range, fails the tag check and is a 422. The tag key is a
//! constant: the token grants nothing the caller could not ask for directly, the tag only makes
//! every tampered or mismatched token a clear error instead of a silently different page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::errors::FieldError;
use super::record::{Record, RecordId, SiteId, SubmissionDate};

/// One page of `GET /records?site_id=...`: `{"records": [...], "continuation": "<token>" | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPage {
    /// Newest `submission_date` first, then id descending.
    pub records: Vec<Record>,
    /// Pass as `continuation` (with the same `site_id`, `from` and `to`) for the next page;
    /// `null` on the last page.
    pub continuation: Option<String>,
}

/// Where a page ended: the last record's date and id. The next page starts strictly after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub date: SubmissionDate,
    pub id: RecordId,
}

/// A validated `GET /records` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub site: SiteId,
    /// Earliest `submission_date` included.
    pub from: Option<SubmissionDate>,
    /// Latest `submission_date` included.
    pub to: Option<SubmissionDate>,
    /// Records per page, 1..=[`ListQuery::MAX_LIMIT`].
    pub limit: usize,
    /// Continue after this record (from the previous page's token).
    pub after: Option<Cursor>,
}

const TOKEN_VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const TOKEN_LEN: usize = 1 + 10 + 16 + TAG_LEN;
/// Not a secret (see the module doc): it makes the tag specific to this use.
const TAG_KEY: &[u8] = b"mediflow list_records continuation v1";

impl ListQuery {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;
    /// Query parameters accepted; any other is refused by name.
    pub const PARAMETERS: [&'static str; 5] = ["site_id", "from", "to", "limit", "continuation"];

    /// Reads the query's parameters, decoded (`site_id=SITE001&from=2025-01-01&limit=50` as
    /// name/value pairs, in order). Every problem is reported, each as a field error at
    /// `["query", <name>]`.
    #[expect(
        clippy::too_many_lines,
        reason = "one block per parameter, in order; splitting hides the rules"
    )]
    pub fn from_params(params: &[(String, String)]) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut seen: [Option<String>; 5] = Default::default();
        for (name, value) in params {
            match Self::PARAMETERS.iter().position(|p| p == name) {
                Some(slot) if seen[slot].is_some() => errors.push(query_error(
                    name,
                    "duplicate_parameter",
                    "Parameter given more than once",
                    Value::from(value.as_str()),
                )),
                Some(slot) => seen[slot] = Some(value.clone()),
                None => errors.push(query_error(
                    name,
                    "extra_forbidden",
                    "Extra inputs are not permitted",
                    Value::from(value.as_str()),
                )),
            }
        }
        let [site, from, to, limit, continuation] = seen;
        let site = match site {
            None => {
                errors.push(query_error(
                    "site_id",
                    "missing",
                    "Field required",
                    Value::Null,
                ));
                None
            }
            Some(raw) => SiteId::parse(&raw).ok().or_else(|| {
                errors.push(
                    query_error(
                        "site_id",
                        "string_pattern_mismatch",
                        "String should match pattern '^[A-Za-z0-9]{3,20}$'",
                        Value::from(raw),
                    )
                    .with_ctx(json!({ "pattern": "^[A-Za-z0-9]{3,20}$" })),
                );
                None
            }),
        };
        let mut date = |name: &str, raw: Option<String>| {
            raw.and_then(|raw| {
                SubmissionDate::parse(&raw).ok().or_else(|| {
                    errors.push(query_error(
                        name,
                        "date_from_datetime_parsing",
                        "Input should be a valid date in the format YYYY-MM-DD",
                        Value::from(raw),
                    ));
                    None
                })
            })
        };
        let from = date("from", from);
        let to = date("to", to);
        let limit = match limit {
            None => Some(Self::DEFAULT_LIMIT),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=Self::MAX_LIMIT).contains(&n) => Some(n),
                _ => {
                    errors.push(
                        query_error(
                            "limit",
                            "limit_out_of_range",
                            format!(
                                "Input should be a whole number from 1 to {}",
                                Self::MAX_LIMIT
                            ),
                            Value::from(raw),
                        )
                        .with_ctx(json!({ "ge": 1, "le": Self::MAX_LIMIT })),
                    );
                    None
                }
            },
        };
        if let (Some(from), Some(to)) = (&from, &to)
            && from.as_str() > to.as_str()
        {
            errors.push(query_error(
                "from",
                "date_range_empty",
                "`from` must not be later than `to`",
                Value::from(from.as_str()),
            ));
        }
        let (Some(site), Some(limit)) = (site, limit) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut query = Self {
            site,
            from,
            to,
            limit,
            after: None,
        };
        if let Some(token) = continuation {
            query.after = Some(query.decode_token(&token).ok_or_else(|| {
                vec![query_error(
                    "continuation",
                    "continuation_invalid",
                    "Invalid continuation token: pass back the token of the previous page unchanged, \
                     with the same site_id, from and to",
                    Value::from(token),
                )]
            })?);
        }
        Ok(query)
    }

    /// The token that continues this query after `cursor`.
    pub fn token(&self, cursor: &Cursor) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_LEN);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(cursor.date.as_str().as_bytes());
        bytes.extend_from_slice(cursor.id.as_uuid().as_bytes());
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode_token(&self, token: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != TOKEN_LEN || bytes[0] != TOKEN_VERSION {
            return None;
        }
        let (body, tag) = bytes.split_at(TOKEN_LEN - TAG_LEN);
        self.mac(body).verify_truncated_left(tag).ok()?;
        let date = SubmissionDate::parse(std::str::from_utf8(&body[1..11]).ok()?).ok()?;
        let id = RecordId::from_uuid(uuid::Uuid::from_slice(&body[11..27]).ok()?);
        Some(Cursor { date, id })
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(TAG_KEY).expect("HMAC takes a key of any length");
        // The query the token belongs to, with separators no part can contain.
        for part in [
            self.site.as_str(),
            self.from.as_ref().map_or("", SubmissionDate::as_str),
            self.to.as_ref().map_or("", SubmissionDate::as_str),
        ] {
            mac.update(part.as_bytes());
            mac.update(b"|");
        }
        mac.update(body);
        mac
    }

    fn tag(&self, body: &[u8]) -> Vec<u8> {
        self.mac(body).finalize().into_bytes().to_vec()
    }
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "every caller builds the value in place; the error echoes a bounded copy of it"
)]
fn query_error(name: &str, kind: &'static str, msg: impl Into<String>, input: Value) -> FieldError {
    let mut error = FieldError::body(name, kind, msg, &input);
    error.loc[0] = Value::from("query");
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query string decoded as the API decodes it (`application/x-www-form-urlencoded`).
    fn parse(raw: &str) -> Result<ListQuery, Vec<FieldError>> {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect();
        ListQuery::from_params(&params)
    }

    fn kinds(raw: &str) -> Vec<(String, String)> {
        parse(raw)
            .expect_err("refused")
            .into_iter()
            .map(|e| {
                (
                    e.loc[1].as_str().unwrap_or("").to_owned(),
                    e.kind.into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_full_query_parses_with_defaults_where_omitted() {
        let q = parse("site_id=site001").expect("valid");
        assert_eq!(
            q.site.as_str(),
            "SITE001",
            "upper-cased like stored records"
        );
        assert_eq!(q.limit, ListQuery::DEFAULT_LIMIT);
        assert_eq!((q.from, q.to, q.after), (None, None, None));
        let q = parse("site_id=SITE001&from=2025-01-01&to=2025-12-31&limit=1000").expect("valid");
        assert_eq!(q.limit, 1000);
        assert_eq!(q.from.expect("from").as_str(), "2025-01-01");
    }

    #[test]
    fn every_bad_parameter_is_reported_by_name() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[("site_id", "missing")]),
            ("site_id=ab", &[("site_id", "string_pattern_mismatch")]),
            (
                "site_id=SITE001&limit=0",
                &[("limit", "limit_out_of_range")],
            ),
            (
                "site_id=SITE001&limit=1001",
                &[("limit", "limit_out_of_range")],
            ),
            (
                "site_id=SITE001&limit=-1",
                &[("limit", "limit_out_of_range")],
            ),
            (
                "site_id=SITE001&limit=ten",
                &[("limit", "limit_out_of_range")],
            ),
            (
                "site_id=SITE001&from=2025-02-30",
                &[("from", "date_from_datetime_parsing")],
            ),
            (
                "site_id=SITE001&to=yesterday",
                &[("to", "date_from_datetime_parsing")],
            ),
            (
                "site_id=SITE001&from=2025-02-01&to=2025-01-01",
                &[("from", "date_range_empty")],
            ),
            ("site_id=SITE001&page=2", &[("page", "extra_forbidden")]),
            (
                "site_id=A&site_id=SITE001",
                &[
                    ("site_id", "duplicate_parameter"),
                    ("site_id", "string_pattern_mismatch"),
                ],
            ),
            (
                "limit=5000&from=x",
                &[
                    ("site_id", "missing"),
                    ("from", "date_from_datetime_parsing"),
                    ("limit", "limit_out_of_range"),
                ],
            ),
            (
                "site_id=SITE001&continuation=abc",
                &[("continuation", "continuation_invalid")],
            ),
        ];
        for (raw, expected) in cases {
            let mut got = kinds(raw);
            let mut expected: Vec<(String, String)> = expected
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect();
            got.sort();
            expected.sort();
            assert_eq!(got, expected, "{raw}");
        }
    }

    #[test]
    fn a_token_round_trips_and_any_change_to_it_or_its_query_is_refused() {
        let q = parse("site_id=SITE001&from=2025-01-01").expect("valid");
        let cursor = Cursor {
            date: SubmissionDate::parse("2025-03-15").expect("date"),
            id: RecordId::random(),
        };
        let token = q.token(&cursor);
        let back = parse(&format!(
            "site_id=SITE001&from=2025-01-01&continuation={token}"
        ))
        .expect("own token accepted");
        assert_eq!(back.after, Some(cursor));
        // Flip each character in turn: every edit is refused.
        for i in 0..token.len() {
            let mut chars: Vec<char> = token.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let edited: String = chars.into_iter().collect();
            assert!(
                parse(&format!(
                    "site_id=SITE001&from=2025-01-01&continuation={edited}"
                ))
                .is_err(),
                "edit at {i} accepted"
            );
        }
        for other in [
            "site_id=SITE002&from=2025-01-01",
            "site_id=SITE001",
            "site_id=SITE001&from=2025-01-01&to=2025-12-31",
        ] {
            assert!(
                parse(&format!("{other}&continuation={token}")).is_err(),
                "token reused with {other}"
            );
        }
        assert!(
            parse(&format!(
                "site_id=SITE001&from=2025-01-01&continuation={token}&limit=7"
            ))
            .is_ok(),
            "the page size may change"
        );
    }
}

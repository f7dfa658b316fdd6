//! The key file's content, parsed: a client table (JSON, content starting with `{`) or the old
//! format (one raw key per line, the one client `legacy`). What the format is is in
//! docs/operations-contract.md; every rule is checked here, and every problem is reported naming
//! the client (by index and id) and the field, never a value the file holds.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::rate::{Bucket, Rate};
use crate::domain::identity::{ClientId, Principal, Role, Roles, Sites};
use crate::domain::record::SiteId;

/// At most this many problems are listed (the rest are counted).
const MAX_PROBLEMS: usize = 10;

/// Digests a table client may hold: one, or two during a rotation.
pub const MAX_DIGESTS: usize = 2;

/// Which format the key file is in (or that there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No key file: auth is off.
    Off,
    /// One raw key per line: the one client `legacy`.
    Legacy,
    /// A client table.
    Table,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Legacy => "legacy",
            Self::Table => "table",
        }
    }
}

/// One caller the table knows: who it is, the digests of its keys, its request bucket.
#[derive(Debug)]
pub struct Entry {
    pub principal: Arc<Principal>,
    pub digests: Vec<[u8; 32]>,
    pub bucket: Arc<Bucket>,
}

/// The callers in force.
#[derive(Debug)]
pub struct Table {
    pub format: Format,
    /// Off: the one anonymous entry (no digests). Legacy: the one legacy entry. Table: one entry
    /// per client, in file order.
    pub entries: Vec<Entry>,
}

/// Why a key file's content was refused: every problem found (at most [`MAX_PROBLEMS`] listed),
/// each naming the client and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client table: {}", .0.join("; "))]
pub struct TableError(pub Vec<String>);

impl Table {
    /// Auth off: every caller is [`Principal::anonymous`] (no per-client limit).
    pub fn off() -> Self {
        Self {
            format: Format::Off,
            entries: vec![Entry {
                principal: Arc::new(Principal::anonymous()),
                digests: Vec::new(),
                bucket: Arc::new(Bucket::new(None)),
            }],
        }
    }

    /// Parses key file content: a table when it starts (trimmed) with `{`, the old format
    /// otherwise. `default_rate` applies to table clients without their own `rate`; the legacy
    /// client (every old-format caller at once) has no per-client limit.
    pub fn parse(content: &str, default_rate: Option<Rate>) -> Result<Self, TableError> {
        if content.trim_start().starts_with('{') {
            Ok(Self {
                format: Format::Table,
                entries: parse_table(content, default_rate)?,
            })
        } else {
            Ok(Self {
                format: Format::Legacy,
                entries: vec![Entry {
                    principal: Arc::new(Principal::legacy()),
                    digests: legacy_digests(content),
                    bucket: Arc::new(Bucket::new(None)),
                }],
            })
        }
    }

    /// The number of keys (digests) accepted.
    pub fn key_count(&self) -> usize {
        self.entries.iter().map(|e| e.digests.len()).sum()
    }
}

/// The old format: one key per line, surrounding whitespace ignored, blank lines skipped.
fn legacy_digests(content: &str) -> Vec<[u8; 32]> {
    content
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|key| Sha256::digest(key.as_bytes()).into())
        .collect()
}

/// Problems found so far, and a way to name where each one is.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn finish(mut self) -> Result<(), TableError> {
        if self.0.is_empty() {
            return Ok(());
        }
        if self.0.len() > MAX_PROBLEMS {
            let more = self.0.len() - MAX_PROBLEMS;
            self.0.truncate(MAX_PROBLEMS);
            self.0.push(format!("and {more} more problem(s)"));
        }
        Err(TableError(self.0))
    }
}

/// A field name from the file, shown only when it looks like one (so a value pasted where a
/// name goes is never echoed).
fn shown_name(name: &str) -> String {
    let plain = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("`{name}`")
    } else {
        "(a name that is not shown)".to_owned()
    }
}

fn parse_table(content: &str, default_rate: Option<Rate>) -> Result<Vec<Entry>, TableError> {
    let value: Value = serde_json::from_str(content).map_err(|err| {
        // Built from the error's category and position only: serde's own message may quote input.
        let what = match err.classify() {
            serde_json::error::Category::Eof => "it ends too early",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data | serde_json::error::Category::Io => "unreadable",
        };
        TableError(vec![format!(
            "the file starts with `{{` but is not valid JSON ({what} at line {}, column {})",
            err.line(),
            err.column()
        )])
    })?;
    let Value::Object(mut top) = value else {
        unreachable!("content starting with `{{` that parses is an object");
    };
    let mut problems = Problems::default();
    let clients = top.remove("clients");
    for name in top.keys() {
        problems.add(format!(
            "unknown top-level field {}: the file holds only `clients`",
            shown_name(name)
        ));
    }
    let clients = match clients {
        Some(Value::Array(clients)) if !clients.is_empty() => clients,
        Some(Value::Array(_)) => {
            problems.add("clients: lists no client (at least one is needed)".to_owned());
            Vec::new()
        }
        Some(_) => {
            problems.add("clients: must be a list of clients".to_owned());
            Vec::new()
        }
        None => {
            problems.add("clients: missing".to_owned());
            Vec::new()
        }
    };
    let mut entries = Vec::with_capacity(clients.len());
    let mut ids: HashMap<ClientId, usize> = HashMap::new();
    let mut digests: HashMap<[u8; 32], (usize, usize)> = HashMap::new();
    for (index, client) in clients.into_iter().enumerate() {
        let Value::Object(fields) = client else {
            problems.add(format!("clients[{index}]: must be an object"));
            continue;
        };
        let mut checker = ClientChecker {
            index,
            label: format!("clients[{index}]"),
            problems: &mut problems,
        };
        if let Some(entry) = checker.check(fields, default_rate, &mut ids, &mut digests) {
            entries.push(entry);
        }
    }
    problems.finish()?;
    Ok(entries)
}

/// A problem was found and recorded in [`Problems`].
struct Reported;

/// Checks one client of the table.
struct ClientChecker<'a> {
    index: usize,
    /// `clients[2]`, then `clients[2] (monitor-eu)` once the id is known to be valid.
    label: String,
    problems: &'a mut Problems,
}

impl ClientChecker<'_> {
    fn add(&mut self, field: &str, what: impl std::fmt::Display) {
        let problem = format!("{}: {field}: {what}", self.label);
        self.problems.add(problem);
    }

    fn check(
        &mut self,
        mut fields: Map<String, Value>,
        default_rate: Option<Rate>,
        ids: &mut HashMap<ClientId, usize>,
        digests: &mut HashMap<[u8; 32], (usize, usize)>,
    ) -> Option<Entry> {
        let id = self.id(fields.remove("id"), ids);
        let keys = self.digests(fields.remove("key_sha256"), digests);
        let roles = self.roles(fields.remove("roles"));
        let sites = self.sites(fields.remove("sites"));
        let rate = match fields.remove("rate") {
            None => Ok(default_rate),
            Some(rate) => self.rate(rate),
        };
        for name in fields.keys() {
            let problem = format!(
                "{}: unknown field {}: a client has id, key_sha256, roles, sites and rate",
                self.label,
                shown_name(name)
            );
            self.problems.add(problem);
        }
        Some(Entry {
            principal: Arc::new(Principal::named(id?, roles?, sites?)),
            digests: keys?,
            bucket: Arc::new(Bucket::new(rate.ok()?)),
        })
    }

    fn id(&mut self, raw: Option<Value>, ids: &mut HashMap<ClientId, usize>) -> Option<ClientId> {
        let id = match raw {
            None => {
                self.add("id", "missing");
                return None;
            }
            Some(Value::String(raw)) => match ClientId::parse(&raw) {
                Ok(id) => id,
                Err(rule) => {
                    self.add("id", rule);
                    return None;
                }
            },
            Some(_) => {
                self.add("id", "must be a string");
                return None;
            }
        };
        self.label = format!("clients[{}] ({id})", self.index);
        if [ClientId::LEGACY, ClientId::ANONYMOUS].contains(&id.as_str()) {
            self.add(
                "id",
                "`legacy` and `anonymous` are reserved for callers without a table",
            );
            return None;
        }
        if let Some(first) = ids.get(&id) {
            self.add("id", format_args!("also the id of clients[{first}]"));
            return None;
        }
        ids.insert(id.clone(), self.index);
        Some(id)
    }

    fn digests(
        &mut self,
        raw: Option<Value>,
        seen: &mut HashMap<[u8; 32], (usize, usize)>,
    ) -> Option<Vec<[u8; 32]>> {
        let listed = match raw {
            None => {
                self.add("key_sha256", "missing");
                return None;
            }
            Some(Value::Array(listed)) if (1..=MAX_DIGESTS).contains(&listed.len()) => listed,
            Some(Value::Array(_)) => {
                self.add(
                    "key_sha256",
                    "must list 1 or 2 digests (2 while a key is rotated)",
                );
                return None;
            }
            Some(_) => {
                self.add("key_sha256", "must be a list of digests");
                return None;
            }
        };
        let mut digests = Vec::with_capacity(listed.len());
        for (n, raw) in listed.iter().enumerate() {
            let field = format!("key_sha256[{n}]");
            let Some(digest) = raw.as_str().and_then(decode_digest) else {
                self.add(
                    &field,
                    "must be 64 hex characters: the SHA-256 of the key, never the key itself",
                );
                continue;
            };
            if let Some((client, k)) = seen.get(&digest) {
                self.add(
                    &field,
                    format_args!("the same digest as clients[{client}].key_sha256[{k}]"),
                );
                continue;
            }
            seen.insert(digest, (self.index, n));
            digests.push(digest);
        }
        (digests.len() == listed.len()).then_some(digests)
    }

    fn roles(&mut self, raw: Option<Value>) -> Option<Roles> {
        let listed = match raw {
            None => {
                self.add("roles", "missing");
                return None;
            }
            Some(Value::Array(listed)) if !listed.is_empty() => listed,
            Some(Value::Array(_)) => {
                self.add("roles", "lists no role (at least one is needed)");
                return None;
            }
            Some(_) => {
                self.add("roles", "must be a list of roles");
                return None;
            }
        };
        let mut roles = Roles::default();
        let mut valid = true;
        for (n, raw) in listed.iter().enumerate() {
            if let Some(role) = raw.as_str().and_then(Role::parse) {
                roles = roles.with(role);
            } else {
                valid = false;
                self.add(
                    &format!("roles[{n}]"),
                    "must be one of submit, read, review, audit",
                );
            }
        }
        valid.then_some(roles)
    }

    fn sites(&mut self, raw: Option<Value>) -> Option<Sites> {
        let listed = match raw {
            None => {
                self.add("sites", "missing");
                return None;
            }
            Some(Value::Array(listed)) if !listed.is_empty() => listed,
            Some(Value::Array(_)) => {
                self.add(
                    "sites",
                    "lists no site (list site ids, or [\"*\"] for every site)",
                );
                return None;
            }
            Some(_) => {
                self.add("sites", "must be a list of site ids, or [\"*\"]");
                return None;
            }
        };
        let every = listed.iter().any(|s| s.as_str() == Some("*"));
        if every {
            if listed.len() == 1 {
                return Some(Sites::All);
            }
            self.add("sites", "`*` (every site) stands alone");
            return None;
        }
        let mut sites = Vec::with_capacity(listed.len());
        for (n, raw) in listed.iter().enumerate() {
            match raw.as_str().map(SiteId::parse) {
                Some(Ok(site)) => {
                    if !sites.contains(&site) {
                        sites.push(site);
                    }
                }
                _ => self.add(
                    &format!("sites[{n}]"),
                    format_args!(
                        "a site id is {} to {} letters or digits, or `*` alone",
                        SiteId::MIN_LEN,
                        SiteId::MAX_LEN
                    ),
                ),
            }
        }
        (sites.len() == listed.len()).then_some(Sites::Only(sites))
    }

    /// `Ok(limit)` when valid (`Ok(None)`: this client is not limited); `Err` once the problem is
    /// recorded.
    fn rate(&mut self, raw: Value) -> Result<Option<Rate>, Reported> {
        let Value::Object(mut fields) = raw else {
            self.add(
                "rate",
                "must be an object {\"per_second\": N, \"burst\": M}",
            );
            return Err(Reported);
        };
        let mut number = |checker: &mut Self, name: &str| match fields.remove(name) {
            Some(Value::Number(n)) => {
                let whole = n.as_u64().and_then(|n| u32::try_from(n).ok());
                if whole.is_none() {
                    checker.add(
                        &format!("rate.{name}"),
                        "must be a whole number from 0 to 4294967295",
                    );
                }
                whole
            }
            Some(_) => {
                checker.add(&format!("rate.{name}"), "must be a whole number");
                None
            }
            None => {
                checker.add(&format!("rate.{name}"), "missing");
                None
            }
        };
        let per_second = number(self, "per_second");
        let burst = number(self, "burst");
        for name in fields.keys() {
            let problem = format!(
                "{}: rate: unknown field {}: a rate has per_second and burst",
                self.label,
                shown_name(name)
            );
            self.problems.add(problem);
        }
        let (Some(per_second), Some(burst)) = (per_second, burst) else {
            return Err(Reported);
        };
        Rate::limit(per_second, burst).map_err(|rule| {
            self.add("rate.burst", rule);
            Reported
        })
    }
}

/// 64 hex characters (either case) as 32 bytes.
pub fn decode_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0; 32];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        *out = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(digest)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Hex SHA-256 of `key`, as an operator would put in the table.
    fn digest_of(key: &str) -> String {
        crate::domain::hex(&Sha256::digest(key.as_bytes()))
    }

    fn uploader() -> Value {
        json!({"id": "site001-uploader", "key_sha256": [digest_of("k-upload")], "roles": ["submit"], "sites": ["site001"]})
    }

    fn monitor() -> Value {
        json!({"id": "monitor-eu", "key_sha256": [digest_of("k-mon-1"), digest_of("k-mon-2")], "roles": ["read", "review"], "sites": ["*"]})
    }

    fn table(clients: &[Value]) -> String {
        json!({ "clients": clients }).to_string()
    }

    /// `uploader()` with `field` set to `value` (or removed when `value` is null).
    fn uploader_with(field: &str, value: Value) -> Value {
        let mut client = uploader();
        let object = client.as_object_mut().expect("object");
        if value.is_null() {
            object.remove(field);
        } else {
            object.insert(field.to_owned(), value);
        }
        client
    }

    #[test]
    fn a_valid_table_gives_each_client_its_principal_digests_and_rate() {
        let auditor = json!({"id": "qa-auditor", "key_sha256": [digest_of("k-qa").to_uppercase()], "roles": ["audit", "read"], "sites": ["*"], "rate": {"per_second": 5, "burst": 10}});
        let default = Rate::limit(100, 200).expect("rate");
        let parsed = Table::parse(
            &format!("\n  {}", table(&[uploader(), monitor(), auditor])),
            default,
        )
        .expect("valid");
        assert_eq!(parsed.format, Format::Table);
        assert_eq!(parsed.entries.len(), 3);
        assert_eq!(parsed.key_count(), 4);
        let [up, mon, qa] = &parsed.entries[..] else {
            panic!("three entries");
        };
        assert_eq!(up.principal.client.as_str(), "site001-uploader");
        assert!(up.principal.require(Role::Submit).is_ok());
        assert!(up.principal.require(Role::Read).is_err());
        assert_eq!(
            up.principal.sites,
            Sites::Only(vec![SiteId::parse("SITE001").expect("site")]),
            "site ids are upper-cased"
        );
        assert_eq!(up.bucket.rate(), default, "no rate: the default");
        assert_eq!(mon.digests.len(), 2, "both rotation digests");
        assert_eq!(mon.principal.sites, Sites::All);
        assert_eq!(
            qa.digests[0],
            <[u8; 32]>::from(Sha256::digest(b"k-qa")),
            "upper-case hex decodes to the same digest"
        );
        assert_eq!(qa.bucket.rate(), Rate::limit(5, 10).expect("rate"));
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one row per rule")]
    fn every_rule_of_the_table_is_enforced_naming_the_client_and_field() {
        let long_digest = format!("{}0", digest_of("x"));
        // (file content, what the error must say, what the case proves)
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "{\"clients\": [".to_owned(),
                "not valid JSON (it ends too early at line 1",
                "broken JSON",
            ),
            (
                "{\"clients\": [}".to_owned(),
                "not valid JSON (syntax error",
                "a syntax error",
            ),
            (
                json!({}).to_string(),
                "clients: missing",
                "no clients field",
            ),
            (
                table(&[]),
                "clients: lists no client",
                "an empty table is refused",
            ),
            (
                json!({"clients": {}}).to_string(),
                "clients: must be a list",
                "clients is a list",
            ),
            (
                json!({"clients": [uploader()], "version": 2}).to_string(),
                "unknown top-level field `version`",
                "unknown top-level fields refused",
            ),
            (
                table(&[json!("site001-uploader")]),
                "clients[0]: must be an object",
                "a client is an object",
            ),
            (
                table(&[uploader_with("id", Value::Null)]),
                "clients[0]: id: missing",
                "id required",
            ),
            (
                table(&[uploader_with("id", json!("has space"))]),
                "clients[0]: id: a client id is 1 to 64",
                "id alphabet",
            ),
            (
                table(&[uploader_with("id", json!(7))]),
                "clients[0]: id: must be a string",
                "id is a string",
            ),
            (
                table(&[uploader_with("id", json!("legacy"))]),
                "clients[0] (legacy): id: `legacy` and `anonymous` are reserved",
                "reserved ids",
            ),
            (
                table(&[monitor(), uploader_with("id", json!("monitor-eu"))]),
                "clients[1] (monitor-eu): id: also the id of clients[0]",
                "ids unique",
            ),
            (
                table(&[uploader_with("key_sha256", Value::Null)]),
                "clients[0] (site001-uploader): key_sha256: missing",
                "digests required",
            ),
            (
                table(&[uploader_with("key_sha256", json!([]))]),
                "key_sha256: must list 1 or 2 digests",
                "at least one digest",
            ),
            (
                table(&[uploader_with(
                    "key_sha256",
                    json!([digest_of("a"), digest_of("b"), digest_of("c")]),
                )]),
                "key_sha256: must list 1 or 2 digests",
                "at most two digests",
            ),
            (
                table(&[uploader_with("key_sha256", json!(digest_of("a")))]),
                "key_sha256: must be a list",
                "digests are a list",
            ),
            (
                table(&[uploader_with("key_sha256", json!(["k-upload"]))]),
                "key_sha256[0]: must be 64 hex characters",
                "a raw key is not a digest",
            ),
            (
                table(&[uploader_with("key_sha256", json!([long_digest]))]),
                "key_sha256[0]: must be 64 hex characters",
                "65 characters",
            ),
            (
                table(&[uploader_with(
                    "key_sha256",
                    json!([digest_of("a").replace(|c: char| c.is_ascii_digit(), "g")]),
                )]),
                "key_sha256[0]: must be 64 hex characters",
                "non-hex characters",
            ),
            (
                table(&[uploader_with(
                    "key_sha256",
                    json!([digest_of("a"), digest_of("a").to_uppercase()]),
                )]),
                "key_sha256[1]: the same digest as clients[0].key_sha256[0]",
                "a digest twice in one client (either case)",
            ),
            (
                table(&[
                    monitor(),
                    uploader_with("key_sha256", json!([digest_of("k-mon-2")])),
                ]),
                "clients[1] (site001-uploader): key_sha256[0]: the same digest as clients[0].key_sha256[1]",
                "a digest shared by two clients",
            ),
            (
                table(&[uploader_with("roles", Value::Null)]),
                "roles: missing",
                "roles required",
            ),
            (
                table(&[uploader_with("roles", json!([]))]),
                "roles: lists no role",
                "at least one role",
            ),
            (
                table(&[uploader_with("roles", json!(["submit", "admin"]))]),
                "roles[1]: must be one of submit, read, review, audit",
                "unknown role",
            ),
            (
                table(&[uploader_with("roles", json!(["Submit"]))]),
                "roles[0]: must be one of",
                "roles are lower-case",
            ),
            (
                table(&[uploader_with("roles", json!("submit"))]),
                "roles: must be a list",
                "roles are a list",
            ),
            (
                table(&[uploader_with("sites", Value::Null)]),
                "sites: missing",
                "sites required",
            ),
            (
                table(&[uploader_with("sites", json!([]))]),
                "sites: lists no site",
                "at least one site",
            ),
            (
                table(&[uploader_with("sites", json!(["*", "SITE001"]))]),
                "sites: `*` (every site) stands alone",
                "* with others",
            ),
            (
                table(&[uploader_with("sites", json!(["SITE001", "S1"]))]),
                "sites[1]: a site id is 3 to 20 letters or digits",
                "SiteId rules",
            ),
            (
                table(&[uploader_with("sites", json!(["SITE-001"]))]),
                "sites[0]: a site id",
                "site ids are alphanumeric",
            ),
            (
                table(&[uploader_with("rate", json!(10))]),
                "rate: must be an object",
                "rate is an object",
            ),
            (
                table(&[uploader_with("rate", json!({"per_second": 10}))]),
                "rate.burst: missing",
                "burst required",
            ),
            (
                table(&[uploader_with(
                    "rate",
                    json!({"per_second": -1, "burst": 10}),
                )]),
                "rate.per_second: must be a whole number from 0",
                "no negative rate",
            ),
            (
                table(&[uploader_with(
                    "rate",
                    json!({"per_second": 1.5, "burst": 10}),
                )]),
                "rate.per_second: must be a whole number from 0",
                "whole numbers only",
            ),
            (
                table(&[uploader_with("rate", json!({"per_second": 10, "burst": 0}))]),
                "rate.burst: the burst must be at least 1",
                "a limit needs a burst",
            ),
            (
                table(&[uploader_with(
                    "rate",
                    json!({"per_second": 10, "burst": 5, "window": 1}),
                )]),
                "rate: unknown field `window`",
                "unknown rate fields refused",
            ),
            (
                table(&[uploader_with("key", json!("k-upload"))]),
                "clients[0] (site001-uploader): unknown field `key`",
                "unknown client fields refused",
            ),
            (
                table(&[uploader_with(&digest_of("pasted"), json!(1))]),
                "unknown field (a name that is not shown)",
                "a digest pasted as a field name is not echoed",
            ),
        ];
        for (content, expected, proves) in cases {
            let err = Table::parse(&content, None).expect_err(proves).to_string();
            assert!(err.contains(expected), "{proves}: {err}");
            for secret in ["k-upload", "k-mon"] {
                assert!(!err.contains(secret), "{proves}: a key leaked: {err}");
            }
            for key in ["k-upload", "k-mon-1", "k-mon-2", "pasted", "a", "b", "c"] {
                let hex = digest_of(key);
                assert!(
                    !err.to_lowercase().contains(&hex[..16]),
                    "{proves}: a digest leaked: {err}"
                );
            }
        }
    }

    #[test]
    fn every_problem_is_listed_up_to_a_limit() {
        let bad: Vec<Value> = (0..15)
            .map(|n| {
                let mut client = uploader_with("id", json!(format!("bad id {n}")));
                client["key_sha256"] = json!([digest_of(&format!("k{n}"))]);
                client
            })
            .collect();
        let TableError(problems) = Table::parse(&table(&bad), None).expect_err("invalid");
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert!(problems[0].starts_with("clients[0]: id:"), "{problems:?}");
        assert_eq!(problems[MAX_PROBLEMS], "and 5 more problem(s)");
    }

    #[test]
    fn content_not_starting_with_a_brace_is_the_old_format() {
        // (content, keys accepted, what the case proves)
        for (content, keys, proves) in [
            ("k1\n\n  k2  \n", 2, "one key per line, blanks skipped"),
            ("", 0, "an empty file accepts no key"),
            ("[\"k1\"]", 1, "a JSON list is a key like any other line"),
            ("k{1}\n", 1, "a brace inside a key"),
        ] {
            let parsed = Table::parse(content, Rate::limit(1, 1).expect("rate")).expect(proves);
            assert_eq!(parsed.format, Format::Legacy, "{proves}");
            assert_eq!(parsed.key_count(), keys, "{proves}");
            assert_eq!(
                *parsed.entries[0].principal,
                Principal::legacy(),
                "{proves}"
            );
            assert_eq!(
                parsed.entries[0].bucket.rate(),
                None,
                "{proves}: the legacy client is every caller: not limited per client"
            );
        }
    }

    #[test]
    fn digests_decode_in_either_case_and_nothing_else() {
        let lower = digest_of("k");
        assert_eq!(decode_digest(&lower), decode_digest(&lower.to_uppercase()));
        assert_eq!(
            decode_digest(&lower).map(|d| crate::domain::hex(&d)),
            Some(lower.clone())
        );
        for bad in [
            &lower[..63],
            &format!("{lower}0"),
            &format!("{}zz", &lower[..62]),
            "",
        ] {
            assert_eq!(decode_digest(bad), None, "{bad}");
        }
    }
}

//! `mediflow keys new`: a new API key and the client-table entry that grants it. The key is 32
//! bytes from the operating system's random source, written as URL-safe base64 without padding
//! (43 characters); the service keeps only the lower-case hex SHA-256 of the key's text, so the
//! key itself is shown once and stored nowhere by this tool.

use mediflow_domain::identity::{ClientId, Role};
use mediflow_domain::record::SiteId;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Random bytes in a key.
pub const KEY_BYTES: usize = 32;

/// One entry of the service's client table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub id: String,
    pub key_sha256: Vec<String>,
    pub roles: Vec<&'static str>,
    pub sites: Vec<String>,
}

/// A client id: 1 to 64 of `A-Z a-z 0-9 . _ -` (the service's own rule).
pub fn client_id(raw: &str) -> Result<String, String> {
    ClientId::parse(raw)
        .map(|id| id.as_str().to_owned())
        .map_err(|rule| format!("--client {raw:?}: {rule}"))
}

/// Roles from `submit,read,review,audit` (at least one; repeats ignored), in the order given.
pub fn roles(raw: &str) -> Result<Vec<&'static str>, String> {
    let mut roles: Vec<&'static str> = Vec::new();
    for name in raw.split(',').map(str::trim) {
        let role = Role::parse(name).ok_or_else(|| {
            format!("--roles: unknown role {name:?}; the roles are submit, read, review, audit")
        })?;
        if !roles.contains(&role.name()) {
            roles.push(role.name());
        }
    }
    Ok(roles)
}

/// Sites: `*` (every site), or site ids of 3 to 20 letters or digits, upper-cased.
pub fn sites(raw: &str) -> Result<Vec<String>, String> {
    let names: Vec<&str> = raw.split(',').map(str::trim).collect();
    if names == ["*"] {
        return Ok(vec!["*".to_owned()]);
    }
    let mut sites: Vec<String> = Vec::new();
    for name in names {
        if name == "*" {
            return Err("--sites: `*` (every site) stands alone, without site ids".into());
        }
        let site = SiteId::parse(name).map_err(|_| {
            format!("--sites: {name:?} is not a site id (3 to 20 letters or digits) or `*`")
        })?;
        if !sites.iter().any(|s| s == site.as_str()) {
            sites.push(site.as_str().to_owned());
        }
    }
    Ok(sites)
}

/// A new random key.
pub fn new_key() -> Result<String, String> {
    use base64::Engine as _;
    let mut bytes = [0_u8; KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("the operating system's random source failed: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The lower-case hex SHA-256 of `key`'s UTF-8 text: what the client table holds.
pub fn key_sha256(key: &str) -> String {
    mediflow_domain::audit::hex(&Sha256::digest(key.as_bytes()))
}

/// The client-table entry for `key`.
pub fn entry(id: String, roles: Vec<&'static str>, sites: Vec<String>, key: &str) -> Entry {
    Entry {
        id,
        key_sha256: vec![key_sha256(key)],
        roles,
        sites,
    }
}

/// `mediflow keys new`: the key on the first line, then the entry.
pub fn run(args: &crate::KeysNewArgs) -> Result<u8, crate::Failure> {
    let id = client_id(&args.client)?;
    let roles = roles(&args.roles)?;
    let sites = sites(&args.sites)?;
    let key = new_key()?;
    let entry = entry(id, roles, sites, &key);
    crate::output::print(&format!("{key}\n{}", crate::output::pretty(&entry)))?;
    eprintln!(
        "mediflow: the key above is shown once: store it now; add the entry to the service's client table"
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_follow_the_service_rule() {
        let cases = [
            (
                "letters, digits, dot, underscore, dash",
                "site001-uploader_v2.a",
                true,
            ),
            ("one character", "a", true),
            ("64 characters", &"a".repeat(64), true),
            ("65 characters", &"a".repeat(65), false),
            ("empty", "", false),
            ("a space", "site 001", false),
            ("a slash", "site/001", false),
            ("non-ASCII", "sité", false),
        ];
        for (what, raw, valid) in cases {
            assert_eq!(client_id(raw).is_ok(), valid, "{what}: {raw:?}");
        }
    }

    /// What a case proves, the flag's value, and the list it parses to or part of its error.
    type Case = (
        &'static str,
        &'static str,
        Result<Vec<&'static str>, &'static str>,
    );

    #[test]
    fn roles_are_the_four_names_at_least_one() {
        let cases: [Case; 6] = [
            (
                "two roles, in the order given",
                "read,submit",
                Ok(vec!["read", "submit"]),
            ),
            (
                "all four",
                "submit,read,review,audit",
                Ok(vec!["submit", "read", "review", "audit"]),
            ),
            ("repeats once", "read, read", Ok(vec!["read"])),
            (
                "unknown role",
                "submit,admin",
                Err("unknown role \"admin\""),
            ),
            ("empty", "", Err("unknown role \"\"")),
            ("case matters", "Read", Err("unknown role \"Read\"")),
        ];
        for (what, raw, expected) in cases {
            match (roles(raw), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{what}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{what}: {got}"),
                (got, want) => panic!("{what}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn sites_are_upper_cased_site_ids_or_a_lone_star() {
        let cases: [Case; 8] = [
            ("one site, upper-cased", "site001", Ok(vec!["SITE001"])),
            (
                "two sites, repeats once",
                "SITE001,site002,Site001",
                Ok(vec!["SITE001", "SITE002"]),
            ),
            ("every site", "*", Ok(vec!["*"])),
            ("star with sites", "*,SITE001", Err("stands alone")),
            ("too short", "AB", Err("\"AB\" is not a site id")),
            ("too long", "A23456789012345678901", Err("is not a site id")),
            ("not alphanumeric", "SITE-1", Err("is not a site id")),
            ("empty", "", Err("\"\" is not a site id")),
        ];
        for (what, raw, expected) in cases {
            match (sites(raw), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{what}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{what}: {got}"),
                (got, want) => panic!("{what}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn a_new_key_is_32_random_bytes_and_its_entry_holds_its_sha256() {
        use base64::Engine as _;
        let key = new_key().expect("random");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&key)
            .expect("URL-safe base64 without padding");
        assert_eq!((key.len(), bytes.len()), (43, KEY_BYTES));
        assert_ne!(key, new_key().expect("random"), "two keys differ");
        let entry = entry("c".into(), vec!["read"], vec!["*".into()], &key);
        let expected: String = Sha256::digest(key.as_bytes())
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .map(|nibble| char::from_digit(u32::from(nibble), 16).expect("a hex digit"))
            .collect();
        assert_eq!(entry.key_sha256, [expected]);
        // A known answer: SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            key_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            serde_json::to_value(&entry).expect("json"),
            serde_json::json!({"id": "c", "key_sha256": [entry.key_sha256[0]], "roles": ["read"], "sites": ["*"]})
        );
    }
}

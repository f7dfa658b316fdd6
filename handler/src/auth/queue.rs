//! Which client sent a queue message. A queue message is a signed envelope
//! `{"client": "<id>", "hmac_sha256": "<hex>", "payload": "<the batch message JSON>"}` whose
//! HMAC-SHA256 key is the 32 raw bytes of SHA-256(the client's API key), i.e. a digest the client
//! table holds, over the payload's UTF-8 bytes. [`attribute`] checks it; [`sign`] builds it.
//!
//! The key being the digest means the table (or a leak of it) suffices to forge queue messages,
//! though not HTTP calls (those need the key itself): the right to send to the queue is a separate
//! Entra ID role assignment (docs/threat-model.md).

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::table::{Format, Table};
use crate::domain::identity::{ClientId, Principal, Role};

type HmacSha256 = Hmac<Sha256>;

/// Why a queue message cannot be attributed to a client. Never quotes the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unattributed {
    /// It carries `hmac_sha256` but is not `{client, hmac_sha256, payload}`, each a string (or,
    /// with a client table in force, it is not a JSON object at all).
    #[error("the message is not a signed envelope: {0}")]
    NotAnEnvelope(&'static str),
    /// The envelope names a client the table in force does not hold.
    #[error("the envelope names a client the table in force does not hold")]
    UnknownClient,
    /// The HMAC matches none of the named client's digests.
    #[error("the envelope's signature matches no key of the client it names")]
    BadSignature,
    /// The client is genuine but may not submit.
    #[error("client {client} does not hold the role submit")]
    MissingRole { client: ClientId },
    /// A plain batch message while a client table is in force: nobody vouches for it.
    #[error("an unsigned message is refused while a client table is in force")]
    Unsigned,
}

/// What a message that carries `hmac_sha256` must be.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    client: String,
    hmac_sha256: String,
    payload: String,
}

/// Enough of a message to tell an envelope from a plain batch message (other fields skipped).
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    hmac_sha256: Option<serde::de::IgnoredAny>,
}

/// Attributes a queue message under `table`: the principal and the payload bytes (the batch
/// message JSON).
///
/// - A signed envelope: its client must be in the table, the HMAC must match one of the client's
///   digests (each is tried, in constant time, without an early exit), and the client must hold
///   [`Role::Submit`]. With an old-format file the envelope's client is `legacy` and any of the
///   file's keys may have signed it. With auth off nothing can be checked: the payload is
///   [`Principal::anonymous`]'s.
/// - A plain batch message (anything without `hmac_sha256`, passed on as it is): the legacy
///   client's with an old-format file, the anonymous caller's with auth off, refused
///   ([`Unattributed::Unsigned`]) while a client table is in force.
pub fn attribute(table: &Table, message: &[u8]) -> Result<(Arc<Principal>, Vec<u8>), Unattributed> {
    let signed = match serde_json::from_slice::<Probe>(message) {
        Ok(probe) => probe.hmac_sha256.is_some(),
        Err(_) if table.format == Format::Table => {
            return Err(Unattributed::NotAnEnvelope("it is not a JSON object"));
        }
        // Not an object: today's batch decoder says what is wrong with it.
        Err(_) => false,
    };
    let only = || Arc::clone(&table.entries[0].principal);
    if !signed {
        return match table.format {
            Format::Table => Err(Unattributed::Unsigned),
            Format::Legacy | Format::Off => Ok((only(), message.to_vec())),
        };
    }
    let envelope: Envelope = serde_json::from_slice(message).map_err(|_| {
        Unattributed::NotAnEnvelope("an envelope is {client, hmac_sha256, payload}, each a string")
    })?;
    if table.format == Format::Off {
        return Ok((only(), envelope.payload.into_bytes()));
    }
    let entry = table
        .entries
        .iter()
        .find(|e| e.principal.client.as_str() == envelope.client)
        .ok_or(Unattributed::UnknownClient)?;
    let tag = decode_hex(&envelope.hmac_sha256).ok_or(Unattributed::BadSignature)?;
    let matched = entry.digests.iter().fold(false, |matched, digest| {
        let mut mac = keyed(digest);
        mac.update(envelope.payload.as_bytes());
        // `verify_slice` compares in constant time; `|` (not `||`) tries every digest.
        matched | mac.verify_slice(&tag).is_ok()
    });
    if !matched {
        return Err(Unattributed::BadSignature);
    }
    if entry.principal.require(Role::Submit).is_err() {
        return Err(Unattributed::MissingRole {
            client: entry.principal.client.clone(),
        });
    }
    Ok((Arc::clone(&entry.principal), envelope.payload.into_bytes()))
}

/// The envelope of `payload` from `client`, signed with `digest` (the SHA-256 of one of the
/// client's keys).
pub fn sign(client: &ClientId, digest: &[u8; 32], payload: &str) -> String {
    let mut mac = keyed(digest);
    mac.update(payload.as_bytes());
    serde_json::json!({
        "client": client.as_str(),
        "hmac_sha256": crate::domain::hex(&mac.finalize().into_bytes()),
        "payload": payload,
    })
    .to_string()
}

/// What the server signs a client's queue messages with (never printed).
#[derive(Clone)]
pub struct SigningKey {
    pub(super) client: ClientId,
    pub(super) digest: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn client(&self) -> &ClientId {
        &self.client
    }

    /// The signed envelope of `payload` ([`sign`]).
    pub fn sign(&self, payload: &str) -> String {
        sign(&self.client, &self.digest, payload)
    }
}

fn keyed(digest: &[u8; 32]) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    HmacSha256::new_from_slice(digest).expect("HMAC accepts a 32-byte key")
}

/// Hex (either case) of an even length as bytes.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use sha2::Digest;

    use super::*;

    const PAYLOAD: &str =
        r#"{"batch_id":"1d0d5edd-9738-453c-8966-aaa2be88a9f5","records":[{"site_id":"SITE001"}]}"#;

    fn digest(key: &str) -> [u8; 32] {
        Sha256::digest(key.as_bytes()).into()
    }

    fn client_table() -> Table {
        let hex = |key: &str| crate::domain::hex(&digest(key));
        Table::parse(
            &json!({"clients": [
                {"id": "site001-uploader", "key_sha256": [hex("up-old"), hex("up-new")], "roles": ["submit"], "sites": ["SITE001"]},
                {"id": "qa-auditor", "key_sha256": [hex("qa")], "roles": ["audit", "read"], "sites": ["*"]},
            ]})
            .to_string(),
            None,
        )
        .expect("table")
    }

    fn client(id: &str) -> ClientId {
        ClientId::parse(id).expect("id")
    }

    /// An envelope built as the CLI builds it, computed here independently of [`sign`].
    fn envelope_by_hand(client: &str, key: &str, payload: &str) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&Sha256::digest(key.as_bytes())).expect("key");
        mac.update(payload.as_bytes());
        let tag = mac
            .finalize()
            .into_bytes()
            .iter()
            .fold(String::new(), |mut tag, b| {
                use std::fmt::Write;
                let _ = write!(tag, "{b:02x}");
                tag
            });
        json!({"client": client, "hmac_sha256": tag, "payload": payload})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231_test_case_2() {
        // RFC 4231 section 4.3: key "Jefe", data "what do ya want for nothing?".
        let mut mac = HmacSha256::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            crate::domain::hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sign_gives_the_known_answer_for_fixed_inputs() {
        // The HMAC of PAYLOAD keyed with SHA-256("up-new"), computed outside this module.
        let signed = sign(&client("site001-uploader"), &digest("up-new"), PAYLOAD);
        assert_eq!(
            signed.as_bytes(),
            envelope_by_hand("site001-uploader", "up-new", PAYLOAD).as_slice()
        );
        let value: Value = serde_json::from_str(&signed).expect("json");
        let tag = value["hmac_sha256"].as_str().expect("tag");
        assert_eq!(tag.len(), 64);
        assert_eq!(
            tag, "4bf9f763e0104b59f048ccb0e8a425eaf6d30c1cde000d1072ecb0b5e6a86a71",
            "the tag Python's hmac module gives for the same inputs (lower-case hex)"
        );
        assert_eq!(value["payload"], PAYLOAD, "the payload as a JSON string");
    }

    /// (message, the client it is attributed to or why not, what the case proves)
    type Case<'a> = (Vec<u8>, Expected<'a>, &'a str);

    /// The client a message is attributed to, or why not.
    type Expected<'a> = Result<&'a str, Unattributed>;

    #[test]
    #[expect(clippy::too_many_lines, reason = "one row per case")]
    fn a_client_table_attributes_only_genuine_envelopes_of_submitters() {
        let table = client_table();
        let tamper = |mut envelope: Value, field: &str, to: Value| {
            envelope[field] = to;
            envelope.to_string().into_bytes()
        };
        let good: Value =
            serde_json::from_slice(&envelope_by_hand("site001-uploader", "up-old", PAYLOAD))
                .expect("json");
        let cases: Vec<Case> = vec![
            (
                envelope_by_hand("site001-uploader", "up-old", PAYLOAD),
                Ok("site001-uploader"),
                "signed with the first digest",
            ),
            (
                envelope_by_hand("site001-uploader", "up-new", PAYLOAD),
                Ok("site001-uploader"),
                "signed with the second digest (a rotation)",
            ),
            (
                envelope_by_hand("site001-uploader", "qa", PAYLOAD),
                Err(Unattributed::BadSignature),
                "signed with another client's key",
            ),
            (
                envelope_by_hand("site001-uploader", "up-old ", PAYLOAD),
                Err(Unattributed::BadSignature),
                "signed with a near key",
            ),
            (
                tamper(
                    good.clone(),
                    "payload",
                    Value::from(PAYLOAD.replace("SITE001", "SITE002")),
                ),
                Err(Unattributed::BadSignature),
                "the payload changed after signing",
            ),
            (
                tamper(
                    good.clone(),
                    "hmac_sha256",
                    Value::from(good["hmac_sha256"].as_str().expect("tag").to_uppercase()),
                ),
                Ok("site001-uploader"),
                "upper-case hex is the same tag",
            ),
            (
                tamper(good.clone(), "hmac_sha256", Value::from("zz")),
                Err(Unattributed::BadSignature),
                "a tag that is not hex",
            ),
            (
                tamper(
                    good.clone(),
                    "hmac_sha256",
                    Value::from(&good["hmac_sha256"].as_str().expect("tag")[..62]),
                ),
                Err(Unattributed::BadSignature),
                "a truncated tag",
            ),
            (
                envelope_by_hand("nobody", "up-old", PAYLOAD),
                Err(Unattributed::UnknownClient),
                "a client the table does not hold",
            ),
            (
                envelope_by_hand("qa-auditor", "qa", PAYLOAD),
                Err(Unattributed::MissingRole {
                    client: client("qa-auditor"),
                }),
                "a genuine client without the submit role",
            ),
            (
                PAYLOAD.as_bytes().to_vec(),
                Err(Unattributed::Unsigned),
                "a plain batch message",
            ),
            (
                b"not json".to_vec(),
                Err(Unattributed::NotAnEnvelope("it is not a JSON object")),
                "not JSON",
            ),
            (
                tamper(good.clone(), "extra", Value::from(1)),
                Err(Unattributed::NotAnEnvelope(
                    "an envelope is {client, hmac_sha256, payload}, each a string",
                )),
                "an unknown envelope field",
            ),
            (
                tamper(good, "payload", json!({"batch_id": "x"})),
                Err(Unattributed::NotAnEnvelope(
                    "an envelope is {client, hmac_sha256, payload}, each a string",
                )),
                "the payload as an object, not a string",
            ),
        ];
        for (message, expected, proves) in cases {
            let got = attribute(&table, &message)
                .map(|(principal, payload)| (principal.client.to_string(), payload));
            match (got, expected) {
                (Ok((id, payload)), Ok(expected)) => {
                    assert_eq!(id, expected, "{proves}");
                    assert_eq!(payload, PAYLOAD.as_bytes(), "{proves}: the payload's bytes");
                }
                (Err(err), Err(expected)) => {
                    assert_eq!(err, expected, "{proves}");
                    assert!(
                        !err.to_string().contains("SITE00"),
                        "{proves}: content in {err}"
                    );
                }
                (got, expected) => panic!("{proves}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn an_old_format_file_or_auth_off_keeps_todays_producers_working() {
        let legacy = Table::parse("k-old\nk-new\n", None).expect("legacy");
        let off = Table::off();
        // (table, message, expected client or refusal, what the case proves)
        let cases: Vec<(&Table, Vec<u8>, Expected, &str)> = vec![
            (
                &legacy,
                PAYLOAD.into(),
                Ok("legacy"),
                "a plain message is legacy's",
            ),
            (
                &legacy,
                envelope_by_hand("legacy", "k-new", PAYLOAD),
                Ok("legacy"),
                "an envelope signed with a file key, as client legacy",
            ),
            (
                &legacy,
                envelope_by_hand("legacy", "k-other", PAYLOAD),
                Err(Unattributed::BadSignature),
                "an envelope signed with another key",
            ),
            (
                &legacy,
                envelope_by_hand("site001-uploader", "k-new", PAYLOAD),
                Err(Unattributed::UnknownClient),
                "an old-format file has no named clients",
            ),
            (&off, PAYLOAD.into(), Ok("anonymous"), "auth off: anonymous"),
            (
                &off,
                envelope_by_hand("site001-uploader", "any", PAYLOAD),
                Ok("anonymous"),
                "auth off: an envelope is unwrapped, its claim unchecked",
            ),
        ];
        for (table, message, expected, proves) in cases {
            let got = attribute(table, &message)
                .map(|(principal, payload)| (principal.client.to_string(), payload));
            match (got, expected) {
                (Ok((id, payload)), Ok(expected)) => {
                    assert_eq!(id, expected, "{proves}");
                    assert_eq!(payload, PAYLOAD.as_bytes(), "{proves}");
                }
                (Err(err), Err(expected)) => assert_eq!(err, expected, "{proves}"),
                (got, expected) => panic!("{proves}: got {got:?}, expected {expected:?}"),
            }
        }
        let (_, passed) = attribute(&legacy, b"not json").expect("legacy passes it on");
        assert_eq!(passed, b"not json", "the batch decoder judges it, as today");
    }

    #[test]
    fn what_sign_builds_attribute_accepts() {
        let table = client_table();
        let key = SigningKey {
            client: client("site001-uploader"),
            digest: digest("up-new"),
        };
        let (principal, payload) =
            attribute(&table, key.sign(PAYLOAD).as_bytes()).expect("attributed");
        assert_eq!(principal.client.as_str(), "site001-uploader");
        assert_eq!(payload, PAYLOAD.as_bytes());
        assert!(!format!("{key:?}").contains(&crate::domain::hex(&digest("up-new"))[..8]));
    }
}

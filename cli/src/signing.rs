//! Signed queue messages: how a `--queue-url` submission proves which client sent it.
//!
//! With a client id (`--client`) and an API key, each queue message's text is the envelope
//! `{"client": ID, "hmac_sha256": HEX, "payload": MESSAGE}`, where `MESSAGE` is the batch message
//! JSON as a JSON string and `HEX` is the lower-case hex HMAC-SHA256 of that string's UTF-8
//! bytes (exactly as sent), keyed with the 32 raw bytes of SHA-256(the API key's text, trimmed).
//! The service holds only that SHA-256 of each key, so it can verify without holding the key.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Signs batch messages as one client. The key never prints.
pub struct Signer {
    client: String,
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// `client` is an already checked client id; `api_key` the key's text.
    pub fn new(client: &str, api_key: &str) -> Self {
        Self {
            client: client.to_owned(),
            key: Sha256::digest(api_key.trim().as_bytes()).into(),
        }
    }

    pub fn client(&self) -> &str {
        &self.client
    }

    /// The envelope text that carries `payload` (a batch message's JSON).
    pub fn envelope(&self, payload: &str) -> String {
        json!({
            "client": self.client,
            "hmac_sha256": hmac_sha256_hex(&self.key, payload.as_bytes()),
            "payload": payload,
        })
        .to_string()
    }

    /// The envelope's bytes besides its payload's: `envelope(p).len() == overhead() +
    /// escaped_len(p)` for every `p`.
    pub fn overhead(&self) -> usize {
        self.envelope("").len()
    }
}

/// The length of `text` inside a JSON string (quotes, backslashes and control characters
/// escaped; serde_json's own escaping, so it matches what [`Signer::envelope`] writes).
pub fn escaped_len(text: &str) -> usize {
    serde_json::to_string(text).map_or(usize::MAX, |quoted| quoted.len() - 2)
}

/// HMAC-SHA256 of `message` under `key`, in lower-case hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mediflow_domain::audit::hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 1: a 20-byte key of 0x0b, "Hi There".
        assert_eq!(
            hmac_sha256_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn the_envelope_carries_the_payload_as_a_string_and_its_hmac_under_the_keys_sha256() {
        let payload = r#"{"batch_id":"00000000-0000-0000-0000-000000000001","records":[{"site_id":"SITE001","notes":"a \"quoted\" note"}]}"#;
        // Whitespace around the key (as read from a file) is not part of it.
        let signer = Signer::new("site001-uploader", " test-key-123\n");
        let envelope: Value = serde_json::from_str(&signer.envelope(payload)).expect("JSON");
        let keys: Vec<&str> = envelope
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["client", "hmac_sha256", "payload"]);
        assert_eq!(envelope["client"], "site001-uploader");
        assert_eq!(
            envelope["payload"], payload,
            "the payload, unchanged, as a string"
        );
        // Computed outside this crate (Python: hmac.new(sha256(b"test-key-123").digest(),
        // payload, sha256).hexdigest()).
        assert_eq!(
            envelope["hmac_sha256"],
            "3dfaa4f5b62e75cc750f1863d4f62735e016ed189c31187c3dd139ab239373dd"
        );
        // And by the hmac crate directly on the raw key bytes.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&Sha256::digest(b"test-key-123"))
            .expect("any key length");
        mac.update(payload.as_bytes());
        assert!(
            mac.verify_slice(
                &(0..32)
                    .map(|i| {
                        let hex = envelope["hmac_sha256"].as_str().expect("hex");
                        u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digit")
                    })
                    .collect::<Vec<u8>>()
            )
            .is_ok()
        );
        let other = Signer::new("site001-uploader", "test-key-124");
        assert_ne!(
            serde_json::from_str::<Value>(&other.envelope(payload)).expect("JSON")["hmac_sha256"],
            envelope["hmac_sha256"],
            "another key, another HMAC"
        );
    }

    #[test]
    fn the_envelope_size_is_the_overhead_plus_the_escaped_payload() {
        let signer = Signer::new("c", "k");
        for payload in ["", "{}", r#"{"a":"\"\\\n"}"#, "é\u{1f600}", "\u{7f}\t"] {
            assert_eq!(
                signer.envelope(payload).len(),
                signer.overhead() + escaped_len(payload),
                "{payload:?}"
            );
        }
    }
}

//! `mediflow keys new` as a process: the key alone on the first line of stdout, then the entry
//! as JSON whose digest is the SHA-256 of exactly that line; bad flags refused in one line.

use std::process::Command;

use sha2::{Digest, Sha256};

fn keys_new(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mediflow"))
        .args(["keys", "new"])
        .args(args)
        .output()
        .expect("run mediflow")
}

#[test]
fn keys_new_prints_the_key_then_an_entry_holding_its_sha256() {
    let out = keys_new(&[
        "--client",
        "site001-uploader",
        "--roles",
        "submit,read",
        "--sites",
        "site001,SITE002",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let (key, entry) = stdout.split_once('\n').expect("the key on its own line");
    assert_eq!(
        key.len(),
        43,
        "32 bytes as URL-safe base64 without padding: {key}"
    );
    let entry: serde_json::Value = serde_json::from_str(entry).expect("the entry as JSON");
    let digest: String = Sha256::digest(key.as_bytes())
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|n| char::from_digit(u32::from(n), 16).expect("hex"))
        .collect();
    assert_eq!(
        entry,
        serde_json::json!({
            "id": "site001-uploader",
            "key_sha256": [digest],
            "roles": ["submit", "read"],
            "sites": ["SITE001", "SITE002"]
        })
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown once"));
}

#[test]
fn keys_new_refuses_bad_flags_in_one_line() {
    let cases = [
        (
            ["--client", "bad id", "--roles", "read", "--sites", "*"],
            "a client id is 1 to 64",
        ),
        (
            ["--client", "c", "--roles", "admin", "--sites", "*"],
            "unknown role \"admin\"",
        ),
        (
            ["--client", "c", "--roles", "read", "--sites", "S1"],
            "\"S1\" is not a site id",
        ),
    ];
    for (args, expected) in cases {
        let out = keys_new(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: no key printed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.trim_end().lines().count() == 1 && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
}

//! The `mediflow` binary's help: every subcommand documents every flag, each with an example.
//! (Its runs against a live service are in `tests/integration/cli.rs`, which starts `handler`.)

use std::process::Command;

#[test]
fn every_subcommand_documents_its_flags_with_examples() {
    for (subcommand, flags) in [
        (
            "submit",
            &[
                "--url",
                "--api-key-file",
                "--format",
                "--queue-url",
                "--credential",
                "--quiet",
                "--wait",
                "--client",
                "MEDIFLOW_URL",
                "MEDIFLOW_API_KEY_FILE",
                "MEDIFLOW_CLIENT",
            ][..],
        ),
        ("get", &["--url", "--api-key-file", "--table"][..]),
        ("batch", &["--url", "--api-key-file", "--table"][..]),
        (
            "list",
            &[
                "--site",
                "--from",
                "--to",
                "--limit",
                "--url",
                "--api-key-file",
                "--table",
            ][..],
        ),
        (
            "review",
            &[
                "--status",
                "--reason",
                "--if-match",
                "--url",
                "--api-key-file",
                "--table",
            ][..],
        ),
        (
            "audit",
            &[
                "--from",
                "--to",
                "--client",
                "--record",
                "--limit",
                "--url",
                "--api-key-file",
                "--table",
            ][..],
        ),
        ("history", &["--url", "--api-key-file", "--table"][..]),
        (
            "keys new",
            &["--client", "--roles", "--sites", "shown once"][..],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mediflow"))
            .args(subcommand.split(' '))
            .arg("--help")
            .output()
            .expect("run mediflow");
        assert!(out.status.success(), "{subcommand} --help");
        let help = String::from_utf8(out.stdout).expect("utf-8");
        assert!(help.contains("Example"), "{subcommand}: examples");
        for flag in flags {
            assert!(help.contains(flag), "{subcommand} --help documents {flag}");
        }
        let documented_flags = flags.iter().filter(|f| f.starts_with("--")).count();
        assert!(
            help.matches("e.g.").count() >= documented_flags,
            "{subcommand}: an example per flag:\n{help}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mediflow"))
        .output()
        .expect("run mediflow");
    assert_eq!(
        out.status.code(),
        Some(2),
        "no subcommand: clap's usage error"
    );
}

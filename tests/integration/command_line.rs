//! The `handler` command line as a process: help on every command exits 0, anything unknown
//! exits 2 (clap's usage error), and neither ever starts a server. With no arguments it serves:
//! every other test (and the Functions host) starts it that way.

use std::process::Command;
use std::time::Duration;

use crate::support::{binary, run_to_end};

/// The binary with `args`, in an environment that would serve on a free port if it started.
fn handler(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| k == "PATH"))
        .env("MEDIFLOW_ADDR", "127.0.0.1:0")
        .env("MEDIFLOW_DATA_DIR", "/nonexistent/mediflow-help-test")
        .env("LOG_FORMAT", "json");
    command
}

#[tokio::test]
async fn help_exits_0_and_unknown_arguments_exit_2_without_starting_a_server() {
    let cases: [(&[&str], i32, &str); 12] = [
        (&["--help"], 0, "help lists the subcommands"),
        (&["serve", "--help"], 0, "help for the default command"),
        (&["redrive", "--help"], 0, "help for redrive"),
        (&["store", "--help"], 0, "help for the store commands"),
        (&["store", "check", "--help"], 0, "help for store check"),
        (&["audit", "verify", "--help"], 0, "help for audit verify"),
        (&["bogus"], 2, "an unknown subcommand"),
        (&["--bogus"], 2, "an unknown flag"),
        (&["serve", "--port", "1"], 2, "an unknown flag of serve"),
        (&["redrive", "--mark"], 2, "a misspelt flag of redrive"),
        (&["store"], 2, "store without its subcommand"),
        (
            &["audit", "verify", "--all"],
            2,
            "an unknown flag of audit verify",
        ),
    ];
    for (args, code, proves) in cases {
        // A server would never end on its own: run_to_end fails the test if it is still running.
        let finished = run_to_end(&mut handler(args), Duration::from_secs(20)).await;
        let output = [finished.stdout.join("\n"), finished.stderr.join("\n")].join("\n");
        assert_eq!(finished.status.code(), Some(code), "{proves}: {output}");
        assert!(
            !output.contains("listening"),
            "{proves}: no server started: {output}"
        );
        if code == 0 {
            assert!(
                finished.stdout.join("\n").contains("Usage: handler"),
                "{proves}: help on stdout: {output}"
            );
        } else {
            assert!(
                finished.stderr.join("\n").contains("Usage: handler"),
                "{proves}: the usage on stderr: {output}"
            );
        }
    }
    let help = run_to_end(&mut handler(&["--help"]), Duration::from_secs(20)).await;
    let help = help.stdout.join("\n");
    for subcommand in ["serve", "redrive", "store", "audit"] {
        assert!(
            help.contains(subcommand),
            "--help lists {subcommand}: {help}"
        );
    }
}

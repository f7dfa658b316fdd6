//! The `handler` command line (clap): one enum of subcommands, each run by a function of its own
//! module. `handler` with no subcommand is `handler serve`, which is how the Functions host and
//! the tests start it. `--help` prints help and exits 0; an unknown argument exits 2 before
//! anything starts.
//!
//! A new subcommand is a variant of [`Command`] and its arm in [`Command::run`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

pub mod audit;
pub mod redrive;
pub mod serve;
pub mod store;

/// MediFlow clinical-trial record ingestion: an Azure Functions custom handler that also runs
/// standalone. Configured from the environment only (docs/operations-contract.md).
#[derive(Debug, Parser)]
#[command(name = "handler", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// The subcommand given, or [`Command::Serve`] when there is none.
    pub fn command_or_serve(self) -> Command {
        self.command.unwrap_or(Command::Serve)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP (and, standalone, the batch queue) until SIGTERM or Ctrl-C. The default.
    Serve,
    /// Move every poison batch message back to the batch queue, then exit.
    Redrive {
        /// Mark the batch of every poison message `failed` instead, moving nothing.
        #[arg(long)]
        mark_failed: bool,
    },
    /// The embedded store's journal in MEDIFLOW_DATA_DIR.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

impl Command {
    /// Runs the command to its end; the process exits with what it returns.
    pub async fn run(self) -> ExitCode {
        let config = match Config::from_env() {
            Ok(config) => config,
            Err(err) => {
                eprintln!("handler: {err}");
                return ExitCode::from(2);
            }
        };
        match self {
            Self::Serve => serve::run(config).await,
            Self::Redrive { mark_failed } => redrive::run(&config, mark_failed).await,
            Self::Store(command) => command.run(&config),
            Self::Audit(command) => command.run(&config).await,
        }
    }
}

/// A command that cannot go on: the error in the log (for the log pipeline) and on stderr (for
/// whoever started the process: a terminal, the Functions host, a pod's last state), exit 1.
pub(crate) fn fail(what: &str, err: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!(error = %err, "{what}");
    eprintln!("handler: {what}: {err}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        <Cli as CommandFactory>::command().debug_assert();
    }

    /// What each command line parses to; clap's own errors (help, unknown arguments) are
    /// exercised on the real binary in tests/integration/cli.rs.
    #[test]
    fn each_command_line_parses_to_its_command() {
        let cases: [(&[&str], &str, &str); 7] = [
            (
                &[],
                "Serve",
                "no subcommand serves, as the Functions host starts it",
            ),
            (&["serve"], "Serve", "serve by name"),
            (
                &["redrive"],
                "Redrive { mark_failed: false }",
                "redrive moves",
            ),
            (
                &["redrive", "--mark-failed"],
                "Redrive { mark_failed: true }",
                "--mark-failed marks instead",
            ),
            (&["store", "check"], "Store(Check)", "store check"),
            (&["store", "salvage"], "Store(Salvage)", "store salvage"),
            (&["audit", "verify"], "Audit(Verify)", "audit verify"),
        ];
        for (args, expected, proves) in cases {
            let cli = Cli::try_parse_from(std::iter::once("handler").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{proves}: {e}"));
            assert_eq!(
                format!("{:?}", cli.command_or_serve()),
                expected,
                "{proves}"
            );
        }
    }

    /// Anything clap does not know is an error, never the default command.
    #[test]
    fn unknown_arguments_are_errors() {
        for args in [
            &["bogus"][..],
            &["--bogus"],
            &["serve", "extra"],
            &["redrive", "--mark"],
            &["store"],
            &["store", "fix"],
            &["audit"],
            &["audit", "verify", "--all"],
        ] {
            let parsed =
                Cli::try_parse_from(std::iter::once("handler").chain(args.iter().copied()));
            assert!(parsed.is_err(), "{args:?} parsed as {parsed:?}");
        }
    }
}

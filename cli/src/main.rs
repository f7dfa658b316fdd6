//! The `mediflow` binary: parse the command line, run it, exit with its code (see `mediflow --help`).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    mediflow_cli::run(mediflow_cli::Cli::parse()).await
}

//! `handler`: parses the command line and runs the command (`handler::commands`). With no
//! subcommand it serves, as the Functions host starts it; `handler --help` lists the rest.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    handler::commands::Cli::parse()
        .command_or_serve()
        .run()
        .await
}

//! `handler audit verify`: walks every audit chain; exit 0 when every chain is intact, 1 naming
//! the first broken event (or when the store cannot be read).

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every chain of the audit trail; exit 1 naming the first broken event.
    Verify,
}

impl AuditCommand {
    pub async fn run(self, config: &Config) -> ExitCode {
        let _log_guard = crate::telemetry::init(config.json_logs);
        match self {
            Self::Verify => verify(config).await,
        }
    }
}

async fn verify(config: &Config) -> ExitCode {
    match crate::server::verify_audit(config).await {
        Ok(Ok(verified)) => {
            let chains: Vec<String> = verified
                .chains
                .iter()
                .map(|(chain, last)| format!("{chain} (1..={last})"))
                .collect();
            // A closed stdout loses the report, never the exit code.
            let _ = writeln!(
                std::io::stdout().lock(),
                "audit trail intact: {} events in {} chain(s): {}",
                verified.events,
                verified.chains.len(),
                chains.join(", ")
            );
            ExitCode::SUCCESS
        }
        Ok(Err(broken)) => {
            eprintln!("handler: {broken}");
            ExitCode::FAILURE
        }
        Err(err) => super::fail("cannot verify the audit trail", &err),
    }
}

//! `handler audit verify`: walks every audit chain; exit 0 when every chain is intact, 1 naming
//! the first broken event (or when the store cannot be read).

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::server::StartError;

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
    match verify_audit(config).await {
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

/// `handler audit verify`: opens the configured store (the embedded one only while no service
/// holds it; Cosmos while the service runs) and checks every audit chain from its first event.
/// `Ok(Ok(..))`: intact; `Ok(Err(broken))`: the first broken event.
async fn verify_audit(
    config: &Config,
) -> Result<Result<crate::service::audit::Verified, crate::domain::audit::BrokenChain>, StartError>
{
    let store = crate::server::open_store_once(config).await?;
    crate::service::audit::verify(store.as_ref())
        .await
        .map_err(|e| StartError::StoreFailed(e.to_string()))
}

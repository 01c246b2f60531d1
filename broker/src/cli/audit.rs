//! `mooring-broker audit verify --config FILE`: checks the audit chain of the configured
//! store: a stopped broker's sled store, or the PostgreSQL database of running replicas
//! (a running broker also answers `POST /v1/admin/audit/verify`).

use std::path::PathBuf;

use clap::Subcommand;
use mooring_serve::ConfigFile as _;

use super::Failure;
use crate::audit::verify_chain;
use crate::config::Config;
use crate::store;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain: detects a modified, removed or truncated record.
    Verify {
        /// The broker configuration (its store is opened; with sled, stop the broker first).
        #[arg(long)]
        config: PathBuf,
    },
}

pub(crate) fn run(command: &AuditCommand) -> Result<String, Failure> {
    let AuditCommand::Verify { config } = command;
    let config = Config::load(config).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let backend = store::open(&config).map_err(|e| {
        Failure::Usage(format!("cannot open the store (with sled: is the broker running?): {e}"))
    })?;
    let store = backend.store;
    let head = store.audit_head().map_err(|e| Failure::Usage(e.to_string()))?;
    let report =
        verify_chain(store.audit_scan(head.seq), head).map_err(|e| Failure::Rejected(e.to_string()))?;
    Ok(format!("audit log intact: {} records, head {}", report.records, report.head))
}

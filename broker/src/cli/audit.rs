//! `mooring-broker audit verify --config FILE`: checks the audit chain of a stopped
//! broker's store (a running broker answers `POST /v1/admin/audit/verify`).

use std::path::PathBuf;

use clap::Subcommand;

use super::Failure;
use crate::audit::verify_chain;
use crate::config::{Config, StoreKind};
use crate::store::{SledStore, Store};

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain: detects a modified, removed or truncated record.
    Verify {
        /// The broker configuration (its store is opened; stop the broker first).
        #[arg(long)]
        config: PathBuf,
    },
}

pub(crate) fn run(command: &AuditCommand) -> Result<String, Failure> {
    let AuditCommand::Verify { config } = command;
    let config = Config::load(config).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let store = match config.store {
        StoreKind::Sled => SledStore::open(&config.data_dir.join("store"))
            .map_err(|e| Failure::Usage(format!("cannot open the store (is the broker running?): {e}")))?,
    };
    let head = store.audit_head().map_err(|e| Failure::Usage(e.to_string()))?;
    let report = verify_chain(store.audit_scan(), head).map_err(|e| Failure::Rejected(e.to_string()))?;
    Ok(format!("audit log intact: {} records, head {}", report.records, report.head))
}

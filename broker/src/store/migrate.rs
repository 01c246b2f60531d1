//! Moving the embedded store into PostgreSQL (`mooring-broker store migrate`): identities
//! (enrolled and blocked), VM records, credentials, revocations, the audit chain and the
//! signing keys still in the bundle. The source chain is verified before anything is
//! written; the target is filled in one transaction that verifies the chain it wrote
//! before committing, and the chain is verified once more afterwards, as any replica
//! reads it. Records are copied as stored (the JSON each was checked to read as), so the
//! chain's hashes and head are the same on both sides.

use super::postgres::ImportError;
use super::sled::Table;
use super::{KeyVault, PgStore, SledStore, Store, StoreError};
use crate::audit::{verify_chain, ChainError, ChainReport};

/// Records written per statement.
const CHUNK: usize = 1000;

/// What was moved.
#[derive(Debug)]
pub(crate) struct Moved {
    /// Records per kind, in [`Table::ALL`] order.
    pub(crate) records: Vec<(&'static str, usize)>,
    /// Signing key generations.
    pub(crate) key_generations: usize,
    /// The chain, verified in the target after the commit.
    pub(crate) chain: ChainReport,
}

/// Why a move stopped (nothing was committed unless the check after the commit failed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MigrateError {
    #[error("the source store: {0}")]
    Source(StoreError),
    #[error("the source's audit chain does not verify, nothing was moved: {0}")]
    SourceChain(ChainError),
    #[error("the target database: {0}")]
    Target(#[from] ImportError),
    #[error("after the commit, the target's chain does not read back as the source's: {0}")]
    Mismatch(String),
}

/// Moves everything in `source` (with its signing keys in `source_keys`) into `target`,
/// which must be empty.
pub(crate) fn sled_to_postgres(
    source: &SledStore,
    source_keys: &dyn KeyVault,
    target: &PgStore,
    now: i64,
) -> Result<Moved, MigrateError> {
    let head = source.audit_head().map_err(MigrateError::Source)?;
    let before = verify_chain(source.audit_scan(head.seq), head).map_err(MigrateError::SourceChain)?;
    let generations = source_keys.signing_keys(now).map_err(MigrateError::Source)?;
    let mut import = target.import()?;
    let mut records = Vec::new();
    for table in Table::ALL {
        let mut count = 0;
        let mut chunk = Vec::with_capacity(CHUNK);
        for row in source.export(table) {
            chunk.push(row.map_err(MigrateError::Source)?);
            if chunk.len() == CHUNK {
                import.rows(table, &chunk).map_err(ImportError::from)?;
                count += chunk.len();
                chunk.clear();
            }
        }
        import.rows(table, &chunk).map_err(ImportError::from)?;
        records.push((table.name(), count + chunk.len()));
    }
    for keys in &generations {
        import.signing_keys(keys).map_err(ImportError::from)?;
    }
    let written = import.commit(head)?;
    let stored = target.audit_head().map_err(|e| MigrateError::Mismatch(e.to_string()))?;
    let chain = verify_chain(target.audit_scan(stored.seq), stored)
        .map_err(|e| MigrateError::Mismatch(e.to_string()))?;
    if stored != head || chain.records != before.records || written.records != before.records {
        return Err(MigrateError::Mismatch(format!(
            "source: {} records to head {}; target: {} records to head {}",
            before.records, head.seq, chain.records, stored.seq
        )));
    }
    Ok(Moved { records, key_generations: generations.len(), chain })
}

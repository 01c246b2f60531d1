//! Filling an empty database from another store (`mooring-broker store migrate`): one
//! transaction, every table locked from the check that the database is empty to the
//! commit, the chain verified against its head inside the transaction before it commits.
//! A database that already holds anything (a replica that started on it made a signing
//! key generation) is refused; an import that fails or is dropped commits nothing.

use super::audit::{self, to_i64};
use super::connection::Connection;
use super::{failed, keys, read, PgStore, Pooled};
use crate::audit::{verify_chain, ChainError, ChainHead, ChainReport};
use crate::store::sled::Table;
use crate::store::{StoreError, StoredKeys};

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the database is not empty ({0}): migrate into a new database, before any replica starts on it")]
    NotEmpty(String),
    #[error("the chain written does not verify, nothing was committed: {0}")]
    Chain(#[from] ChainError),
}

/// An import in progress; dropped without [`Import::commit`], it leaves nothing.
pub(crate) struct Import<'a> {
    store: &'a PgStore,
    connection: Pooled,
    committed: bool,
}

impl std::fmt::Debug for Import<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Import").field("committed", &self.committed).finish_non_exhaustive()
    }
}

/// Tables whose rows must all be absent, and what the head must say.
const EMPTY: &str = "SELECT 'identities', count(*) FROM identities UNION ALL SELECT 'vms', count(*) FROM vms
    UNION ALL SELECT 'credentials', count(*) FROM credentials UNION ALL SELECT 'revocations', count(*) FROM revocations
    UNION ALL SELECT 'audit records', count(*) FROM audit UNION ALL SELECT 'signing key generations', count(*) FROM signing_keys
    UNION ALL SELECT 'audit head', seq FROM audit_head";

impl PgStore {
    /// Starts an import into this database, which must be empty.
    pub(crate) fn import(&self) -> Result<Import<'_>, ImportError> {
        let mut connection = self.client()?;
        connection
            .client()
            .batch_execute(
                // The import reads the source store between statements, and may wait for
                // replicas that are (wrongly) running: neither timeout of the broker's
                // sessions applies to it.
                "BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL lock_timeout = 0; \
                 LOCK TABLE identities, vms, credentials, revocations, audit, audit_head, signing_keys \
                 IN EXCLUSIVE MODE",
            )
            .map_err(failed("locking the tables"))?;
        let mut import = Import { store: self, connection, committed: false };
        let mut held = Vec::new();
        let rows =
            import.connection.query(EMPTY, &[]).map_err(failed("checking that the database is empty"))?;
        for row in &rows {
            let what: String = read(row, 0, "table")?;
            let count: i64 = read(row, 1, "count")?;
            if count != 0 {
                held.push(format!("{what}: {count}"));
            }
        }
        if !held.is_empty() {
            return Err(ImportError::NotEmpty(held.join(", ")));
        }
        Ok(import)
    }
}

impl Import<'_> {
    /// Adds `rows` (key, JSON text as exported) to `table`.
    pub(crate) fn rows(&mut self, table: Table, rows: &[(String, String)]) -> Result<(), StoreError> {
        let keys: Vec<&str> = rows.iter().map(|(key, _)| key.as_str()).collect();
        let values: Vec<&str> = rows.iter().map(|(_, value)| value.as_str()).collect();
        let sql = match table {
            Table::Identities => {
                "INSERT INTO identities (key, status) SELECT * FROM unnest($1::text[], $2::text[])"
            }
            Table::Vms => "INSERT INTO vms (key, record) SELECT * FROM unnest($1::text[], $2::text[])",
            Table::Credentials => {
                "INSERT INTO credentials (serial, record) SELECT * FROM unnest($1::text[], $2::text[])"
            }
            Table::Revocations => {
                "INSERT INTO revocations (key, record) SELECT * FROM unnest($1::text[], $2::text[])"
            }
            Table::Audit => "INSERT INTO audit (seq, record) SELECT * FROM unnest($1::bigint[], $2::text[])",
        };
        let connection: &mut Connection = &mut self.connection;
        let written = if table == Table::Audit {
            let seqs = keys
                .iter()
                .map(|key| {
                    key.parse::<u64>()
                        .map_err(|_| StoreError::Corrupt {
                            key: (*key).to_owned(),
                            reason: "not a sequence number".into(),
                        })
                        .and_then(|seq| to_i64(seq, "audit sequence"))
                })
                .collect::<Result<Vec<i64>, StoreError>>()?;
            connection.execute(sql, &[&seqs, &values])
        } else {
            connection.execute(sql, &[&keys, &values])
        };
        written.map(drop).map_err(failed("writing imported records"))
    }

    /// Adds a signing key generation, sealed under this database's key-encryption key.
    pub(crate) fn signing_keys(&mut self, stored: &StoredKeys) -> Result<(), StoreError> {
        keys::insert(self.connection.client(), &self.store.kek, stored)
    }

    /// Sets the chain head, verifies the chain written against it, and commits.
    pub(crate) fn commit(mut self, head: ChainHead) -> Result<ChainReport, ImportError> {
        let seq = to_i64(head.seq, "audit sequence")?;
        self.connection
            .execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", &[&seq, &head.hash.as_slice()])
            .map_err(failed("setting the audit head"))?;
        let connection: &mut Connection = &mut self.connection;
        let fetch = |after, through| audit::page(connection, after, through, audit::PAGE);
        let report = verify_chain(audit::Scan::new(fetch, head.seq), head)?;
        self.connection.client().batch_execute("COMMIT").map_err(failed("committing the import"))?;
        self.committed = true;
        Ok(report)
    }
}

impl Drop for Import<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.connection.client().batch_execute("ROLLBACK");
        }
    }
}

//! `Store` on PostgreSQL: one database shared by several broker replicas.
//!
//! Everything a decision needs is read from the database on each request (nothing is
//! cached per replica), so a challenge begun on one replica finishes on another and a
//! revocation or block made on one is in force on all of them as soon as it is answered.
//!
//! - Challenges are sealed into their ids under a key derived from the key-encryption key
//!   every replica holds, so `begin` writes nothing and any replica opens them. Single use:
//!   `use_once` is one `INSERT ... ON CONFLICT DO NOTHING` into `used_challenges`;
//!   the primary key makes the database, not timing, let exactly one of any number of
//!   concurrent finishes (on any replicas) through.
//! - Audit: one hash chain for all replicas, see [`audit`].
//! - Signing keys: in the database, encrypted, see [`keys`].
//!
//! Crash guarantee: every write the guarantee of [`crate::store`] depends on is a
//! transaction committed with `synchronous_commit = on` (set on each connection, whatever
//! the server's default), so when the call returns the server has flushed it to its
//! write-ahead log: it survives the broker replica being killed at any point (an
//! interrupted transaction is rolled back whole: no credential without its audit record,
//! no audit record without its decision), and, with the server's `fsync = on`, a crash or
//! power loss of the database host. The one relaxed write is the audit record of an
//! accepted verification (the high-volume case), committed asynchronously: a database
//! crash may lose the last few of those (never a record before one that was kept: the
//! log is written in order), a replica crash loses none.
//!
//! The connection is plain (no TLS in the client): use a Unix socket or a host-local or
//! otherwise protected link to the database, e.g. through a TLS tunnel.

mod audit;
mod keys;
mod schema;

use std::path::Path;
use std::time::Duration;

use mooring_attestation::protocol::{HardwareId, IdentityStatus, Revocation};
use postgres::types::FromSql;
use postgres::{NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;

use self::keys::KeyEncryptionKey;
use super::codec::{decode, encode};
use super::{Consumed, Durable, Keyed as _, Store, StoreError};
use crate::audit::{Action, AuditEvent, AuditRecord, ChainError, ChainHead, Outcome};
use crate::config::PostgresConfig;
use crate::records::{CredentialRecord, VmRecord};

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Connection = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// How long a request waits for a pooled connection, and a new connection for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL-backed store.
pub(crate) struct PgStore {
    pool: Pool,
    kek: KeyEncryptionKey,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("connections", &self.pool.state().connections).finish_non_exhaustive()
    }
}

/// Maps a database error to a store error naming what was being done.
fn failed(what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{what}: {e}"))
}

/// A column of a row, or a `Corrupt` error naming it.
fn read<'a, T: FromSql<'a>>(row: &'a Row, index: usize, what: &str) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| StoreError::Corrupt { key: what.to_owned(), reason: e.to_string() })
}

/// A secret file's content; refused when others may read it. Never echoes the content.
fn read_secret_file(path: &Path, setting: &str) -> Result<String, StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let unreadable = |e: std::io::Error| StoreError::Config(format!("{setting} {}: {e}", path.display()));
    let mode = std::fs::metadata(path).map_err(unreadable)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::Config(format!(
            "{setting} {} is open to other users (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        )));
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

impl PgStore {
    /// The key challenges are sealed with, the same on every replica.
    pub(crate) fn challenge_key(&self) -> [u8; 32] {
        self.kek.challenge_key()
    }

    /// Connects (a pool of at most `pool_size` connections) and brings the schema up to
    /// date.
    pub(crate) fn connect(settings: &PostgresConfig) -> Result<Self, StoreError> {
        let mut config: postgres::Config = settings
            .url
            .parse()
            .map_err(|e| StoreError::Config(format!("postgres.url is not a connection string: {e}")))?;
        if config.get_password().is_some() {
            return Err(StoreError::Config(
                "postgres.url holds a password: move it to postgres.password_file or password_env".into(),
            ));
        }
        if let Some(path) = &settings.password_file {
            let text = read_secret_file(path, "postgres.password_file")?;
            config.password(text.lines().next().unwrap_or_default());
        } else if let Some(variable) = &settings.password_env {
            let password = std::env::var(variable).map_err(|_| {
                StoreError::Config(format!("postgres.password_env: ${variable} is not set (or not UTF-8)"))
            })?;
            config.password(password);
        }
        // Durability must not depend on the server's default.
        let options = match config.get_options() {
            Some(options) => format!("{options} -c synchronous_commit=on"),
            None => "-c synchronous_commit=on".to_owned(),
        };
        config.options(&options);
        config.application_name("mooring-broker");
        config.connect_timeout(CONNECT_TIMEOUT);
        let kek = KeyEncryptionKey::load(&settings.key_encryption_key_file)?;
        // One connection first: it says at once why the server refuses (the pool would
        // retry until its timeout), and it migrates the schema.
        let mut first = config
            .connect(NoTls)
            .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
        schema::migrate(&mut first)?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .build(PostgresConnectionManager::new(config, NoTls))
            .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
        Ok(Self { pool, kek })
    }

    fn client(&self) -> Result<Connection, StoreError> {
        self.pool.get().map_err(|e| StoreError::Backend(format!("no database connection: {e}")))
    }

    /// Runs `write` and appends `event` to the audit chain in one transaction.
    fn audited(
        &self,
        event: &AuditEvent,
        write: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(failed("starting a transaction"))?;
        write(&mut tx)?;
        audit::append(&mut tx, event)?;
        tx.commit().map_err(failed("committing"))
    }

    /// One record column by key.
    fn record<T: serde::de::DeserializeOwned>(&self, sql: &str, key: &str) -> Result<Option<T>, StoreError> {
        let row = self.client()?.query_opt(sql, &[&key]).map_err(failed("reading a record"))?;
        row.map(|row| {
            let text: String = read(&row, 0, key)?;
            decode(key.as_bytes(), text.as_bytes())
        })
        .transpose()
    }

    /// Every record of a query, in its order.
    fn records<T: serde::de::DeserializeOwned>(&self, sql: &str, what: &str) -> Result<Vec<T>, StoreError> {
        let rows = self.client()?.query(sql, &[]).map_err(failed("reading records"))?;
        rows.iter()
            .map(|row| {
                let text: String = read(row, 0, what)?;
                decode(what.as_bytes(), text.as_bytes())
            })
            .collect()
    }
}

impl Store for PgStore {
    fn use_once(&self, id: &str, expires_at: i64) -> Result<Consumed, StoreError> {
        let inserted = self
            .client()?
            .execute(
                "INSERT INTO used_challenges (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                &[&id, &expires_at],
            )
            .map_err(failed("consuming a challenge"))?;
        Ok(if inserted == 1 { Consumed::First } else { Consumed::AlreadyUsed })
    }

    fn prune_used(&self, before: i64) -> Result<usize, StoreError> {
        let pruned = self
            .client()?
            .execute("DELETE FROM used_challenges WHERE expires_at < $1", &[&before])
            .map_err(failed("pruning challenges"))?;
        Ok(usize::try_from(pruned).unwrap_or(usize::MAX))
    }

    fn identity_status(&self, id: &HardwareId) -> Result<Option<IdentityStatus>, StoreError> {
        self.record("SELECT status FROM identities WHERE key = $1", &id.key())
    }

    fn set_identity_status(
        &self,
        id: &HardwareId,
        status: IdentityStatus,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let value = encode(&status)?;
        self.audited(&audit, |tx| {
            tx.execute(
                "INSERT INTO identities (key, status) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET status = excluded.status",
                &[&id.key(), &value],
            )
            .map_err(failed("writing an identity status"))?;
            Ok(())
        })
    }

    fn issue(&self, credential: &CredentialRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let credential_value = encode(credential)?;
        let vm_key = super::credential_vm_key(credential);
        self.audited(&audit, |tx| {
            // The VM's record follows its previous one (live credentials of the same boot),
            // read under a row lock so two replicas issuing at once do not lose one.
            let previous = tx
                .query_opt("SELECT record FROM vms WHERE key = $1 FOR UPDATE", &[&vm_key])
                .map_err(failed("reading a VM"))?
                .map(|row| -> Result<VmRecord, StoreError> {
                    let text: String = read(&row, 0, "vms.record")?;
                    decode(vm_key.as_bytes(), text.as_bytes())
                })
                .transpose()?;
            let vm_value = encode(&VmRecord::issued(previous.as_ref(), credential))?;
            tx.execute(
                "INSERT INTO credentials (serial, record) VALUES ($1, $2)
                 ON CONFLICT (serial) DO UPDATE SET record = excluded.record",
                &[&credential.serial, &credential_value],
            )
            .map_err(failed("writing a credential"))?;
            tx.execute(
                "INSERT INTO vms (key, record) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET record = excluded.record",
                &[&vm_key, &vm_value],
            )
            .map_err(failed("writing a VM"))?;
            Ok(())
        })
    }

    fn credential(&self, serial: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.record("SELECT record FROM credentials WHERE serial = $1", serial)
    }

    fn vm(&self, key: &str) -> Result<Option<VmRecord>, StoreError> {
        self.record("SELECT record FROM vms WHERE key = $1", key)
    }

    fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        let relaxed = event.outcome == Outcome::Accepted && event.action == Action::Verify;
        self.audited(&event, |tx| {
            if relaxed {
                tx.batch_execute("SET LOCAL synchronous_commit = off")
                    .map_err(failed("relaxing the commit of a verification record"))?;
            }
            Ok(())
        })
    }

    fn durable(&self) -> Durable {
        // Every write committed before it returned.
        Box::pin(std::future::ready(Ok(())))
    }

    fn revoke(&self, revocation: &Revocation, audit: AuditEvent) -> Result<(), StoreError> {
        let value = encode(revocation)?;
        self.audited(&audit, |tx| {
            tx.execute(
                "INSERT INTO revocations (key, record) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET record = excluded.record",
                &[&revocation.target.key(), &value],
            )
            .map_err(failed("writing a revocation"))?;
            Ok(())
        })
    }

    fn revocation_for(&self, serial: &str, spiffe_id: &str) -> Result<Option<Revocation>, StoreError> {
        for key in super::revocation_keys_naming(serial, spiffe_id) {
            if let Some(revocation) = self.record("SELECT record FROM revocations WHERE key = $1", &key)? {
                return Ok(Some(revocation));
            }
        }
        Ok(None)
    }

    fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.records("SELECT record FROM revocations ORDER BY key", "revocations")
    }

    fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let vms: Vec<VmRecord> = self.records("SELECT record FROM vms ORDER BY key", "vms")?;
        vms.into_iter().map(|vm| super::with_admin_state(vm, self)).collect()
    }

    fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        audit::records(&mut *self.client()?, after, limit)
    }

    fn audit_scan(&self, through: u64) -> Box<dyn Iterator<Item = Result<AuditRecord, ChainError>> + '_> {
        Box::new(audit::Scan::new(self, through))
    }

    fn audit_head(&self) -> Result<ChainHead, StoreError> {
        audit::head(&mut *self.client()?)
    }
}

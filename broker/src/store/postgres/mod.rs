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
//! - Audited writes (credentials, blocks, revocations, every decision's record) are
//!   committed in groups, one transaction per group ([`writer`]); a caller's answer waits
//!   for its group's commit ([`Store::durable`]). Reads and single-use marks go straight
//!   to a pool of connections, each with its statements prepared once.
//!
//! Crash guarantee: every write the guarantee of [`crate::store`] depends on is a
//! transaction committed with `synchronous_commit = on` (set on each connection, whatever
//! the server's default): a challenge's mark before `use_once` returns, a decision with its
//! audit record before `durable` resolves. It survives the broker replica being killed at
//! any point (an interrupted transaction is rolled back whole: no credential without its
//! audit record, no audit record without its decision), and, with the server's
//! `fsync = on`, a crash or power loss of the database host. The one relaxed write is the
//! audit record of an accepted verification (the high-volume case), committed
//! asynchronously when a group holds nothing else: a database crash may lose the last few
//! of those (never a record before one that was kept: the log is written in order), a
//! replica crash loses none.
//!
//! The connection is protected by TLS with the server's certificate verified ([`tls`]),
//! or is a Unix socket or loopback address, or a link the operator vouched for
//! (`allow_plaintext`).

mod audit;
mod connection;
mod import;
mod keys;
mod schema;
mod settings;
mod tls;
mod writer;

use mooring_attestation::protocol::{HardwareId, IdentityStatus, Revocation};
use postgres::types::FromSql;
use postgres::Row;

use self::connection::{Connector, CONNECT_TIMEOUT};
use self::keys::KeyEncryptionKey;
use self::writer::{Effect, Job, Writer};
use super::codec::{decode, encode};
use super::group::{Group, WriteMark};
use super::{Consumed, Durable, Keyed as _, Standing, Store, StoreError};
use crate::audit::{Action, AuditEvent, AuditRecord, ChainError, ChainHead, Outcome};
use crate::config::PostgresConfig;
use crate::records::{CredentialRecord, VmRecord};

/// Writes waiting for a replica's next group commit past which it takes no new request
/// ([`Store::accepting`]). A database that stalls holds a group's writes while requests
/// that time out leave theirs queued; this bounds them (about 1 KB each; in a boot storm
/// of 1,000 concurrent VMs fewer than 1,000 wait).
const WAITING_AT_MOST: usize = 16_384;

type Pool = r2d2::Pool<Connector>;
type Pooled = r2d2::PooledConnection<Connector>;

pub(crate) use self::import::ImportError;

/// The PostgreSQL-backed store.
pub(crate) struct PgStore {
    pool: Pool,
    kek: KeyEncryptionKey,
    /// This replica's group commit of audited writes.
    writer: Group<Job>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("connections", &self.pool.state().connections).finish_non_exhaustive()
    }
}

/// Maps a database error to a store error naming what was being done.
fn failed(what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{what}: {}", connection::describe(&e)))
}

/// A column of a row, or a `Corrupt` error naming it.
fn read<'a, T: FromSql<'a>>(row: &'a Row, index: usize, what: &str) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| StoreError::Corrupt { key: what.to_owned(), reason: e.to_string() })
}

impl PgStore {
    /// The key challenges are sealed with, the same on every replica.
    pub(crate) fn challenge_key(&self) -> [u8; 32] {
        self.kek.challenge_key()
    }

    /// Connects (a pool of at most `pool_size` connections, and the writer's own) and
    /// brings the schema up to date.
    pub(crate) fn connect(settings: &PostgresConfig) -> Result<Self, StoreError> {
        let connector = settings::connector(settings)?;
        let kek = KeyEncryptionKey::load(&settings.key_encryption_key_file)?;
        // One connection first: it says at once why the server refuses (the pool would
        // retry until its timeout), and it migrates the schema.
        let mut first = connector.open_for("migrating the schema")?;
        schema::migrate(first.client())?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            // A broken connection fails its request and leaves the pool on return; testing
            // each one at checkout would cost a round trip per request.
            .test_on_check_out(false)
            .build(connector.clone())
            .map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {e}")))?;
        let mut writer = Writer::new(connector)?;
        let writer = Group::start("store-commit", Box::new(move |jobs| writer.pass(jobs)))?;
        Ok(Self { pool, kek, writer })
    }

    /// Group commits this replica has made.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.writer.passes()
    }

    fn client(&self) -> Result<Pooled, StoreError> {
        self.pool.get().map_err(|e| StoreError::Backend(format!("no database connection: {e}")))
    }

    /// Queues `effect` with its audit record for this replica's next group commit.
    fn audited(&self, effect: Effect, event: AuditEvent) -> Result<(), StoreError> {
        self.writer.submit(Job { effect, event, relaxed: false });
        Ok(())
    }

    /// One record column by key.
    fn record<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let row = self.client()?.query_opt(sql, &[&key]).map_err(failed("reading a record"))?;
        row.map(|row| {
            let text: String = read(&row, 0, key)?;
            decode(key.as_bytes(), text.as_bytes())
        })
        .transpose()
    }

    /// Every record of a query, in its order.
    fn records<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
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

    fn use_once_reading(
        &self,
        id: &str,
        expires_at: i64,
        ek: &HardwareId,
    ) -> Result<(Consumed, Standing), StoreError> {
        let key = ek.key();
        let row = self
            .client()?
            .query_one(
                "WITH used AS (
                    INSERT INTO used_challenges (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM used),
                        (SELECT status FROM identities WHERE key = $3),
                        (SELECT record FROM vms WHERE key = $3)",
                &[&id, &expires_at, &key],
            )
            .map_err(failed("consuming a challenge"))?;
        if !read::<bool>(&row, 0, "used_challenges")? {
            return Ok((Consumed::AlreadyUsed, Standing::default()));
        }
        let column =
            |index: usize, what: &str| -> Result<Option<String>, StoreError> { read(&row, index, what) };
        let status = column(1, "identities.status")?
            .map(|text| decode(key.as_bytes(), text.as_bytes()))
            .transpose()?;
        let vm = column(2, "vms.record")?.map(|text| decode(key.as_bytes(), text.as_bytes())).transpose()?;
        Ok((Consumed::First, Standing { status, vm }))
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
        self.audited(Effect::Identity { key: id.key(), status: encode(&status)? }, audit)
    }

    fn issue(&self, credential: &CredentialRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let effect = Effect::Issue {
            encoded: encode(credential)?,
            vm_key: super::credential_vm_key(credential),
            credential: Box::new(credential.clone()),
        };
        self.audited(effect, audit)
    }

    fn credential(&self, serial: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.record("SELECT record FROM credentials WHERE serial = $1", serial)
    }

    fn vm(&self, key: &str) -> Result<Option<VmRecord>, StoreError> {
        self.record("SELECT record FROM vms WHERE key = $1", key)
    }

    fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        let relaxed = event.outcome == Outcome::Accepted && event.action == Action::Verify;
        self.writer.submit(Job { effect: Effect::Record, event, relaxed });
        Ok(())
    }

    fn mark(&self) -> WriteMark {
        self.writer.mark()
    }

    fn accepting(&self) -> Result<(), StoreError> {
        let waiting = self.writer.waiting();
        if waiting >= WAITING_AT_MOST {
            return Err(StoreError::Busy(format!("{waiting} writes are waiting for the database")));
        }
        Ok(())
    }

    fn durable(&self, since: WriteMark) -> Durable {
        Box::pin(self.writer.durable(since))
    }

    fn revoke(&self, revocation: &Revocation, audit: AuditEvent) -> Result<(), StoreError> {
        self.audited(Effect::Revoke { key: revocation.target.key(), record: encode(revocation)? }, audit)
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
        let fetch = move |after, through| {
            self.client().and_then(|mut connection| audit::page(&mut connection, after, through, audit::PAGE))
        };
        Box::new(audit::Scan::new(fetch, through))
    }

    fn audit_head(&self) -> Result<ChainHead, StoreError> {
        audit::head(&mut *self.client()?)
    }
}

#[cfg(test)]
mod tests;

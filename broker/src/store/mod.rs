//! Everything the broker remembers, behind one trait so the embedded store (sled) and a
//! shared one (PostgreSQL, for several replicas) can serve the same service.
//!
//! Crash guarantee of every implementation: when `use_once` returns, no later
//! caller gets the challenge, also after a restart: either the mark is durable no later
//! than the record that decides the challenge (`issue`, or the refusal's audit record), or
//! no challenge survives a restart at all (sled keeps them in memory). The other writes
//! return once made (sled) or queued (PostgreSQL); they are durable once
//! [`Store::durable`], given a mark taken before them, resolves: after a flush (sled) or a
//! commit (PostgreSQL) that one thread runs for every caller waiting ([`group`]). `issue`
//! writes the credential record with its audit record, never without it (PostgreSQL
//! commits both or neither; sled writes the audit record first, so a failure or crash in
//! between leaves a record of a credential that was never answered). The service consumes
//! before it verifies, and the HTTP layer awaits `durable` after every service call before
//! it answers, so after a crash no challenge is accepted twice (a finish that was never
//! answered may be finished again) and no credential that left the broker lacks its audit
//! record; refusals and admin changes are durable before they are answered too. A write
//! that cannot be made durable fails the answer waiting for it (an internal error instead
//! of the credential or the refusal), and may fail the answers of writes made meanwhile by
//! other callers; nothing is answered ahead of its record. What "durable" survives
//! differs: see each backend's module documentation.
//!
//! The broker's signing keys live behind [`KeyVault`]: files in the data directory with
//! sled, the database with PostgreSQL, so every replica signs with the same keys.

mod challenges;
mod codec;
mod group;
mod key_files;
pub(crate) mod migrate;
mod postgres;
pub(crate) mod sled;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use mooring_attestation::protocol::{HardwareId, IdentityStatus, Revocation, RevocationTarget};

pub(crate) use self::group::WriteMark;
pub(crate) use self::key_files::KeyFiles;
pub(crate) use self::postgres::PgStore;
pub(crate) use self::sled::SledStore;
use crate::audit::{AuditEvent, AuditRecord, ChainError, ChainHead};
use crate::config::{Config, StoreKind};
use crate::records::{CredentialRecord, VmRecord};

/// Failure of the storage backend itself (not a decision).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum StoreError {
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("store configuration: {0}")]
    Config(String),
    /// Full for now (too many open challenges); the caller may retry.
    #[error("busy: {0}")]
    Busy(String),
}

/// What consuming a challenge found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumed {
    /// First use: it is now used.
    First,
    /// It had already been used.
    AlreadyUsed,
}

/// What the store says about a hardware identity a decision is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Standing {
    /// The admin's word on it.
    pub(crate) status: Option<IdentityStatus>,
    /// Its VM record, without admin state.
    pub(crate) vm: Option<VmRecord>,
}

/// Resolves once the writes before it are durable (see [`Store::durable`]).
pub(crate) type Durable = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>;

/// The broker's state.
pub(crate) trait Store: Send + Sync + 'static {
    /// Marks `id` (a challenge's, or a possession statement's digest) used until
    /// `expires_at`, when it can no longer be presented anyway. At most one caller gets
    /// [`Consumed::First`] for an id, also across replicas; [`StoreError::Busy`] when the
    /// embedded store already remembers `challenge.max_used` unexpired ids.
    fn use_once(&self, id: &str, expires_at: i64) -> Result<Consumed, StoreError>;
    /// [`Store::use_once`] for a TPM `finish`, and when it is the first use, what the store
    /// says about the challenge's EK: its admin status and its VM record (a TPM VM's record
    /// is keyed by its EK alone). One round trip with PostgreSQL.
    fn use_once_reading(
        &self,
        id: &str,
        expires_at: i64,
        ek: &HardwareId,
    ) -> Result<(Consumed, Standing), StoreError> {
        let consumed = self.use_once(id, expires_at)?;
        if consumed == Consumed::AlreadyUsed {
            return Ok((consumed, Standing::default()));
        }
        Ok((consumed, Standing { status: self.identity_status(ek)?, vm: self.vm(&ek.key())? }))
    }
    /// Forgets used ids that expired before `before`.
    fn prune_used(&self, before: i64) -> Result<usize, StoreError>;

    /// The admin's word on a hardware identity.
    fn identity_status(&self, id: &HardwareId) -> Result<Option<IdentityStatus>, StoreError>;
    /// Enrolls or blocks a hardware identity, with its audit record.
    fn set_identity_status(
        &self,
        id: &HardwareId,
        status: IdentityStatus,
        audit: AuditEvent,
    ) -> Result<(), StoreError>;

    /// Records an issued credential, the VM's latest state and the decision's audit
    /// record; the credential is never recorded without its audit record.
    fn issue(&self, credential: &CredentialRecord, audit: AuditEvent) -> Result<(), StoreError>;
    /// An issued credential by serial.
    fn credential(&self, serial: &str) -> Result<Option<CredentialRecord>, StoreError>;
    /// The VM record under `key` ([`vm_key`]), without admin state.
    fn vm(&self, key: &str) -> Result<Option<VmRecord>, StoreError>;
    /// Appends a decision to the audit log.
    fn audit(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// Where this store's writes stand: taken before a caller writes, given to
    /// [`Store::durable`] after.
    fn mark(&self) -> WriteMark;
    /// Resolves once every write this store returned from after `since` was taken and before
    /// this call is durable; fails if one of them cannot be made durable (also when it was
    /// another caller's, made meanwhile). Called without blocking a thread, so that one wait
    /// (and one flush or commit) can cover many decisions.
    fn durable(&self, since: WriteMark) -> Durable;
    /// Whether the store takes new work: [`StoreError::Busy`] while too many writes wait to
    /// be made durable (a database that stalls), checked before a request does anything.
    fn accepting(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Revokes, with its audit record.
    fn revoke(&self, revocation: &Revocation, audit: AuditEvent) -> Result<(), StoreError>;
    /// The revocation naming this credential or its VM, if any.
    fn revocation_for(&self, serial: &str, spiffe_id: &str) -> Result<Option<Revocation>, StoreError>;
    /// Every revocation in force.
    fn revocations(&self) -> Result<Vec<Revocation>, StoreError>;

    /// Every VM that was ever issued a credential.
    fn vms(&self) -> Result<Vec<VmRecord>, StoreError>;

    /// Audit records with `seq > after`, at most `limit`.
    fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError>;
    /// Audit records `1..=through` in order (for verification against the head that was
    /// read before: records appended meanwhile are not part of it), as stored.
    fn audit_scan(&self, through: u64) -> Box<dyn Iterator<Item = Result<AuditRecord, ChainError>> + '_>;
    /// The chain head the store keeps apart from the records.
    fn audit_head(&self) -> Result<ChainHead, StoreError>;
}

/// One signing key generation as stored (see `issuer::keys`).
#[derive(Clone)]
pub(crate) struct StoredKeys {
    /// Key id (hex), also the CA certificate's serial.
    pub(crate) kid: String,
    pub(crate) created_at: i64,
    /// Stops signing at this time.
    pub(crate) retire_at: i64,
    /// Leaves the trust bundle at this time.
    pub(crate) expire_at: i64,
    /// The X.509 CA certificate (DER).
    pub(crate) ca_der: Vec<u8>,
    /// The CA private key (PKCS#8). Secret.
    pub(crate) ca_pkcs8: Vec<u8>,
    /// The JWT signing key (PKCS#8). Secret.
    pub(crate) jwt_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for StoredKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKeys")
            .field("kid", &self.kid)
            .field("retire_at", &self.retire_at)
            .field("expire_at", &self.expire_at)
            .finish_non_exhaustive()
    }
}

/// Where the signing keys are kept. Shared by every replica of one deployment.
pub(crate) trait KeyVault: Send + Sync + 'static {
    /// Every stored generation still in the bundle at `now` (`expire_at > now`), oldest
    /// first.
    fn signing_keys(&self, now: i64) -> Result<Vec<StoredKeys>, StoreError>;
    /// Stores a new generation, atomically, unless a stored generation still signs at
    /// `keys.created_at` (another replica rotated first: use that one). Returns whether
    /// `keys` was stored.
    fn add_signing_keys(&self, keys: &StoredKeys) -> Result<bool, StoreError>;
}

impl std::fmt::Debug for dyn KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyVault")
    }
}

/// The configured backend: its state store and where its signing keys live.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Arc<dyn KeyVault>,
    /// The key challenges are sealed with ([`crate::challenge`]): random per process on the
    /// embedded store, shared by every replica on PostgreSQL.
    pub(crate) challenge_key: [u8; 32],
}

/// Opens the configured backend (for PostgreSQL: connects and applies migrations).
pub(crate) fn open(config: &Config) -> Result<Backend, StoreError> {
    match config.store {
        StoreKind::Sled => {
            let mut challenge_key = [0u8; 32];
            aws_lc_rs::rand::fill(&mut challenge_key)
                .map_err(|_| StoreError::Backend("no randomness for the challenge key".into()))?;
            Ok(Backend {
                store: Arc::new(SledStore::open(&config.data_dir.join("store"), config.challenge.max_used)?),
                keys: Arc::new(KeyFiles::new(&config.data_dir.join("keys"))),
                challenge_key,
            })
        }
        StoreKind::Postgres => {
            let settings = config.postgres.as_ref().ok_or_else(|| {
                StoreError::Config("store = \"postgres\" needs a [postgres] section".into())
            })?;
            let store = Arc::new(PgStore::connect(settings)?);
            let challenge_key = store.challenge_key();
            Ok(Backend { store: Arc::clone(&store) as Arc<dyn Store>, keys: store, challenge_key })
        }
    }
}

/// The key a record is stored under.
trait Keyed {
    fn key(&self) -> String;
}

impl Keyed for HardwareId {
    fn key(&self) -> String {
        match self {
            Self::Ek(id) => format!("ek:{id}"),
            Self::Chip(id) => format!("chip:{id}"),
        }
    }
}

impl Keyed for RevocationTarget {
    fn key(&self) -> String {
        match self {
            Self::Credential(serial) => format!("credential:{serial}"),
            Self::Vm(spiffe_id) => format!("vm:{spiffe_id}"),
        }
    }
}

/// The keys of the revocations that would name a credential: its own, then its VM's.
fn revocation_keys_naming(serial: &str, spiffe_id: &str) -> [String; 2] {
    [RevocationTarget::Credential(serial.to_owned()).key(), RevocationTarget::Vm(spiffe_id.to_owned()).key()]
}

/// The key of a VM record: its EK, or (SEV-SNP) its chip and SPIFFE ID, as several guests
/// share one chip.
pub(crate) fn vm_key(hardware_id: &HardwareId, spiffe_id: &str) -> String {
    match hardware_id {
        HardwareId::Ek(_) => hardware_id.key(),
        HardwareId::Chip(_) => format!("{}:{spiffe_id}", hardware_id.key()),
    }
}

/// The key of the VM a credential was issued to.
fn credential_vm_key(credential: &CredentialRecord) -> String {
    vm_key(&credential.hardware_id, &credential.spiffe_id)
}

/// A VM record with what the admin said about the VM (enrollment, block, revocation).
fn with_admin_state(mut vm: VmRecord, store: &dyn Store) -> Result<VmRecord, StoreError> {
    vm.status = store.identity_status(&vm.hardware_id)?;
    vm.revoked = store.revocation_for(&vm.last_serial, &vm.spiffe_id)?.is_some();
    Ok(vm)
}

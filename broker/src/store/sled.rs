//! `Store` on sled, the embedded default (one broker process, no setup).
//!
//! Durability: sled 0.34 buffers writes in memory and its `flush` writes everything
//! buffered so far to the operating system with `sync_file_range`, not `fsync`. `issue`,
//! refusal records and admin changes flush before they return, so their effects survive
//! the broker process being killed at any point. Concurrent flushes are grouped: a caller
//! whose writes an already running flush did not cover waits for the next one, which
//! covers every caller waiting. Accepted verifications are flushed by sled within 500 ms.
//! None of it is guaranteed to survive a power loss or kernel crash; run the PostgreSQL
//! backend where that matters.
//!
//! Challenges are held in memory ([`ChallengeBook`]), never on disk: a restart forgets
//! every open challenge, so none can be accepted after it, let alone twice, and a VM that
//! was mid-exchange begins again.

use std::path::Path;
use std::sync::Mutex;

use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::challenges::ChallengeBook;
use super::codec::decode;
use super::{
    ChallengeRecord, Consumed, CredentialRecord, HardwareId, IdentityStatus, Revocation, RevocationTarget,
    Store, StoreError, VmRecord,
};
use crate::audit::{Action, AuditEvent, AuditRecord, ChainError, ChainHead, Outcome};

const AUDIT_HEAD: &[u8] = b"audit_head";

/// The sled-backed store.
pub(crate) struct SledStore {
    db: sled::Db,
    challenges: ChallengeBook,
    identities: sled::Tree,
    vms: sled::Tree,
    credentials: sled::Tree,
    revocations: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    /// Serializes audit appends so each sees the previous head.
    audit_lock: Mutex<()>,
    flushes: GroupFlush,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    super::codec::encode(value).map(String::into_bytes)
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn unwrap_txn(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

/// sled's page cache (its default is 1 GiB): records are small and recent ones are hot.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Flushes waiting for one another (see [`SledStore::flush`]).
#[derive(Debug, Default)]
struct GroupFlush {
    state: Mutex<FlushState>,
    finished: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct FlushState {
    /// Tickets handed out: each caller's writes precede its ticket.
    requested: u64,
    /// Every ticket up to this one is durable.
    done: u64,
    running: bool,
}

/// The end of one caller's turn at flushing: records what it made durable and wakes the
/// waiters, also when the flush panicked.
struct FlushTurn<'a> {
    store: &'a SledStore,
    covered: Option<u64>,
}

impl Drop for FlushTurn<'_> {
    fn drop(&mut self) {
        let flushes = &self.store.flushes;
        let mut state = flushes.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.running = false;
        if let Some(target) = self.covered {
            state.done = state.done.max(target);
        }
        flushes.finished.notify_all();
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`; at most `max_open_challenges` challenges
    /// are open at once.
    pub(crate) fn open(dir: &Path, max_open_challenges: usize) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(backend)?;
        // Earlier builds kept challenges in this tree; nothing reads it any more.
        db.drop_tree("challenges").map_err(backend)?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        Ok(Self {
            challenges: ChallengeBook::new(max_open_challenges),
            identities: tree("identities")?,
            vms: tree("vms")?,
            credentials: tree("credentials")?,
            revocations: tree("revocations")?,
            audit: tree("audit")?,
            meta: tree("meta")?,
            db,
            audit_lock: Mutex::new(()),
            flushes: GroupFlush::default(),
        })
    }

    /// Makes every write this thread has done durable, sharing one sled flush with every
    /// caller that arrives while another flush is running.
    fn flush(&self) -> Result<(), StoreError> {
        let lock = || self.flushes.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = lock();
        state.requested += 1;
        let ticket = state.requested;
        loop {
            if state.done >= ticket {
                return Ok(());
            }
            if !state.running {
                state.running = true;
                let target = state.requested;
                drop(state);
                // Clears `running` and wakes the waiters even if the flush panics, so one
                // failure cannot leave every later caller waiting.
                let mut finish = FlushTurn { store: self, covered: None };
                let result = self.db.flush().map(|_| ()).map_err(backend);
                if result.is_ok() {
                    finish.covered = Some(target);
                }
                drop(finish);
                return result;
            }
            state = self.flushes.finished.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn lock_audit(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave a half-written chain (the write is
        // one transaction), so a poisoned lock is safe to reuse.
        self.audit_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends inside a transaction over the audit and meta trees.
    fn append_in(
        audit: &TransactionalTree,
        meta: &TransactionalTree,
        event: &AuditEvent,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        let head = match meta.get(AUDIT_HEAD)? {
            Some(bytes) => decode::<ChainHead>(AUDIT_HEAD, &bytes).map_err(abort)?,
            None => ChainHead::GENESIS,
        };
        let (record, head) = head.append(event.clone());
        audit.insert(&record.seq.to_be_bytes(), encode(&record).map_err(abort)?)?;
        meta.insert(AUDIT_HEAD, encode(&head).map_err(abort)?)?;
        Ok(())
    }

    fn audited<T>(
        &self,
        tree: &sled::Tree,
        event: &AuditEvent,
        write: impl Fn(&TransactionalTree) -> Result<T, ConflictableTransactionError<StoreError>>,
    ) -> Result<T, StoreError> {
        let value = {
            let _guard = self.lock_audit();
            (tree, &self.audit, &self.meta)
                .transaction(|(tree, audit, meta)| {
                    let value = write(tree)?;
                    Self::append_in(audit, meta, event)?;
                    Ok(value)
                })
                .map_err(unwrap_txn)?
        };
        // Outside the audit lock, so concurrent decisions share one flush.
        self.flush()?;
        Ok(value)
    }

    fn scan<T: DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<T>, StoreError> {
        tree.iter()
            .map(|entry| {
                let (key, value) = entry.map_err(backend)?;
                decode(&key, &value)
            })
            .collect()
    }
}

impl Store for SledStore {
    fn put_challenge(&self, challenge: &ChallengeRecord) -> Result<(), StoreError> {
        self.challenges.put(challenge)
    }

    fn consume_challenge(&self, id: &str) -> Result<Consumed, StoreError> {
        Ok(self.challenges.consume(id))
    }

    fn prune_challenges(&self, before: i64) -> Result<usize, StoreError> {
        Ok(self.challenges.prune(before))
    }

    fn identity_status(&self, id: &HardwareId) -> Result<Option<IdentityStatus>, StoreError> {
        let key = id.key();
        self.identities.get(key.as_bytes()).map_err(backend)?.map(|v| decode(key.as_bytes(), &v)).transpose()
    }

    fn set_identity_status(
        &self,
        id: &HardwareId,
        status: IdentityStatus,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        let key = id.key();
        let value = encode(&status)?;
        self.audited(&self.identities, &audit, |tree| {
            tree.insert(key.as_bytes(), value.clone())?;
            Ok(())
        })
    }

    fn issue(&self, credential: &CredentialRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let vm = VmRecord::issued(credential);
        let credential_value = encode(credential)?;
        let vm_value = encode(&vm)?;
        let vm_key = credential.hardware_id.key();
        {
            let _guard = self.lock_audit();
            (&self.credentials, &self.vms, &self.audit, &self.meta)
                .transaction(|(credentials, vms, audit_tree, meta)| {
                    credentials.insert(credential.serial.as_bytes(), credential_value.clone())?;
                    vms.insert(vm_key.as_bytes(), vm_value.clone())?;
                    Self::append_in(audit_tree, meta, &audit)
                })
                .map_err(unwrap_txn)?;
        }
        // Outside the audit lock, so concurrent issuances share one flush.
        self.flush()
    }

    fn credential(&self, serial: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.credentials
            .get(serial.as_bytes())
            .map_err(backend)?
            .map(|v| decode(serial.as_bytes(), &v))
            .transpose()
    }

    fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        let durable = event.outcome == Outcome::Refused || event.action == Action::Admin;
        {
            let _guard = self.lock_audit();
            (&self.audit, &self.meta)
                .transaction(|(audit, meta)| Self::append_in(audit, meta, &event))
                .map_err(unwrap_txn)?;
        }
        // Refusals and admin changes are durable before the answer; accepted
        // verifications (the high-volume case) ride sled's periodic flush (500 ms).
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    fn revoke(&self, revocation: &Revocation, audit: AuditEvent) -> Result<(), StoreError> {
        let key = revocation.target.key();
        let value = encode(revocation)?;
        self.audited(&self.revocations, &audit, |tree| {
            tree.insert(key.as_bytes(), value.clone())?;
            Ok(())
        })
    }

    fn revocation_for(&self, serial: &str, spiffe_id: &str) -> Result<Option<Revocation>, StoreError> {
        for key in RevocationTarget::keys_naming(serial, spiffe_id) {
            if let Some(value) = self.revocations.get(key.as_bytes()).map_err(backend)? {
                return decode(key.as_bytes(), &value).map(Some);
            }
        }
        Ok(None)
    }

    fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        Self::scan(&self.revocations)
    }

    fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let vms: Vec<VmRecord> = Self::scan(&self.vms)?;
        vms.into_iter().map(|vm| vm.with_admin_state(self)).collect()
    }

    fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.audit
            .range(start..)
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(backend)?;
                decode(&key, &value)
            })
            .collect()
    }

    fn audit_scan(&self, through: u64) -> Box<dyn Iterator<Item = Result<AuditRecord, ChainError>> + '_> {
        Box::new(self.audit.range(..=through.to_be_bytes()).map(|entry| {
            let (key, value) = entry.map_err(|e| ChainError::Unreadable { seq: 0, reason: e.to_string() })?;
            let seq = <[u8; 8]>::try_from(key.as_ref()).map(u64::from_be_bytes).unwrap_or(0);
            serde_json::from_slice(&value).map_err(|e| ChainError::Unreadable { seq, reason: e.to_string() })
        }))
    }

    fn audit_head(&self) -> Result<ChainHead, StoreError> {
        match self.meta.get(AUDIT_HEAD).map_err(backend)? {
            Some(bytes) => decode(AUDIT_HEAD, &bytes),
            None => Ok(ChainHead::GENESIS),
        }
    }
}

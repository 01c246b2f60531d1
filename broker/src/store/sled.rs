//! `Store` on sled, the embedded default (one broker process, no setup).
//!
//! Durability: sled 0.34 buffers writes in memory and its `flush` writes everything
//! buffered so far to the operating system with `sync_file_range`, not `fsync`. Writes
//! return at once; [`Store::durable`] resolves after the next flush, which one thread runs
//! for every caller waiting ([`Group`]). The broker awaits it before answering, so what
//! it answered survives the broker process being killed at any point. It is not
//! guaranteed to survive a power loss or kernel crash; run the PostgreSQL backend where
//! that matters.
//!
//! Challenges are sealed into their ids under a key made at each start and the finished
//! ones remembered in memory ([`UsedChallenges`]), never on disk: a restart forgets every
//! challenge, so none can be accepted after it, let alone twice, and a VM that was
//! mid-exchange begins again.

use std::path::Path;
use std::sync::Mutex;

use mooring_attestation::protocol::{HardwareId, IdentityStatus, Revocation};
use serde::{de::DeserializeOwned, Serialize};

use super::challenges::UsedChallenges;
use super::codec::decode;
use super::group::{Group, PassFailure, WriteMark};
use super::{Consumed, Durable, Keyed as _, Store, StoreError};
use crate::audit::{AuditEvent, AuditRecord, ChainError, ChainHead};
use crate::records::{CredentialRecord, VmRecord};

const AUDIT_HEAD: &[u8] = b"audit_head";

/// The sled-backed store.
pub(crate) struct SledStore {
    challenges: UsedChallenges,
    identities: sled::Tree,
    vms: sled::Tree,
    credentials: sled::Tree,
    revocations: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    /// The audit chain's head; its lock serializes appends.
    head: Mutex<ChainHead>,
    /// Flushes for every caller waiting; a job is a write already made.
    flusher: Group<()>,
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

/// sled's page cache (its default is 1 GiB): records are small and recent ones are hot.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl SledStore {
    /// Opens (or creates) the store in `dir`, remembering at most `max_used` finished
    /// challenges.
    pub(crate) fn open(dir: &Path, max_used: usize) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(backend)?;
        // Earlier builds kept challenges in this tree; nothing reads it any more.
        db.drop_tree("challenges").map_err(backend)?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let (audit, meta) = (tree("audit")?, tree("meta")?);
        let head = recover_head(&audit, &meta)?;
        let flushed = db.clone();
        let flusher = Group::start(
            "store-flush",
            Box::new(move |_| flushed.flush().map(drop).map_err(|e| PassFailure::All(e.to_string()))),
        )?;
        Ok(Self {
            challenges: UsedChallenges::new(max_used),
            identities: tree("identities")?,
            vms: tree("vms")?,
            credentials: tree("credentials")?,
            revocations: tree("revocations")?,
            audit,
            meta,
            head: Mutex::new(head),
            flusher,
        })
    }

    /// Appends `event` to the audit chain, then applies what it decided (`effects`).
    ///
    /// Separate writes, in this order: the record, the head, the effects. (A sled
    /// transaction or batch over several keys forces a log write of its own, two per
    /// decision; these ride the next grouped flush.) sled recovers a prefix of its log, so
    /// after a crash an effect never lacks its record, and the head may lag its last
    /// records, never lead them ([`recover_head`]). The reverse can happen: when an effect
    /// fails, or the process dies between the record and its effects, the log holds a
    /// record of a decision that took no effect and was never answered (the caller got an
    /// internal error, or nothing).
    fn append(
        &self,
        event: &AuditEvent,
        effects: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // The head is replaced only after its record is written, so a panic leaves it
        // consistent and the poisoned lock is safe to reuse.
        let mut head = self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (record, next) = head.append(event.clone());
        let record = encode(&record)?;
        // Counted after the last write, also when one failed or panicked: `durable` then
        // covers every write made.
        let _count = CountWrites(&self.flusher);
        self.audit.insert(next.seq.to_be_bytes(), record).map_err(backend)?;
        *head = next;
        self.meta.insert(AUDIT_HEAD, encode(&next)?).map_err(backend)?;
        effects()
    }

    /// The records of `table` as stored, in key order: key and JSON text, each record
    /// checked to read as what it is (an audit record under its own sequence number).
    pub(crate) fn export(
        &self,
        table: Table,
    ) -> impl Iterator<Item = Result<(String, String), StoreError>> + '_ {
        let tree = match table {
            Table::Identities => &self.identities,
            Table::Vms => &self.vms,
            Table::Credentials => &self.credentials,
            Table::Revocations => &self.revocations,
            Table::Audit => &self.audit,
        };
        tree.iter().map(move |entry| {
            let (key, value) = entry.map_err(backend)?;
            let text = String::from_utf8(value.to_vec()).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: e.to_string(),
            })?;
            let key = match table {
                Table::Identities => decode::<IdentityStatus>(&key, &value).map(|_| key_text(&key))?,
                Table::Vms => decode::<VmRecord>(&key, &value).map(|_| key_text(&key))?,
                Table::Credentials => decode::<CredentialRecord>(&key, &value).map(|_| key_text(&key))?,
                Table::Revocations => decode::<Revocation>(&key, &value).map(|_| key_text(&key))?,
                Table::Audit => {
                    let record: AuditRecord = decode(&key, &value)?;
                    if key.as_ref() != record.seq.to_be_bytes() {
                        return Err(StoreError::Corrupt {
                            key: format!("audit record {}", record.seq),
                            reason: "stored under another sequence number".into(),
                        });
                    }
                    Ok(record.seq.to_string())
                }
            }?;
            Ok((key, text))
        })
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
    fn use_once(&self, id: &str, expires_at: i64) -> Result<Consumed, StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.challenges.consume(id, expires_at, now)
    }

    fn prune_used(&self, before: i64) -> Result<usize, StoreError> {
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
        self.append(&audit, || self.identities.insert(key.as_bytes(), value).map(drop).map_err(backend))
    }

    fn issue(&self, credential: &CredentialRecord, audit: AuditEvent) -> Result<(), StoreError> {
        let vm_key = super::credential_vm_key(credential);
        let previous = self.vm(&vm_key)?;
        let vm = VmRecord::issued(previous.as_ref(), credential);
        let credential_value = encode(credential)?;
        let vm_value = encode(&vm)?;
        self.append(&audit, || {
            self.credentials.insert(credential.serial.as_bytes(), credential_value).map_err(backend)?;
            self.vms.insert(vm_key.as_bytes(), vm_value).map(drop).map_err(backend)
        })
    }

    fn credential(&self, serial: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.credentials
            .get(serial.as_bytes())
            .map_err(backend)?
            .map(|v| decode(serial.as_bytes(), &v))
            .transpose()
    }

    fn vm(&self, key: &str) -> Result<Option<VmRecord>, StoreError> {
        self.vms.get(key.as_bytes()).map_err(backend)?.map(|v| decode(key.as_bytes(), &v)).transpose()
    }

    fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.append(&event, || Ok(()))
    }

    fn mark(&self) -> WriteMark {
        self.flusher.mark()
    }

    fn durable(&self, since: WriteMark) -> Durable {
        Box::pin(self.flusher.durable(since))
    }

    fn revoke(&self, revocation: &Revocation, audit: AuditEvent) -> Result<(), StoreError> {
        let key = revocation.target.key();
        let value = encode(revocation)?;
        self.append(&audit, || self.revocations.insert(key.as_bytes(), value).map(drop).map_err(backend))
    }

    fn revocation_for(&self, serial: &str, spiffe_id: &str) -> Result<Option<Revocation>, StoreError> {
        for key in super::revocation_keys_naming(serial, spiffe_id) {
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
        vms.into_iter().map(|vm| super::with_admin_state(vm, self)).collect()
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
        stored_head(&self.meta)
    }
}

/// A kind of record, for moving a store ([`SledStore::export`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Identities,
    Vms,
    Credentials,
    Revocations,
    /// Keyed by sequence number (decimal).
    Audit,
}

impl Table {
    pub(crate) const ALL: [Self; 5] =
        [Self::Identities, Self::Vms, Self::Credentials, Self::Revocations, Self::Audit];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Identities => "identities",
            Self::Vms => "vms",
            Self::Credentials => "credentials",
            Self::Revocations => "revocations",
            Self::Audit => "audit",
        }
    }
}

/// A key stored as UTF-8 text.
fn key_text(key: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(key.to_vec()).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// Counts the writes of one append when dropped.
struct CountWrites<'a>(&'a Group<()>);

impl Drop for CountWrites<'_> {
    fn drop(&mut self) {
        self.0.submit(());
    }
}

fn stored_head(meta: &sled::Tree) -> Result<ChainHead, StoreError> {
    match meta.get(AUDIT_HEAD).map_err(backend)? {
        Some(bytes) => decode(AUDIT_HEAD, &bytes),
        None => Ok(ChainHead::GENESIS),
    }
}

/// The audit chain's head when the store opens: the stored head, moved past the records
/// a crash left after it (see [`SledStore::append`]). Those must chain from it; a record
/// past the head that does not is refused, since no crash leaves one.
fn recover_head(audit: &sled::Tree, meta: &sled::Tree) -> Result<ChainHead, StoreError> {
    let stored = stored_head(meta)?;
    let mut head = stored;
    for entry in audit.range(head.seq.saturating_add(1).to_be_bytes()..) {
        let (key, value) = entry.map_err(backend)?;
        let record: AuditRecord = decode(&key, &value)?;
        head = head.follow(&record).map_err(|e| StoreError::Corrupt {
            key: format!("audit record {}", record.seq),
            reason: format!(
                "it lies past the stored head {} and {e}; no crash leaves that, so the store was changed \
                 outside the broker: restore the data directory from a backup",
                stored.seq
            ),
        })?;
    }
    if head != stored {
        tracing::warn!(
            from = stored.seq,
            to = head.seq,
            "audit head moved past records written before a crash"
        );
        meta.insert(AUDIT_HEAD, encode(&head)?).map_err(backend)?;
    }
    Ok(head)
}

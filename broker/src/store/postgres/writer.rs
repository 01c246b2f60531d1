//! The audited writes of one replica, committed in groups: every decision waiting when a
//! pass starts is written, with its audit record chained after the one before it, in one
//! transaction on the writer's own connection ([`crate::store::group`] runs the passes).
//!
//! A pass locks the chain head first and holds it to its commit, so passes of all replicas
//! follow one another: the chain has no forks, and every record's decision commits with
//! it or not at all. The same lock serializes every write of a VM record (only passes
//! write them), so a pass reads the previous records of the VMs it issues to without a
//! row lock of their own and loses no live credential to another replica. Two round trips
//! per pass, whatever its size: the head lock and the VM records (sent together, answered
//! in order, so the records are read once the lock is held), then one statement writing
//! everything and the commit (sent together: if the statement fails the commit is a
//! rollback).
//!
//! Failures: a job whose own data cannot be used (a stored VM record that does not read)
//! is left out and fails alone. When the server refuses the transaction for its data
//! (SQLSTATE classes 22 and 23: a value it cannot store, a constraint), nothing is
//! committed and each job is tried in a transaction of its own so that only the ones the
//! server refuses fail. Any other refusal (a lock timeout, a shutdown, a cancel) is not
//! about one job: the pass fails whole, without retrying every job into the same wall. A
//! lost connection fails the pass; the next pass connects again.
//! A commit whose answer was lost may have committed: its callers fail while their
//! records exist, which is a record of a decision never answered, never the reverse.

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::{Client, SimpleQueryMessage, Statement};

use super::audit::{head_of, to_i64};
use super::connection::{describe, Connector};
use super::read;
use crate::audit::{AuditEvent, ChainHead};
use crate::records::{CredentialRecord, VmRecord};
use crate::store::codec::{decode, encode};
use crate::store::group::PassFailure;
use crate::store::StoreError;

/// What an audited decision changes besides the chain.
#[derive(Debug)]
pub(super) enum Effect {
    /// Nothing: the record alone.
    Record,
    /// An identity's status (`identities`).
    Identity { key: String, status: String },
    /// An issued credential and its VM's record.
    Issue { credential: Box<CredentialRecord>, vm_key: String, encoded: String },
    /// A revocation.
    Revoke { key: String, record: String },
}

/// One decision to commit.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) effect: Effect,
    pub(super) event: AuditEvent,
    /// Committed without waiting for the write-ahead log's flush (accepted verifications);
    /// a pass is relaxed only when all of its jobs are.
    pub(super) relaxed: bool,
}

/// Begins the transaction and locks the chain head (simple protocol: one round trip).
const BEGIN: &str = "BEGIN; SELECT seq, encode(hash, 'hex') FROM audit_head WHERE id = 1 FOR UPDATE";
const BEGIN_RELAXED: &str = "BEGIN; SET LOCAL synchronous_commit = off; \
     SELECT seq, encode(hash, 'hex') FROM audit_head WHERE id = 1 FOR UPDATE";
const VMS: &str = "SELECT key, record FROM vms WHERE key = ANY($1)";
/// Every write of a pass, one statement (data-modifying CTEs all run, read or not).
const WRITE: &str = "WITH
    credentials_written AS (INSERT INTO credentials (serial, record) SELECT * FROM unnest($1::text[], $2::text[])
        ON CONFLICT (serial) DO UPDATE SET record = excluded.record),
    vms_written AS (INSERT INTO vms (key, record) SELECT * FROM unnest($3::text[], $4::text[])
        ON CONFLICT (key) DO UPDATE SET record = excluded.record),
    identities_written AS (INSERT INTO identities (key, status) SELECT * FROM unnest($5::text[], $6::text[])
        ON CONFLICT (key) DO UPDATE SET status = excluded.status),
    revocations_written AS (INSERT INTO revocations (key, record) SELECT * FROM unnest($7::text[], $8::text[])
        ON CONFLICT (key) DO UPDATE SET record = excluded.record),
    audit_written AS (INSERT INTO audit (seq, record) SELECT * FROM unnest($9::bigint[], $10::text[]))
    UPDATE audit_head SET seq = $11, hash = $12 WHERE id = 1";

/// The rows a pass writes; one per key (the last job's), as one statement cannot write a
/// row twice.
#[derive(Default)]
struct Rows {
    credentials: BTreeMap<String, String>,
    vms: BTreeMap<String, String>,
    identities: BTreeMap<String, String>,
    revocations: BTreeMap<String, String>,
    audit_seqs: Vec<i64>,
    audit_records: Vec<String>,
}

/// Why a pass's transaction failed.
enum Failed {
    /// The server refused data of some job: nothing was committed.
    Data(String),
    /// The server refused it for another reason: nothing was committed.
    Refused(String),
    /// Anything else (the connection, an unreadable head): the outcome may be unknown.
    Other(String),
}

impl From<postgres::Error> for Failed {
    fn from(e: postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) if is_about_data(db.code()) => Self::Data(describe(&e)),
            Some(_) => Self::Refused(describe(&e)),
            None => Self::Other(describe(&e)),
        }
    }
}

/// Whether a server error is about the data written (SQLSTATE class 22, data exception,
/// or 23, integrity constraint violation), so that some job alone may be at fault.
fn is_about_data(code: &tokio_postgres::error::SqlState) -> bool {
    matches!(code.code().get(..2), Some("22" | "23"))
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Self::Other(e.to_string())
    }
}

/// The writer's connection and its prepared statements.
struct Session {
    client: Client,
    vms: Statement,
    write: Statement,
}

/// The pass of one replica's group commit; it owns its connection, driven by a runtime of
/// its own on the group commit's thread.
pub(super) struct Writer {
    connector: Connector,
    runtime: tokio::runtime::Runtime,
    session: Option<Session>,
}

impl Writer {
    pub(super) fn new(connector: Connector) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("the group commit's runtime: {e}")))?;
        Ok(Self { connector, runtime, session: None })
    }

    /// Connects (again, after the connection was lost) and prepares the statements.
    fn connect(&mut self) -> Result<(), StoreError> {
        if self.session.as_ref().is_some_and(|session| !session.client.is_closed()) {
            return Ok(());
        }
        self.session = None;
        let client = self.connector.open_async(&self.runtime)?;
        let prepare = |sql| self.runtime.block_on(client.prepare(sql));
        let prepared = prepare(VMS).and_then(|vms| Ok((vms, prepare(WRITE)?)));
        let (vms, write) = prepared
            .map_err(|e| StoreError::Backend(format!("preparing the group commit: {}", describe(&e))))?;
        self.session = Some(Session { client, vms, write });
        Ok(())
    }

    /// Commits `jobs` (see the module documentation for what fails).
    pub(super) fn pass(&mut self, jobs: Vec<Job>) -> Result<(), PassFailure> {
        self.connect().map_err(|e| PassFailure::All(e.to_string()))?;
        let Some(session) = self.session.as_ref() else {
            return Err(PassFailure::All("no database connection".into()));
        };
        let runtime = &self.runtime;
        let failed = match runtime.block_on(commit(session, &jobs)) {
            Ok(left_out) if left_out.is_empty() => return Ok(()),
            Ok(left_out) => return Err(PassFailure::Jobs(left_out)),
            Err(failed) => failed,
        };
        runtime.block_on(abandon(session));
        match failed {
            Failed::Data(reason) if jobs.len() > 1 => {
                tracing::warn!(
                    "the server refused a group of {} decisions, committing them one by one: {reason}",
                    jobs.len()
                );
                let mut left_out = Vec::new();
                for (index, job) in jobs.iter().enumerate() {
                    match runtime.block_on(commit(session, std::slice::from_ref(job))) {
                        Ok(mut alone) => left_out.extend(alone.pop().map(|(_, reason)| (index, reason))),
                        Err(Failed::Data(reason)) => {
                            runtime.block_on(abandon(session));
                            left_out.push((index, reason));
                        }
                        Err(Failed::Refused(reason)) => {
                            runtime.block_on(abandon(session));
                            left_out.extend((index..jobs.len()).map(|i| (i, reason.clone())));
                            break;
                        }
                        Err(Failed::Other(reason)) => {
                            left_out.extend((index..jobs.len()).map(|i| (i, reason.clone())));
                            self.session = None;
                            break;
                        }
                    }
                }
                Err(PassFailure::Jobs(left_out))
            }
            Failed::Data(reason) | Failed::Refused(reason) => Err(PassFailure::All(reason)),
            Failed::Other(reason) => {
                self.session = None;
                Err(PassFailure::All(reason))
            }
        }
    }
}

/// Ends a failed transaction (best effort: a broken connection is replaced anyway).
async fn abandon(session: &Session) {
    let _ = session.client.batch_execute("ROLLBACK").await;
}

/// Writes and chains `jobs` in one transaction; returns the jobs left out, with why.
async fn commit(session: &Session, jobs: &[Job]) -> Result<Vec<(usize, String)>, Failed> {
    let relaxed = jobs.iter().all(|job| job.relaxed);
    let keys: Vec<&str> = jobs
        .iter()
        .filter_map(|job| match &job.effect {
            Effect::Issue { vm_key, .. } => Some(vm_key.as_str()),
            _ => None,
        })
        .collect();
    let client = &session.client;
    let previous = async {
        if keys.is_empty() {
            Ok(Vec::new())
        } else {
            client.query(&session.vms, &[&keys]).await
        }
    };
    // `biased`: each future sends its statement when first polled, and the server runs them
    // in the order sent; BEGIN (with the head lock) must go first. Plain `join!` rotates
    // which future it polls first.
    let (begun, previous) =
        tokio::join!(biased; client.simple_query(if relaxed { BEGIN_RELAXED } else { BEGIN }), previous);
    let mut head = head_from(&begun?)?;
    let mut vms = previous_vms(&previous?)?;
    let mut rows = Rows::default();
    let mut left_out = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        if let Err(reason) = rows.stage(&job.effect, &mut vms) {
            left_out.push((index, reason));
            continue;
        }
        let (record, next) = head.append(job.event.clone());
        rows.audit_seqs.push(to_i64(record.seq, "audit sequence")?);
        rows.audit_records.push(encode(&record)?);
        head = next;
    }
    if rows.audit_records.is_empty() {
        client.batch_execute("COMMIT").await?;
        return Ok(left_out);
    }
    let columns = |map: &BTreeMap<String, String>| -> (Vec<String>, Vec<String>) {
        (map.keys().cloned().collect(), map.values().cloned().collect())
    };
    let (serials, credentials) = columns(&rows.credentials);
    let (vm_keys, vm_records) = columns(&rows.vms);
    let (identity_keys, statuses) = columns(&rows.identities);
    let (revocation_keys, revocations) = columns(&rows.revocations);
    let seq = to_i64(head.seq, "audit sequence")?;
    let hash = head.hash.as_slice();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
        &serials,
        &credentials,
        &vm_keys,
        &vm_records,
        &identity_keys,
        &statuses,
        &revocation_keys,
        &revocations,
        &rows.audit_seqs,
        &rows.audit_records,
        &seq,
        &hash,
    ];
    let write = client.execute(&session.write, &params);
    // A failed write leaves the transaction aborted: the server answers the commit with a
    // rollback, and the write's error says why.
    // `biased`: the write is sent before COMMIT (see above).
    let (written, committed) = tokio::join!(biased; write, client.batch_execute("COMMIT"));
    written?;
    committed?;
    Ok(left_out)
}

/// The chain head in the answer to [`BEGIN`].
fn head_from(messages: &[SimpleQueryMessage]) -> Result<ChainHead, Failed> {
    let corrupt = |reason: &str| StoreError::Corrupt { key: "audit_head".into(), reason: reason.into() };
    let row = messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| corrupt("the head row is missing"))?;
    let seq: i64 =
        row.get(0).and_then(|text| text.parse().ok()).ok_or_else(|| corrupt("unreadable sequence number"))?;
    let hash =
        row.get(1).and_then(|text| hex::decode(text).ok()).ok_or_else(|| corrupt("unreadable hash"))?;
    Ok(head_of(seq, &hash)?)
}

/// The stored records of the VMs a pass issues to, each decoded on its own.
fn previous_vms(rows: &[tokio_postgres::Row]) -> Result<HashMap<String, Result<VmRecord, String>>, Failed> {
    let mut vms = HashMap::new();
    for row in rows {
        let key: String = read(row, 0, "vms.key")?;
        let text: String = read(row, 1, "vms.record")?;
        let record = decode(key.as_bytes(), text.as_bytes()).map_err(|e| e.to_string());
        vms.insert(key, record);
    }
    Ok(vms)
}

impl Rows {
    /// Adds what `effect` writes; a VM record that does not read leaves the job out.
    fn stage(
        &mut self,
        effect: &Effect,
        vms: &mut HashMap<String, Result<VmRecord, String>>,
    ) -> Result<(), String> {
        match effect {
            Effect::Record => {}
            Effect::Identity { key, status } => {
                self.identities.insert(key.clone(), status.clone());
            }
            Effect::Revoke { key, record } => {
                self.revocations.insert(key.clone(), record.clone());
            }
            Effect::Issue { credential, vm_key, encoded } => {
                let previous =
                    vms.get(vm_key).map(Result::as_ref).transpose().map_err(|reason| {
                        format!("the stored record of VM {vm_key} is unreadable: {reason}")
                    })?;
                let vm = VmRecord::issued(previous, credential);
                self.vms.insert(vm_key.clone(), encode(&vm).map_err(|e| e.to_string())?);
                self.credentials.insert(credential.serial.clone(), encoded.clone());
                // A later job of this pass for the same VM follows this record.
                vms.insert(vm_key.clone(), Ok(vm));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio_postgres::error::SqlState;

    use super::is_about_data;

    #[test]
    fn only_refusals_of_the_data_split_a_group() {
        for data in [
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            SqlState::UNTRANSLATABLE_CHARACTER,
            SqlState::UNIQUE_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        ] {
            assert!(is_about_data(&data), "{data:?}");
        }
        for other in [
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::QUERY_CANCELED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            SqlState::DISK_FULL,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ] {
            assert!(!is_about_data(&other), "{other:?}");
        }
    }
}

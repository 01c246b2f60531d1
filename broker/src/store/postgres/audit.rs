//! One audit chain for every replica: how it is read. Appends are made by each replica's
//! group commit ([`super::writer`]), which holds the single `audit_head` row lock from the
//! start of its transaction to its commit, so appends from all replicas are serialized by
//! the database: record `n` is chained after the record `n - 1` committed before it, the
//! chain has no forks, and a decision and its record commit or vanish together. The lock
//! is taken once per group of decisions, not once per decision; one chain per replica
//! would avoid it altogether but leave a reader to merge chains and could not show a
//! removed record between two replicas' records.

use std::collections::VecDeque;

use super::connection::Connection;
use super::{failed, read};
use crate::audit::{AuditRecord, ChainError, ChainHead};
use crate::store::codec::decode;
use crate::store::StoreError;

/// Records read per round trip while scanning.
pub(super) const PAGE: i64 = 1000;

pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{what} {value} out of range")))
}

pub(super) fn head_of(seq: i64, hash: &[u8]) -> Result<ChainHead, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: "audit_head".into(), reason };
    Ok(ChainHead {
        seq: u64::try_from(seq).map_err(|_| corrupt(format!("negative sequence {seq}")))?,
        hash: hash.try_into().map_err(|_| corrupt(format!("hash of {} bytes", hash.len())))?,
    })
}

pub(super) fn head(client: &mut Connection) -> Result<ChainHead, StoreError> {
    let row = client
        .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
        .map_err(failed("reading the audit head"))?;
    let seq: i64 = read(&row, 0, "audit_head.seq")?;
    let hash: Vec<u8> = read(&row, 1, "audit_head.hash")?;
    head_of(seq, &hash)
}

/// A record's sequence number and the record, decoded on its own.
pub(super) type Numbered = (u64, Result<AuditRecord, StoreError>);

/// Records with `after < seq <= through`, at most `limit`, each decoded on its own.
pub(super) fn page(
    client: &mut Connection,
    after: u64,
    through: u64,
    limit: i64,
) -> Result<Vec<Numbered>, StoreError> {
    let rows = client
        .query(
            "SELECT seq, record FROM audit WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
            &[&to_i64(after, "audit sequence")?, &to_i64(through, "audit sequence")?, &limit],
        )
        .map_err(failed("reading audit records"))?;
    rows.iter()
        .map(|row| {
            let seq: i64 = read(row, 0, "audit.seq")?;
            let text: String = read(row, 1, "audit.record")?;
            let key = format!("audit record {seq}");
            Ok((u64::try_from(seq).unwrap_or(0), decode(key.as_bytes(), text.as_bytes())))
        })
        .collect()
}

/// Records with `seq > after`, at most `limit`.
pub(super) fn records(
    client: &mut Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    page(client, after, u64::MAX >> 1, limit)?.into_iter().map(|(_, record)| record).collect()
}

/// Records `1..=through` in order, a page at a time from `fetch(after, through)`.
pub(super) struct Scan<F> {
    fetch: F,
    after: u64,
    through: u64,
    buffered: VecDeque<Result<AuditRecord, ChainError>>,
    done: bool,
}

impl<F: FnMut(u64, u64) -> Result<Vec<Numbered>, StoreError>> Scan<F> {
    pub(super) fn new(fetch: F, through: u64) -> Self {
        Self { fetch, after: 0, through, buffered: VecDeque::new(), done: false }
    }

    fn fill(&mut self) {
        let unreadable = |seq: u64, e: StoreError| ChainError::Unreadable { seq, reason: e.to_string() };
        let next = self.after.saturating_add(1);
        match (self.fetch)(self.after, self.through) {
            Ok(rows) if rows.is_empty() => self.done = true,
            Ok(rows) => {
                for (seq, record) in rows {
                    self.after = seq;
                    self.buffered.push_back(record.map_err(|e| unreadable(seq, e)));
                }
            }
            Err(e) => {
                self.buffered.push_back(Err(unreadable(next, e)));
                self.done = true;
            }
        }
    }
}

impl<F: FnMut(u64, u64) -> Result<Vec<Numbered>, StoreError>> Iterator for Scan<F> {
    type Item = Result<AuditRecord, ChainError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() && !self.done {
            self.fill();
        }
        self.buffered.pop_front()
    }
}

//! Hash-chained audit log of every decision the broker makes.
//!
//! Record `n` stores `hash_n = SHA-256(hash_{n-1} || canonical JSON of record n without
//! its hash)`, with `hash_0` all zero, and the store keeps the head `(n, hash_n)` apart
//! from the records. Changing any record breaks its own hash; removing one breaks the
//! sequence or the next record's `prev`; removing the tail no longer reaches the head.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest reason a record keeps, in characters: reasons can quote what a client sent
/// (a JSON error names the key it choked on), and no client writes more than this.
pub(crate) const MAX_REASON_CHARS: usize = 512;

/// What a decision was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// A TPM or SNP `begin`.
    Begin,
    /// A TPM or SNP `finish`.
    Attest,
    /// A relying service's credential check.
    Verify,
    /// A VM giving up its credential.
    Retire,
    /// A VM exchanging its JWT-SVID for a token for a downstream audience.
    Exchange,
    /// An admin change (enroll, block, revoke, policy reload).
    Admin,
    /// A request refused before it reached the service (malformed, too large).
    Request,
}

impl Action {
    /// The name in records and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Begin => "begin",
            Self::Attest => "attest",
            Self::Verify => "verify",
            Self::Retire => "retire",
            Self::Exchange => "exchange",
            Self::Admin => "admin",
            Self::Request => "request",
        }
    }
}

/// `text` with control characters escaped, cut to [`MAX_REASON_CHARS`].
fn bounded(text: String) -> String {
    if text.len() <= MAX_REASON_CHARS && !text.chars().any(char::is_control) {
        return text;
    }
    let mut out: String = text
        .chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .take(MAX_REASON_CHARS)
        .collect();
    if out.chars().count() == MAX_REASON_CHARS {
        out.push_str("...");
    }
    out
}

/// Outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Accepted,
    Refused,
}

/// One decision, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditEvent {
    /// Unix seconds.
    pub(crate) time: i64,
    pub(crate) action: Action,
    pub(crate) outcome: Outcome,
    /// Stable reason code (also for accepted decisions: `issued`, `valid`, ...).
    pub(crate) code: String,
    /// One-line reason.
    pub(crate) reason: String,
    /// Client address the decision was about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) peer: Option<String>,
    /// SHA-256 of the evidence (request body), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) evidence_digest: Option<String>,
    /// SHA-256 of the policy in force, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy_digest: Option<String>,
    /// Hardware identity (EK hash or CHIP_ID), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hardware_id: Option<String>,
    /// SPIFFE ID issued or checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spiffe_id: Option<String>,
    /// Credential serial issued or checked, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) serial: Option<String>,
    /// The downstream audience of a token exchange (bounded: `protocol::check_audience`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) audience: Option<String>,
}

impl AuditEvent {
    /// A new event with the mandatory fields.
    pub(crate) fn new(
        time: i64,
        action: Action,
        outcome: Outcome,
        code: &str,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            time,
            action,
            outcome,
            code: code.to_owned(),
            reason: bounded(reason.into()),
            peer: None,
            evidence_digest: None,
            policy_digest: None,
            hardware_id: None,
            spiffe_id: None,
            serial: None,
            audience: None,
        }
    }
}

/// A chained record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditRecord {
    /// Position in the chain, from 1.
    pub(crate) seq: u64,
    /// Hash of the previous record (hex; zeros for the first).
    pub(crate) prev: String,
    #[serde(flatten)]
    pub(crate) event: AuditEvent,
    /// This record's hash (hex).
    pub(crate) hash: String,
}

/// The last record of the chain as the store remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChainHead {
    pub(crate) seq: u64,
    pub(crate) hash: [u8; 32],
}

impl ChainHead {
    /// The head of an empty chain.
    pub(crate) const GENESIS: Self = Self { seq: 0, hash: [0; 32] };

    /// Chains `event` after this head; returns the record and the new head.
    pub(crate) fn append(&self, event: AuditEvent) -> (AuditRecord, ChainHead) {
        let seq = self.seq + 1;
        let prev = hex::encode(self.hash);
        let hash = record_hash(seq, &prev, &event);
        let record = AuditRecord { seq, prev, event, hash: hex::encode(hash) };
        (record, ChainHead { seq, hash })
    }

    /// The head after `record`, if `record` is the intact next record of this chain.
    pub(crate) fn follow(&self, record: &AuditRecord) -> Result<ChainHead, ChainError> {
        if record.seq != self.seq + 1 {
            return Err(ChainError::Gap { previous: self.seq, found: record.seq });
        }
        if record.prev != hex::encode(self.hash) {
            return Err(ChainError::BrokenLink { seq: record.seq });
        }
        let hash = record_hash(record.seq, &record.prev, &record.event);
        if hex::encode(hash) != record.hash {
            return Err(ChainError::Modified { seq: record.seq });
        }
        Ok(ChainHead { seq: record.seq, hash })
    }
}

fn record_hash(seq: u64, prev: &str, event: &AuditEvent) -> [u8; 32] {
    #[derive(Serialize)]
    struct Unhashed<'a> {
        seq: u64,
        prev: &'a str,
        #[serde(flatten)]
        event: &'a AuditEvent,
    }
    // Serializing plain structs of strings and integers cannot fail.
    let body = serde_json::to_vec(&Unhashed { seq, prev, event }).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(hex::decode(prev).unwrap_or_default());
    hasher.update(&body);
    hasher.finalize().into()
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ChainError {
    #[error("record {found} follows record {previous}: record(s) removed or reordered")]
    Gap { previous: u64, found: u64 },
    #[error("record {seq} does not link to the hash of record {}: the previous record was changed or removed", seq - 1)]
    BrokenLink { seq: u64 },
    #[error("record {seq} was modified: its content does not hash to its stored hash")]
    Modified { seq: u64 },
    #[error(
        "the chain ends at record {last} but the store's head is record {head}: records removed from the end"
    )]
    Truncated { last: u64, head: u64 },
    #[error("the last record {seq} does not match the store's head hash")]
    HeadMismatch { seq: u64 },
    #[error("record {seq} cannot be read: {reason}")]
    Unreadable { seq: u64, reason: String },
}

/// Summary of a verified chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct ChainReport {
    pub(crate) records: u64,
    pub(crate) head: u64,
}

/// Verifies records in order against the stored head.
pub(crate) fn verify_chain(
    records: impl IntoIterator<Item = Result<AuditRecord, ChainError>>,
    head: ChainHead,
) -> Result<ChainReport, ChainError> {
    let mut last = ChainHead::GENESIS;
    let mut count = 0;
    for record in records {
        last = last.follow(&record?)?;
        count += 1;
    }
    if last.seq != head.seq {
        return Err(ChainError::Truncated { last: last.seq, head: head.seq });
    }
    if last.hash != head.hash {
        return Err(ChainError::HeadMismatch { seq: last.seq });
    }
    Ok(ChainReport { records: count, head: head.seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> (Vec<AuditRecord>, ChainHead) {
        let mut head = ChainHead::GENESIS;
        let mut records = Vec::new();
        for i in 0..n {
            let event =
                AuditEvent::new(i64::try_from(i).unwrap(), Action::Attest, Outcome::Accepted, "issued", "ok");
            let (record, next) = head.append(event);
            records.push(record);
            head = next;
        }
        (records, head)
    }

    fn check(records: &[AuditRecord], head: ChainHead) -> Result<ChainReport, ChainError> {
        verify_chain(records.iter().cloned().map(Ok), head)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (records, head) = chain(5);
        assert_eq!(check(&records, head).unwrap(), ChainReport { records: 5, head: 5 });
        assert_eq!(check(&[], ChainHead::GENESIS).unwrap().records, 0);
    }

    #[test]
    fn a_modified_record_is_found() {
        let (mut records, head) = chain(5);
        records[2].event.reason = "rewritten".into();
        assert_eq!(check(&records, head), Err(ChainError::Modified { seq: 3 }));
    }

    #[test]
    fn a_rehashed_modification_breaks_the_next_link() {
        let (mut records, head) = chain(5);
        records[2].event.code = "refused".into();
        records[2].hash = hex::encode(record_hash(3, &records[2].prev, &records[2].event));
        assert_eq!(check(&records, head), Err(ChainError::BrokenLink { seq: 4 }));
    }

    #[test]
    fn a_removed_record_is_found() {
        let (mut records, head) = chain(5);
        records.remove(1);
        assert_eq!(check(&records, head), Err(ChainError::Gap { previous: 1, found: 3 }));
        let (mut records, head) = chain(5);
        records.remove(0);
        assert_eq!(check(&records, head), Err(ChainError::Gap { previous: 0, found: 2 }));
    }

    #[test]
    fn a_removed_tail_is_found() {
        let (mut records, head) = chain(5);
        records.pop();
        assert_eq!(check(&records, head), Err(ChainError::Truncated { last: 4, head: 5 }));
    }

    #[test]
    fn a_replaced_tail_is_found() {
        let (mut records, head) = chain(5);
        let last = records.pop().unwrap();
        let previous = ChainHead { seq: 4, hash: hex::decode(&records[3].hash).unwrap().try_into().unwrap() };
        let mut event = last.event;
        event.reason = "other".into();
        records.push(previous.append(event).0);
        assert_eq!(check(&records, head), Err(ChainError::HeadMismatch { seq: 5 }));
    }
}

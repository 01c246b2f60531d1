//! Event logs this broker admitted a VM with, by SHA-256, so that the next VM booted from
//! the same image may name its log instead of sending it again
//! ([`TpmFinishRequest::event_log_sha256`]). A 45 KB log is most of a `finish` body: sent
//! as base64 in JSON, it is decrypted, hashed for the audit record, scanned and decoded
//! for every attestation.
//!
//! Only a log that passed appraisal and policy in an admission is kept, after the
//! decision (before its record is durable: a failed commit leaves a log kept that did
//! admit a VM): nothing a refused or anonymous caller sends enters. A log named by digest
//! is still replayed against the quote and appraised like a sent one, so naming another
//! VM's log gains nothing: it admits only a quote whose PCRs it reproduces. The body the audit record's
//! evidence digest covers holds the log's digest, so the record still commits to it.
//!
//! Each replica keeps its own; a VM that meets a replica without its log sends it once
//! more. Bounded by bytes; the log used longest ago goes first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use mooring_attestation::protocol::TpmFinishRequest;
use sha2::{Digest, Sha256};

use crate::refusal::{Code, Refusal};

/// The event log of a `finish`, as sent or as named.
pub(crate) enum FinishLog {
    /// No log.
    None,
    /// Sent in the request; `keep` when it came with its digest (the VM asks the broker
    /// to keep it).
    Sent { keep: Option<[u8; 32]> },
    /// Named by digest, and held here.
    Known(Arc<[u8]>),
}

impl FinishLog {
    /// The log's bytes.
    pub(crate) fn bytes<'a>(&'a self, request: &'a TpmFinishRequest) -> Option<&'a [u8]> {
        match self {
            Self::None => None,
            Self::Sent { .. } => request.event_log.as_deref(),
            Self::Known(log) => Some(log),
        }
    }
}

/// Admitted event logs by SHA-256, at most `budget` bytes of them.
pub(crate) struct KnownEventLogs {
    budget: usize,
    held: Mutex<Held>,
}

impl std::fmt::Debug for KnownEventLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("KnownEventLogs").field("budget", &self.budget).field("bytes", &held.bytes).finish()
    }
}

#[derive(Default)]
struct Held {
    bytes: usize,
    least_recent_first: VecDeque<[u8; 32]>,
    logs: HashMap<[u8; 32], Arc<[u8]>>,
}

impl KnownEventLogs {
    /// Holds at most `budget` bytes of logs (0: none; every VM sends its log).
    pub(crate) fn new(budget: usize) -> Self {
        Self { budget, held: Mutex::new(Held::default()) }
    }

    /// The event log of `request`: checks that a digest sent with a log is that log's,
    /// and finds a log named by digest alone. Refused before the challenge is used up, so
    /// the VM can send the same `finish` again with its log.
    pub(crate) fn resolve(&self, request: &TpmFinishRequest) -> Result<FinishLog, Refusal> {
        let Some(named) = &request.event_log_sha256 else {
            return Ok(if request.event_log.is_some() {
                FinishLog::Sent { keep: None }
            } else {
                FinishLog::None
            });
        };
        let digest = parse_digest(named)?;
        match &request.event_log {
            Some(log) => {
                if Sha256::digest(log).as_slice() != digest {
                    return Err(Refusal::new(
                        Code::EventLogMismatch,
                        "event_log_sha256 is not the SHA-256 of the event log sent",
                    ));
                }
                Ok(FinishLog::Sent { keep: Some(digest) })
            }
            None => self.get(&digest).map(FinishLog::Known).ok_or_else(|| {
                Refusal::new(
                    Code::EventLogUnknown,
                    "this broker holds no event log with that SHA-256: send this finish again with the log",
                )
            }),
        }
    }

    /// The log by `digest`, now the most recently used.
    fn get(&self, digest: &[u8; 32]) -> Option<Arc<[u8]>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let log = held.logs.get(digest).cloned()?;
        // A handful of images in use: a short scan.
        if let Some(at) = held.least_recent_first.iter().position(|d| d == digest) {
            held.least_recent_first.remove(at);
            held.least_recent_first.push_back(*digest);
        }
        Some(log)
    }

    /// Keeps the log of an admitted attestation, its digest already checked
    /// ([`Self::resolve`]). A log larger than the whole budget is not kept.
    pub(crate) fn keep(&self, digest: [u8; 32], log: &[u8]) {
        if log.len() > self.budget {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.logs.contains_key(&digest) {
            return;
        }
        while held.bytes + log.len() > self.budget {
            let Some(oldest) = held.least_recent_first.pop_front() else { break };
            if let Some(gone) = held.logs.remove(&oldest) {
                held.bytes -= gone.len();
            }
        }
        held.bytes += log.len();
        held.least_recent_first.push_back(digest);
        held.logs.insert(digest, Arc::from(log));
    }
}

/// A SHA-256 digest in lowercase hex (64 digits), as every digest of the API.
fn parse_digest(hex_digest: &str) -> Result<[u8; 32], Refusal> {
    let malformed = || {
        Refusal::new(Code::MalformedRequest, "event_log_sha256: expected 64 lowercase hex digits (SHA-256)")
    };
    if hex_digest.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(malformed());
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| malformed())?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(log: Option<&[u8]>, digest: Option<String>) -> TpmFinishRequest {
        TpmFinishRequest {
            challenge_id: String::new(),
            activated_secret: Vec::new(),
            quote: Vec::new(),
            quote_signature: Vec::new(),
            pcrs: std::collections::BTreeMap::new(),
            event_log: log.map(<[u8]>::to_vec),
            event_log_sha256: digest,
            certify: Vec::new(),
            certify_signature: Vec::new(),
        }
    }

    fn digest_of(log: &[u8]) -> [u8; 32] {
        Sha256::digest(log).into()
    }

    fn code(result: Result<FinishLog, Refusal>) -> Code {
        match result {
            Ok(_) => panic!("expected a refusal"),
            Err(refusal) => refusal.code,
        }
    }

    #[test]
    fn a_log_named_by_digest_is_found_only_once_kept() {
        let known = KnownEventLogs::new(1024);
        let log = b"an event log".as_slice();
        let named = request(None, Some(hex::encode(digest_of(log))));
        assert_eq!(code(known.resolve(&named)), Code::EventLogUnknown);
        known.keep(digest_of(log), log);
        let resolved = known.resolve(&named).unwrap();
        assert_eq!(resolved.bytes(&named), Some(log));
    }

    #[test]
    fn a_digest_sent_with_its_log_must_be_that_logs() {
        let known = KnownEventLogs::new(1024);
        let log = b"an event log".as_slice();
        let wrong = request(Some(log), Some(hex::encode(digest_of(b"another log"))));
        assert_eq!(code(known.resolve(&wrong)), Code::EventLogMismatch);
        let right = request(Some(log), Some(hex::encode(digest_of(log))));
        assert!(
            matches!(known.resolve(&right), Ok(FinishLog::Sent { keep: Some(d) }) if d == digest_of(log))
        );
        // Resolving keeps nothing: only an admission does.
        let named = request(None, Some(hex::encode(digest_of(log))));
        assert_eq!(code(known.resolve(&named)), Code::EventLogUnknown);
    }

    #[test]
    fn a_digest_that_is_not_64_hex_digits_is_malformed() {
        let known = KnownEventLogs::new(1024);
        let upper = hex::encode_upper(digest_of(b"log"));
        for bad in ["", "abcd", &"g".repeat(64), &"a".repeat(66), &upper] {
            assert_eq!(
                code(known.resolve(&request(None, Some(bad.to_owned())))),
                Code::MalformedRequest,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_oldest_logs_go_first_and_the_budget_holds() {
        let known = KnownEventLogs::new(100);
        let logs: Vec<Vec<u8>> = (0u8..4).map(|i| vec![i; 40]).collect();
        for log in &logs {
            known.keep(digest_of(log), log);
        }
        // 100 bytes hold two 40-byte logs: the last two.
        assert!(known.get(&digest_of(&logs[0])).is_none());
        assert!(known.get(&digest_of(&logs[1])).is_none());
        assert!(known.get(&digest_of(&logs[2])).is_some());
        assert!(known.get(&digest_of(&logs[3])).is_some());
        assert_eq!(known.held.lock().unwrap().bytes, 80);
        // Larger than the budget: never kept, nothing evicted for it.
        let huge = vec![9u8; 101];
        known.keep(digest_of(&huge), &huge);
        assert!(known.get(&digest_of(&huge)).is_none());
        assert!(known.get(&digest_of(&logs[3])).is_some());
    }

    #[test]
    fn a_log_in_use_outlives_older_unused_ones() {
        let known = KnownEventLogs::new(100);
        let logs: Vec<Vec<u8>> = (0u8..3).map(|i| vec![i; 40]).collect();
        known.keep(digest_of(&logs[0]), &logs[0]);
        known.keep(digest_of(&logs[1]), &logs[1]);
        // The first is named again: the second is now the one used longest ago.
        assert!(known.get(&digest_of(&logs[0])).is_some());
        known.keep(digest_of(&logs[2]), &logs[2]);
        assert!(known.get(&digest_of(&logs[0])).is_some());
        assert!(known.get(&digest_of(&logs[1])).is_none());
        assert!(known.get(&digest_of(&logs[2])).is_some());
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let known = KnownEventLogs::new(0);
        let log = b"log".as_slice();
        known.keep(digest_of(log), log);
        assert!(known.get(&digest_of(log)).is_none());
    }
}

//! Challenges of one broker process, held in memory (the sled store's).
//!
//! A challenge lives for seconds, and a process restart may forget it: a VM whose
//! challenge is lost begins again, and a forgotten challenge can never be accepted. So
//! challenges need no disk write, which on the embedded store would otherwise cost two
//! writes (open, then used) per attestation. A used challenge is kept as a tombstone
//! until pruned, so a replay is told it was used rather than unknown.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{ChallengeRecord, Consumed, StoreError};

/// Open and used challenges, by id.
#[derive(Debug)]
pub(crate) struct ChallengeBook {
    state: Mutex<State>,
    /// Most challenges open at once; beyond it `put` is refused.
    max_open: usize,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    open: usize,
}

#[derive(Debug)]
enum Entry {
    Open(Box<ChallengeRecord>),
    Used { expires_at: i64 },
}

impl Entry {
    fn expires_at(&self) -> i64 {
        match self {
            Self::Open(record) => record.expires_at,
            Self::Used { expires_at } => *expires_at,
        }
    }
}

impl ChallengeBook {
    pub(crate) fn new(max_open: usize) -> Self {
        Self { state: Mutex::default(), max_open }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the map and the count consistent before anything
        // can panic, so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores an open challenge. When the table is full, challenges that expired before
    /// `now` make room first.
    pub(crate) fn put(&self, challenge: &ChallengeRecord, now: i64) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.open >= self.max_open {
            Self::prune_locked(&mut state, now);
        }
        if state.open >= self.max_open {
            return Err(StoreError::Busy(format!(
                "{} challenges are open (challenge.max_open); retry shortly",
                state.open
            )));
        }
        if state.entries.contains_key(&challenge.id) {
            // A random 128-bit id never collides; refuse rather than overwrite if it did.
            return Err(StoreError::Backend("challenge id collision".into()));
        }
        state.entries.insert(challenge.id.clone(), Entry::Open(Box::new(challenge.clone())));
        state.open += 1;
        Ok(())
    }

    pub(crate) fn consume(&self, id: &str) -> Consumed {
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(id) else { return Consumed::Unknown };
        let used = Entry::Used { expires_at: entry.expires_at() };
        match std::mem::replace(entry, used) {
            Entry::Used { .. } => Consumed::AlreadyUsed,
            Entry::Open(record) => {
                state.open -= 1;
                Consumed::Fresh(record)
            }
        }
    }

    pub(crate) fn prune(&self, before: i64) -> usize {
        Self::prune_locked(&mut self.lock(), before)
    }

    fn prune_locked(state: &mut State, before: i64) -> usize {
        let size = state.entries.len();
        let mut closed = 0;
        state.entries.retain(|_, entry| {
            let keep = entry.expires_at() >= before;
            if !keep && matches!(entry, Entry::Open(_)) {
                closed += 1;
            }
            keep
        });
        state.open -= closed;
        size - state.entries.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::store::EvidenceKind;

    fn challenge(id: &str, expires_at: i64) -> ChallengeRecord {
        ChallengeRecord { id: id.into(), kind: EvidenceKind::Snp, nonce: vec![1; 32], expires_at, tpm: None }
    }

    #[test]
    fn beyond_max_open_put_is_refused_until_one_is_used_pruned_or_expired() {
        let book = ChallengeBook::new(2);
        book.put(&challenge("a", 10), 0).unwrap();
        book.put(&challenge("b", 20), 0).unwrap();
        let full = book.put(&challenge("c", 30), 0).unwrap_err();
        assert!(matches!(full, StoreError::Busy(_)), "{full}");
        assert!(book.consume("c") == Consumed::Unknown, "a refused challenge is not stored");

        assert!(matches!(book.consume("a"), Consumed::Fresh(_)));
        book.put(&challenge("c", 30), 0).unwrap();
        // The tombstone of `a` and the open `b` expire; only `b` frees a slot.
        assert_eq!(book.prune(25), 2);
        book.put(&challenge("d", 40), 0).unwrap();
        assert!(matches!(book.put(&challenge("e", 40), 0).unwrap_err(), StoreError::Busy(_)));
        assert!(matches!(book.consume("c"), Consumed::Fresh(_)));
        assert!(book.consume("c") == Consumed::AlreadyUsed);

        // Full of open challenges that have expired: a new one makes room.
        book.put(&challenge("f", 50), 0).unwrap();
        assert!(matches!(book.put(&challenge("g", 90), 35).unwrap_err(), StoreError::Busy(_)));
        book.put(&challenge("g", 90), 60).unwrap();
        assert!(book.consume("d") == Consumed::Unknown, "expired and pruned");
        assert!(matches!(book.consume("g"), Consumed::Fresh(_)));
    }
}

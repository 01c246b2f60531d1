//! Challenges of one broker process, held in memory (the sled store's).
//!
//! A challenge lives for seconds, and a process restart may forget it: a VM whose
//! challenge is lost begins again, and a forgotten challenge can never be accepted. So
//! challenges need no disk write, which on the embedded store would otherwise cost two
//! writes (open, then used) per attestation. A used challenge is kept as a tombstone
//! until pruned, so a replay is told it was used rather than unknown. Open challenges are
//! bounded in all and per source address, so that a few hosts asking for challenges they
//! never finish cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{ChallengeRecord, Consumed, StoreError};

/// Open and used challenges, by id.
#[derive(Debug)]
pub(crate) struct ChallengeBook {
    state: Mutex<State>,
    limits: Limits,
}

/// How many challenges may be open at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// In all.
    pub(crate) max_open: usize,
    /// Asked for from one source address.
    pub(crate) max_open_per_source: usize,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    open: usize,
    open_by_source: HashMap<IpAddr, usize>,
}

impl State {
    /// Forgets one open challenge of `source`.
    fn close(&mut self, source: IpAddr) {
        self.open -= 1;
        if let Some(count) = self.open_by_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                self.open_by_source.remove(&source);
            }
        }
    }

    fn open_from(&self, source: IpAddr) -> usize {
        self.open_by_source.get(&source).copied().unwrap_or(0)
    }
}

#[derive(Debug)]
enum Entry {
    Open { record: Box<ChallengeRecord>, source: IpAddr },
    Used { expires_at: i64 },
}

impl Entry {
    fn expires_at(&self) -> i64 {
        match self {
            Self::Open { record, .. } => record.expires_at,
            Self::Used { expires_at } => *expires_at,
        }
    }
}

impl ChallengeBook {
    pub(crate) fn new(limits: Limits) -> Self {
        Self { state: Mutex::default(), limits }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below leaves the map and the counts consistent before anything
        // can panic, so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores an open challenge asked for from `source`. When a bound is reached,
    /// challenges that expired before `now` make room first.
    pub(crate) fn put(
        &self,
        challenge: &ChallengeRecord,
        source: IpAddr,
        now: i64,
    ) -> Result<(), StoreError> {
        let Limits { max_open, max_open_per_source } = self.limits;
        let mut state = self.lock();
        if state.open >= max_open || state.open_from(source) >= max_open_per_source {
            Self::prune_locked(&mut state, now);
        }
        if state.open >= max_open {
            return Err(StoreError::Busy(format!(
                "{} challenges are open (challenge.max_open); retry shortly",
                state.open
            )));
        }
        if state.open_from(source) >= max_open_per_source {
            return Err(StoreError::Busy(format!(
                "{source} has {max_open_per_source} challenges open (challenge.max_open_per_source): \
                 finish or let them expire"
            )));
        }
        if state.entries.contains_key(&challenge.id) {
            // A random 128-bit id never collides; refuse rather than overwrite if it did.
            return Err(StoreError::Backend("challenge id collision".into()));
        }
        state
            .entries
            .insert(challenge.id.clone(), Entry::Open { record: Box::new(challenge.clone()), source });
        state.open += 1;
        *state.open_by_source.entry(source).or_default() += 1;
        Ok(())
    }

    pub(crate) fn consume(&self, id: &str) -> Consumed {
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(id) else { return Consumed::Unknown };
        let used = Entry::Used { expires_at: entry.expires_at() };
        match std::mem::replace(entry, used) {
            Entry::Used { .. } => Consumed::AlreadyUsed,
            Entry::Open { record, source } => {
                state.close(source);
                Consumed::Fresh(record)
            }
        }
    }

    pub(crate) fn prune(&self, before: i64) -> usize {
        Self::prune_locked(&mut self.lock(), before)
    }

    fn prune_locked(state: &mut State, before: i64) -> usize {
        let size = state.entries.len();
        let mut closed = Vec::new();
        state.entries.retain(|_, entry| {
            let keep = entry.expires_at() >= before;
            if let (false, Entry::Open { source, .. }) = (keep, &*entry) {
                closed.push(*source);
            }
            keep
        });
        for source in closed {
            state.close(source);
        }
        size - state.entries.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::store::EvidenceKind;

    fn challenge(id: &str, expires_at: i64) -> ChallengeRecord {
        ChallengeRecord {
            id: id.into(),
            kind: EvidenceKind::Snp,
            nonce: vec![1; 32],
            expires_at,
            source: std::net::Ipv4Addr::LOCALHOST.into(),
            tpm: None,
        }
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn host(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, n))
    }

    #[test]
    fn beyond_max_open_put_is_refused_until_one_is_used_pruned_or_expired() {
        let book = ChallengeBook::new(Limits { max_open: 2, max_open_per_source: 10 });
        book.put(&challenge("a", 10), HOST, 0).unwrap();
        book.put(&challenge("b", 20), HOST, 0).unwrap();
        let full = book.put(&challenge("c", 30), HOST, 0).unwrap_err();
        assert!(
            matches!(&full, StoreError::Busy(reason) if reason.contains("challenge.max_open)")),
            "{full}"
        );
        assert!(book.consume("c") == Consumed::Unknown, "a refused challenge is not stored");

        assert!(matches!(book.consume("a"), Consumed::Fresh(_)));
        book.put(&challenge("c", 30), HOST, 0).unwrap();
        // The tombstone of `a` and the open `b` expire; only `b` frees a slot.
        assert_eq!(book.prune(25), 2);
        book.put(&challenge("d", 40), HOST, 0).unwrap();
        assert!(matches!(book.put(&challenge("e", 40), HOST, 0).unwrap_err(), StoreError::Busy(_)));
        assert!(matches!(book.consume("c"), Consumed::Fresh(_)));
        assert!(book.consume("c") == Consumed::AlreadyUsed);

        // Full of open challenges that have expired: a new one makes room.
        book.put(&challenge("f", 50), HOST, 0).unwrap();
        assert!(matches!(book.put(&challenge("g", 90), HOST, 35).unwrap_err(), StoreError::Busy(_)));
        book.put(&challenge("g", 90), HOST, 60).unwrap();
        assert!(book.consume("d") == Consumed::Unknown, "expired and pruned");
        assert!(matches!(book.consume("g"), Consumed::Fresh(_)));
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let book = ChallengeBook::new(Limits { max_open: 10, max_open_per_source: 2 });
        book.put(&challenge("a", 10), host(1), 0).unwrap();
        book.put(&challenge("b", 20), host(1), 0).unwrap();
        let refused = book.put(&challenge("c", 30), host(1), 0).unwrap_err();
        assert!(
            matches!(&refused, StoreError::Busy(reason) if reason.contains("10.0.1.1") && reason.contains("max_open_per_source")),
            "{refused}"
        );
        book.put(&challenge("c", 30), host(2), 0).unwrap();
        // Using one, or its expiry, gives the source its slot back.
        assert!(matches!(book.consume("a"), Consumed::Fresh(_)));
        book.put(&challenge("d", 30), host(1), 0).unwrap();
        assert!(matches!(book.put(&challenge("e", 40), host(1), 15).unwrap_err(), StoreError::Busy(_)));
        book.put(&challenge("e", 40), host(1), 25).unwrap();
        assert!(book.consume("b") == Consumed::Unknown, "expired and pruned");
        // The counts stay consistent: host 1 holds d and e, host 2 holds c.
        assert!(matches!(book.put(&challenge("f", 40), host(1), 25).unwrap_err(), StoreError::Busy(_)));
        assert_eq!(book.prune(100), 3);
        book.put(&challenge("f", 200), host(1), 100).unwrap();
        book.put(&challenge("g", 200), host(1), 100).unwrap();
    }
}

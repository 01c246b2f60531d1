//! The challenges one broker process has seen finished (the sled store's), in memory.
//!
//! Challenges are sealed into their ids ([`crate::challenge`]) under a key this process
//! made at start, so a restart forgets every challenge: none can be finished after it,
//! and a finished one needs remembering only here, until it expires. The set is bounded
//! (`challenge.max_used`): when it is full of ids that have not expired, a finish is
//! refused rather than risk accepting a challenge twice.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Consumed, StoreError};

/// Ids of finished challenges, with when they expire.
#[derive(Debug)]
pub(crate) struct UsedChallenges {
    used: Mutex<HashMap<String, i64>>,
    max: usize,
}

impl UsedChallenges {
    pub(crate) fn new(max: usize) -> Self {
        Self { used: Mutex::default(), max }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        // Every update is one map operation: a poisoned lock is safe to reuse.
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `id` used; when the set is full, ids that expired before `now` make room.
    pub(crate) fn consume(&self, id: &str, expires_at: i64, now: i64) -> Result<Consumed, StoreError> {
        let mut used = self.lock();
        if used.contains_key(id) {
            return Ok(Consumed::AlreadyUsed);
        }
        if used.len() >= self.max {
            used.retain(|_, expires| *expires >= now);
        }
        if used.len() >= self.max {
            return Err(StoreError::Busy(format!(
                "{} challenges finished within their lifetime are remembered (challenge.max_used); retry shortly",
                used.len()
            )));
        }
        used.insert(id.to_owned(), expires_at);
        Ok(Consumed::First)
    }

    pub(crate) fn prune(&self, before: i64) -> usize {
        let mut used = self.lock();
        let size = used.len();
        used.retain(|_, expires| *expires >= before);
        size - used.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn each_id_is_first_once_and_the_set_is_bounded() {
        let used = UsedChallenges::new(2);
        assert_eq!(used.consume("a", 10, 0).unwrap(), Consumed::First);
        assert_eq!(used.consume("a", 10, 0).unwrap(), Consumed::AlreadyUsed);
        assert_eq!(used.consume("b", 20, 0).unwrap(), Consumed::First);
        // Full of unexpired ids: refused, never forgotten early.
        let Err(StoreError::Busy(reason)) = used.consume("c", 30, 5) else {
            panic!("accepted past the bound")
        };
        assert!(reason.contains("challenge.max_used"), "{reason}");
        assert_eq!(used.consume("a", 10, 5).unwrap(), Consumed::AlreadyUsed);
        // Once "a" has expired it makes room (it can no longer be presented anyway).
        assert_eq!(used.consume("c", 30, 11).unwrap(), Consumed::First);
        assert_eq!(used.prune(25), 1);
        assert_eq!(used.consume("c", 30, 12).unwrap(), Consumed::AlreadyUsed);
    }
}

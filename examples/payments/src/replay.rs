//! Possession proofs are good once: a statement seen within the time it could still pass
//! (twice the allowed clock skew) is refused when presented again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use mooring_attestation::svid::POSSESSION_SKEW_SECONDS;
use sha2::{Digest, Sha256};

/// Most proofs remembered; beyond this, new proofs are refused rather than old ones forgotten.
const MAX_REMEMBERED: usize = 100_000;

/// Statements (by SHA-256 of their bytes) already used, with when they may be forgotten.
#[derive(Debug, Default)]
pub(crate) struct SeenProofs {
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

/// Why a proof cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Presented before.
    Replayed,
    /// Too many proofs in the window.
    Full,
}

impl SeenProofs {
    /// Records `statement` as used at `now`; refuses one already recorded.
    pub(crate) fn use_once(&self, statement: &[u8], now: i64) -> Result<(), Unusable> {
        let digest: [u8; 32] = Sha256::digest(statement).into();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, forget_at| *forget_at > now);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(Unusable::Full);
        }
        let forget_at = now.saturating_add(2 * POSSESSION_SKEW_SECONDS);
        match seen.insert(digest, forget_at) {
            Some(previous) if previous > now => Err(Unusable::Replayed),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_good_once_within_its_window() {
        let seen = SeenProofs::default();
        assert_eq!(seen.use_once(b"a", 100), Ok(()));
        assert_eq!(seen.use_once(b"b", 100), Ok(()));
        assert_eq!(seen.use_once(b"a", 101), Err(Unusable::Replayed));
        // Past the window the statement's own time check refuses it; the entry may go.
        assert_eq!(seen.use_once(b"a", 100 + 2 * POSSESSION_SKEW_SECONDS + 1), Ok(()));
    }
}

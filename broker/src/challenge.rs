//! Stateless challenges: everything `finish` needs is sealed into the challenge id itself.
//!
//! `begin` is unauthenticated (`/v1/snp/begin` asks for nothing), so whatever it stored
//! per request, a crowd of addresses could exhaust. It stores nothing: the challenge
//! record (nonce, expiry, the address that began, the TPM keys and class) is encrypted and
//! authenticated with AES-256-GCM under a key of the broker's, and sent as the challenge
//! id. `finish` opens it; an altered or foreign id does not open (`challenge_unknown`).
//! Single use is the store's (`use_once`): it remembers the ids finished until
//! they expire, so the only state is per `finish` of a genuine challenge, and it lives
//! one challenge TTL.
//!
//! The key: on the embedded store, random per process (a restart forgets every challenge,
//! as before); on PostgreSQL, derived from the key-encryption key every replica holds, so
//! a challenge begun on one replica finishes on another.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use base64::Engine as _;

use crate::records::ChallengeRecord;
use crate::refusal::{Code, Refusal};

/// Prefix of a sealed challenge id (its format version).
const PREFIX: &str = "c1.";
/// Authenticated with every challenge, so nothing else sealed under the key opens as one.
const AAD: &[u8] = b"mooring challenge v1";
/// Longest challenge id accepted: a TPM challenge carries the EK, AK and K public areas.
pub(crate) const MAX_CHALLENGE_ID: usize = 8 * 1024;

/// Seals and opens challenge records.
pub(crate) struct ChallengeSeal {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for ChallengeSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeSeal")
    }
}

fn engine() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

impl ChallengeSeal {
    /// A seal with `key` (32 bytes).
    pub(crate) fn new(key: &[u8; 32]) -> Result<Self, Refusal> {
        RandomizedNonceKey::new(&AES_256_GCM, key)
            .map(|key| Self { key })
            .map_err(|_| Refusal::new(Code::Internal, "challenge key unusable"))
    }

    /// The challenge id that carries `record`.
    pub(crate) fn seal(&self, record: &ChallengeRecord) -> Result<String, Refusal> {
        let mut in_out =
            serde_json::to_vec(record).map_err(|e| crate::service::internal("encoding the challenge", e))?;
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(AAD), &mut in_out)
            .map_err(|_| crate::service::internal("sealing the challenge", "AES-GCM failed"))?;
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(format!("{PREFIX}{}", engine().encode(sealed)))
    }

    /// The record a challenge id carries; `None` when it was not sealed by this key (never
    /// issued, altered, or from a broker that restarted since).
    pub(crate) fn open(&self, id: &str) -> Option<ChallengeRecord> {
        if id.len() > MAX_CHALLENGE_ID {
            return None;
        }
        let sealed = engine().decode(id.strip_prefix(PREFIX)?).ok()?;
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(AAD), &mut in_out).ok()?;
        serde_json::from_slice(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::records::EvidenceKind;

    fn record() -> ChallengeRecord {
        ChallengeRecord {
            id: "ab".repeat(16),
            kind: EvidenceKind::Snp,
            nonce: vec![7; 32],
            expires_at: 1000,
            source: std::net::Ipv4Addr::new(10, 0, 0, 1).into(),
            tpm: None,
        }
    }

    #[test]
    fn a_sealed_challenge_opens_only_unaltered_and_under_its_key() {
        let seal = ChallengeSeal::new(&[1; 32]).unwrap();
        let id = seal.seal(&record()).unwrap();
        assert!(id.starts_with(PREFIX));
        assert_eq!(seal.open(&id).unwrap(), record());
        // Two seals of one record differ (random nonces), both open.
        let again = seal.seal(&record()).unwrap();
        assert_ne!(id, again);
        assert_eq!(seal.open(&again).unwrap(), record());

        let mut altered = id.clone().into_bytes();
        let last = altered.len() - 5;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(seal.open(std::str::from_utf8(&altered).unwrap()), None, "altered");
        assert_eq!(ChallengeSeal::new(&[2; 32]).unwrap().open(&id), None, "another broker's key");
        assert_eq!(seal.open(&id[PREFIX.len()..]), None, "no version prefix");
        assert_eq!(seal.open("c1.!!!"), None, "not base64");
        assert_eq!(seal.open("c1.AAAA"), None, "shorter than a nonce");
        assert_eq!(seal.open(&format!("{id}{}", "A".repeat(MAX_CHALLENGE_ID))), None, "too long");
    }
}

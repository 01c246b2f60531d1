//! The SEV-SNP path: `begin` hands out a nonce; `finish` verifies the report, its
//! binding to the nonce and the credential key, and policy, then issues.

use mooring_attestation::protocol::SnpChallenge;

use super::{internal, Broker};
use crate::refusal::Refusal;
use crate::store::{ChallengeRecord, EvidenceKind};

impl Broker {
    /// `POST /v1/snp/begin`.
    pub(crate) fn snp_begin(&self) -> Result<SnpChallenge, Refusal> {
        let nonce: [u8; 32] = self.random()?;
        let id: [u8; 16] = self.random()?;
        let expires_at = self.now() + i64::from(self.config.challenge.ttl_seconds);
        let record = ChallengeRecord {
            id: hex::encode(id),
            kind: EvidenceKind::Snp,
            nonce: nonce.to_vec(),
            expires_at,
            tpm: None,
        };
        self.store.put_challenge(&record).map_err(|e| internal("storing the challenge", e))?;
        Ok(SnpChallenge { challenge_id: record.id, nonce: nonce.to_vec(), expires_at })
    }
}

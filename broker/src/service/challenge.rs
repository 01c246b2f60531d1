//! Challenges: sealed into their id at `begin` (nothing is stored), used up once at
//! `finish`, by the address that began them.

use mooring_attestation::protocol::HardwareId;

use super::{internal, store_failure, Broker, Caller};
use crate::records::{ChallengeRecord, EvidenceKind, TpmChallengeState};
use crate::refusal::{Code, Refusal};
use crate::store::{Consumed, Standing, StoreError};

impl Broker {
    /// A new challenge of `kind` for `caller`: a fresh nonce, the configured lifetime, and
    /// `tpm`'s state, sealed into its id. Returns the id and the record.
    pub(crate) fn new_challenge(
        &self,
        kind: EvidenceKind,
        caller: &Caller,
        tpm: Option<TpmChallengeState>,
    ) -> Result<(String, ChallengeRecord), Refusal> {
        let nonce: [u8; 32] = self.random()?;
        let id: [u8; 16] = self.random()?;
        let record = ChallengeRecord {
            id: hex::encode(id),
            kind,
            nonce: nonce.to_vec(),
            expires_at: self.now() + i64::from(self.config.challenge.ttl_seconds),
            source: caller.address,
            tpm,
        };
        Ok((self.challenges.seal(&record)?, record))
    }

    /// Takes a challenge for `finish`: one that does not open, has expired, is of the other
    /// kind or was begun from another address is refused; an accepted one is used up.
    pub(crate) fn consume(
        &self,
        id: &str,
        kind: EvidenceKind,
        caller: &Caller,
    ) -> Result<ChallengeRecord, Refusal> {
        let record = self.opened(id, kind, caller)?;
        self.use_up(&record)?;
        Ok(record)
    }

    /// Uses up an opened challenge.
    pub(crate) fn use_up(&self, record: &ChallengeRecord) -> Result<(), Refusal> {
        used_up(self.store.use_once(&record.id, record.expires_at).map_err(consuming)?)
    }

    /// Uses up an opened TPM challenge, reading in the same step what the store says about
    /// its EK (its admin status, its VM record).
    pub(crate) fn use_up_tpm(&self, record: &ChallengeRecord, ek: &HardwareId) -> Result<Standing, Refusal> {
        let (consumed, standing) =
            self.store.use_once_reading(&record.id, record.expires_at, ek).map_err(consuming)?;
        used_up(consumed)?;
        Ok(standing)
    }

    /// A challenge of `kind` that opens, is current and comes from its address; not used up.
    pub(crate) fn opened(
        &self,
        id: &str,
        kind: EvidenceKind,
        caller: &Caller,
    ) -> Result<ChallengeRecord, Refusal> {
        let record = self.challenges.open(id).ok_or_else(|| {
            Refusal::new(
                Code::ChallengeUnknown,
                "no such challenge: never issued, altered, or issued before the broker restarted; begin again",
            )
        })?;
        let now = self.now();
        if record.expires_at < now {
            return Err(Refusal::new(
                Code::ChallengeExpired,
                format!("challenge expired {} s ago: begin again", now - record.expires_at),
            ));
        }
        if record.kind != kind {
            return Err(Refusal::new(
                Code::ChallengeKind,
                "challenge was issued for the other evidence kind",
            ));
        }
        if record.source != caller.address {
            return Err(Refusal::new(
                Code::ChallengeAddressMismatch,
                format!(
                    "challenge was begun from {} and finished from {}: the credential binds the \
                     address that attested, so both steps must come from it",
                    record.source, caller.address
                ),
            ));
        }
        Ok(record)
    }
}

/// The TPM path's state of a TPM challenge.
pub(crate) fn tpm_state(record: &ChallengeRecord) -> Result<&TpmChallengeState, Refusal> {
    record.tpm.as_ref().ok_or_else(|| internal("challenge", "TPM challenge without state"))
}

/// What using a challenge up found, as the answer to the finish.
fn used_up(consumed: Consumed) -> Result<(), Refusal> {
    match consumed {
        Consumed::First => Ok(()),
        Consumed::AlreadyUsed => {
            Err(Refusal::new(Code::ChallengeUsed, "challenge already used: begin again"))
        }
    }
}

fn consuming(e: StoreError) -> Refusal {
    store_failure("consuming the challenge", e)
}

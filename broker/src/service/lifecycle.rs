//! A TPM VM's credentials live no longer than its boot: a newer boot voids the earlier
//! one's, and a TPM state seen in two places is a clone.

use mooring_attestation::protocol::{
    HardwareId, IdentityStatus, Revocation, RevocationCode, RevocationTarget,
};

use super::{internal, Broker, Caller};
use crate::audit::{Action, Outcome};
use crate::records::{BootCounters, VmRecord};
use crate::refusal::{Code, Refusal};

impl Broker {
    /// Judges the boot a TPM attests from against the one it last attested from. A newer
    /// boot voids the credentials of the earlier one (`superseded_by_reboot`). Clock
    /// information that does not move forward (an earlier boot than one already seen, or
    /// the same boot with a clock earlier by more than a challenge's lifetime) means two
    /// machines run one TPM state, a cloned
    /// vTPM: `clone_suspected`, the hardware identity blocked (`tpm.block_clones`) and
    /// every live credential of it revoked.
    /// `previous` is the VM's record as read when its challenge was used up.
    pub(super) fn judge_boot(
        &self,
        hardware: &HardwareId,
        spiffe_id: &str,
        previous: Option<VmRecord>,
        boot: BootCounters,
        clock: u64,
        caller: &Caller,
    ) -> Result<(), Refusal> {
        let Some(previous) = previous else {
            return Ok(());
        };
        let Some(earlier) = previous.boot else { return Ok(()) };
        let counters = |b: BootCounters| format!("resets {}, restarts {}", b.reset_count, b.restart_count);
        let clone = if boot < earlier {
            Some(format!(
                "the TPM attests from an earlier boot ({}) than one seen before ({})",
                counters(boot),
                counters(earlier)
            ))
        } else if boot == earlier
            // Two genuine quotes of one TPM may arrive in another order than they were made,
            // but never further apart than a challenge lives.
            && previous.tpm_clock.is_some_and(|seen| {
                clock.saturating_add(u64::from(self.config.challenge.ttl_seconds) * 1000) < seen
            })
        {
            Some(format!(
                "the TPM's clock went back within one boot ({clock} ms after {} ms, {})",
                previous.tpm_clock.unwrap_or_default(),
                counters(boot)
            ))
        } else {
            None
        };
        let (code, reason) = match (clone, boot > earlier) {
            (Some(reason), _) => {
                (RevocationCode::CloneSuspected, format!("{reason}: two machines share one TPM state"))
            }
            (None, true) => (
                RevocationCode::SupersededByReboot,
                format!("the VM attested from a newer boot ({} after {})", counters(boot), counters(earlier)),
            ),
            (None, false) => return Ok(()),
        };
        let now = self.now();
        for live in previous.live.iter().filter(|l| l.expires_at > now) {
            let revocation = Revocation {
                target: RevocationTarget::Credential(live.serial.clone()),
                revoked_at: now,
                reason: reason.clone(),
                code,
            };
            let mut event = self.event(
                Action::Attest,
                Outcome::Accepted,
                code.code().as_str(),
                reason.clone(),
                Some(caller),
            );
            event.hardware_id = Some(hardware.hex().to_owned());
            event.spiffe_id = Some(spiffe_id.to_owned());
            event.serial = Some(live.serial.clone());
            self.store.revoke(&revocation, event).map_err(|e| internal("revoking a credential", e))?;
        }
        if code != RevocationCode::CloneSuspected {
            return Ok(());
        }
        if self.config.tpm.block_clones {
            let mut event = self.event(
                Action::Attest,
                Outcome::Accepted,
                "blocked",
                format!("clone suspected: {reason}"),
                Some(caller),
            );
            event.hardware_id = Some(hardware.hex().to_owned());
            self.store
                .set_identity_status(hardware, IdentityStatus::Blocked, event)
                .map_err(|e| internal("blocking a cloned TPM", e))?;
        }
        Err(Refusal::new(Code::CloneSuspected, reason))
    }
}

//! A TPM VM's credentials live no longer than its boot: a newer boot voids the earlier
//! one's, and a TPM state seen in two places is a clone.

use mooring_attestation::protocol::{
    HardwareId, IdentityStatus, Revocation, RevocationCode, RevocationTarget,
};

use super::{internal, store_failure, Broker, Caller};
use crate::audit::{Action, Outcome};
use crate::records::{BootCounters, VmRecord};
use crate::refusal::{Code, Refusal};

/// What a TPM's clock information says about the boot it attests from, against the one it
/// last attested from (`earlier`, with the TPM clock then, `seen`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum BootVerdict {
    /// The same boot, the clock moving on (or back by no more than a challenge lives).
    SameBoot,
    /// A later boot: the earlier boot's credentials are void.
    Rebooted(String),
    /// Clock information that does not move forward: two machines run one TPM state.
    Cloned(String),
}

/// Judges `boot` at TPM clock `clock` (ms) against the last one seen. Two genuine quotes of
/// one TPM may arrive in another order than they were made, but never further apart than
/// `window_ms` (a challenge's lifetime).
fn judge(
    earlier: BootCounters,
    seen: Option<u64>,
    boot: BootCounters,
    clock: u64,
    window_ms: u64,
) -> BootVerdict {
    let counters = |b: BootCounters| format!("resets {}, restarts {}", b.reset_count, b.restart_count);
    if boot < earlier {
        return BootVerdict::Cloned(format!(
            "the TPM attests from an earlier boot ({}) than one seen before ({}): two machines share \
             one TPM state",
            counters(boot),
            counters(earlier)
        ));
    }
    if boot > earlier {
        return BootVerdict::Rebooted(format!(
            "the VM attested from a newer boot ({} after {})",
            counters(boot),
            counters(earlier)
        ));
    }
    match seen {
        Some(seen) if clock.saturating_add(window_ms) < seen => BootVerdict::Cloned(format!(
            "the TPM's clock went back within one boot ({clock} ms after {seen} ms, {}): two machines \
             share one TPM state",
            counters(boot)
        )),
        _ => BootVerdict::SameBoot,
    }
}

impl Broker {
    /// Judges the boot a TPM attests from against the one it last attested from ([`judge`]).
    /// A newer boot voids the credentials of the earlier one (`superseded_by_reboot`). A
    /// clone (`clone_suspected`) voids every live credential of the TPM, blocks its hardware
    /// identity (`tpm.block_clones`) and is refused. `previous` is the VM's record as read
    /// when its challenge was used up.
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
        let window_ms = u64::from(self.config.challenge.ttl_seconds) * 1000;
        let (code, reason) = match judge(earlier, previous.tpm_clock, boot, clock, window_ms) {
            BootVerdict::SameBoot => return Ok(()),
            BootVerdict::Rebooted(reason) => (RevocationCode::SupersededByReboot, reason),
            BootVerdict::Cloned(reason) => (RevocationCode::CloneSuspected, reason),
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
            self.store.revoke(&revocation, event).map_err(|e| store_failure("revoking a credential", e))?;
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

#[cfg(test)]
mod tests {
    use super::{judge, BootCounters, BootVerdict};

    const WINDOW: u64 = 120_000;

    fn boot(reset_count: u32, restart_count: u32) -> BootCounters {
        BootCounters { reset_count, restart_count }
    }

    #[test]
    fn the_same_boot_with_its_clock_moving_on_is_the_same_boot() {
        assert_eq!(judge(boot(3, 0), Some(50_000), boot(3, 0), 60_000, WINDOW), BootVerdict::SameBoot);
        // Quotes of one boot answered out of order, within a challenge's lifetime.
        assert_eq!(
            judge(boot(3, 0), Some(500_000), boot(3, 0), 500_000 - WINDOW, WINDOW),
            BootVerdict::SameBoot
        );
        // No clock recorded before: nothing to compare.
        assert_eq!(judge(boot(3, 0), None, boot(3, 0), 0, WINDOW), BootVerdict::SameBoot);
    }

    #[test]
    fn a_later_reset_or_restart_is_a_reboot() {
        assert!(matches!(judge(boot(3, 0), Some(9), boot(4, 0), 1, WINDOW), BootVerdict::Rebooted(_)));
        assert!(matches!(judge(boot(3, 0), Some(9), boot(3, 1), 1, WINDOW), BootVerdict::Rebooted(_)));
    }

    #[test]
    fn an_earlier_boot_is_a_clone() {
        let BootVerdict::Cloned(reason) = judge(boot(4, 0), Some(9), boot(3, 7), 99, WINDOW) else {
            panic!("not a clone")
        };
        assert!(reason.contains("earlier boot (resets 3, restarts 7)"), "{reason}");
    }

    #[test]
    fn a_clock_gone_back_within_one_boot_by_more_than_a_challenge_lives_is_a_clone() {
        let BootVerdict::Cloned(reason) =
            judge(boot(3, 0), Some(500_000), boot(3, 0), 500_000 - WINDOW - 1, WINDOW)
        else {
            panic!("not a clone")
        };
        assert!(reason.contains("clock went back within one boot"), "{reason}");
    }
}

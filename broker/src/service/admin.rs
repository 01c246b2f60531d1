//! Admin operations (the HTTP layer admits only admin client certificates).

use super::{internal, store_failure, Broker};
use crate::audit::{verify_chain, Action, AuditRecord, ChainReport, Outcome};
use crate::records::VmRecord;
use crate::refusal::{Code, Refusal};
use mooring_attestation::protocol::{
    IdentityChange, IdentityStatus, Revocation, RevocationCode, RevocationRequest, RevocationTarget,
};

fn check_hex(what: &str, id: &str) -> Result<(), Refusal> {
    if id.is_empty()
        || id.len() > 128
        || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(Refusal::new(
            Code::MalformedRequest,
            format!("{what}: lowercase hex, at most 128 digits"),
        ));
    }
    Ok(())
}

impl Broker {
    pub(crate) fn set_identity(&self, change: &IdentityChange, admin: &str) -> Result<(), Refusal> {
        check_hex("identity", change.identity.hex())?;
        let mut event = self.event(
            Action::Admin,
            Outcome::Accepted,
            match change.status {
                IdentityStatus::Enrolled => "enrolled",
                IdentityStatus::Blocked => "blocked",
            },
            format!("by {admin}"),
            None,
        );
        event.hardware_id = Some(change.identity.hex().to_owned());
        self.store
            .set_identity_status(&change.identity, change.status, event)
            .map_err(|e| internal("enrollment", e))
    }

    pub(crate) fn revoke(&self, request: &RevocationRequest, admin: &str) -> Result<Revocation, Refusal> {
        if let RevocationTarget::Credential(serial) = &request.target {
            // Serials are matched exactly, here and by offline verifiers.
            check_hex("credential serial", serial)?;
        }
        let (RevocationTarget::Credential(id) | RevocationTarget::Vm(id)) = &request.target;
        if id.is_empty() || id.chars().count() > 512 || request.reason.chars().count() > 512 {
            return Err(Refusal::new(
                Code::MalformedRequest,
                "revocation target and reason: 1..512 characters",
            ));
        }
        // Revoking nothing is an operator's typo (a wrong serial or SPIFFE ID): say so,
        // rather than answer as if a credential had been stopped.
        let exists = match &request.target {
            RevocationTarget::Credential(serial) => {
                self.store.credential(serial).map_err(|e| internal("reading the credential", e))?.is_some()
            }
            RevocationTarget::Vm(spiffe_id) => self
                .store
                .vms()
                .map_err(|e| internal("listing VMs", e))?
                .iter()
                .any(|vm| &vm.spiffe_id == spiffe_id),
        };
        if !exists {
            return Err(Refusal::new(
                Code::NotFound,
                match &request.target {
                    RevocationTarget::Credential(_) => "no credential with this serial was issued",
                    RevocationTarget::Vm(_) => "no VM with this SPIFFE ID has attested",
                },
            ));
        }
        let revocation = Revocation {
            target: request.target.clone(),
            revoked_at: self.now(),
            reason: request.reason.clone(),
            code: RevocationCode::Revoked,
        };
        let mut event = self.event(
            Action::Admin,
            Outcome::Accepted,
            "revoked",
            format!("{} (by {admin})", request.reason),
            None,
        );
        match &request.target {
            RevocationTarget::Credential(serial) => event.serial = Some(serial.clone()),
            RevocationTarget::Vm(spiffe_id) => event.spiffe_id = Some(spiffe_id.clone()),
        }
        self.store.revoke(&revocation, event).map_err(|e| store_failure("revocation", e))?;
        Ok(revocation)
    }

    pub(crate) fn vms(&self) -> Result<Vec<VmRecord>, Refusal> {
        self.store.vms().map_err(|e| internal("listing VMs", e))
    }

    pub(crate) fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, Refusal> {
        self.store
            .audit_records(after, limit.clamp(1, 1000))
            .map_err(|e| internal("reading the audit log", e))
    }

    /// Verifies the whole audit chain against the stored head.
    pub(crate) fn verify_audit(&self) -> Result<Result<ChainReport, String>, Refusal> {
        let head = self.store.audit_head().map_err(|e| internal("reading the audit head", e))?;
        Ok(verify_chain(self.store.audit_scan(head.seq), head).map_err(|e| e.to_string()))
    }

    /// Reloads the policy; the old one stays in force when the new one is bad.
    pub(crate) fn reload(&self, admin: &str) -> Result<String, Refusal> {
        match self.reload_policy() {
            Ok(policy) => {
                let event = self.event(
                    Action::Admin,
                    Outcome::Accepted,
                    "policy_reloaded",
                    format!("by {admin}"),
                    None,
                );
                self.store.audit(event).map_err(|e| store_failure("audit", e))?;
                Ok(policy.digest().to_owned())
            }
            Err(e) => {
                let refusal = Refusal::new(
                    Code::MalformedRequest,
                    format!("policy not reloaded, old policy in force: {e}"),
                );
                self.audit_refusal(Action::Admin, &refusal, None, None);
                Err(refusal)
            }
        }
    }
}

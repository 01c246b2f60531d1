//! Issuing: sign the credentials, record them with their audit record, answer.

use mooring_attestation::protocol::{HardwareId, IssuedCredentials, SealedSecret};

use super::{internal, store_failure, Broker, Caller};
use crate::audit::{Action, Outcome};
use crate::issuer::Subject;
use crate::records::{BootCounters, CredentialRecord};
use crate::refusal::Refusal;

impl Broker {
    /// Issues credentials and records them with their audit record before answering.
    /// `evidence` says in a few words what the VM proved itself with (for the audit log).
    pub(crate) fn issue(
        &self,
        subject: Subject,
        hardware: HardwareId,
        caller: &Caller,
        evidence: &str,
        secrets: Vec<SealedSecret>,
        boot: Option<(BootCounters, u64)>,
    ) -> Result<IssuedCredentials, Refusal> {
        let now = self.now();
        let issued = self.issuer.issue(&subject, now).map_err(|e| internal("signing credentials", e))?;
        let record = CredentialRecord {
            serial: issued.serial.clone(),
            hardware_id: hardware,
            spiffe_id: subject.spiffe_id.clone(),
            class: subject.class.clone(),
            bound_address: subject.bound_address,
            issued_at: issued.issued_at,
            expires_at: issued.expires_at,
            boot: boot.map(|(counters, _)| counters),
            tpm_clock: boot.map(|(_, clock)| clock),
        };
        let mut event = self.event(
            Action::Attest,
            Outcome::Accepted,
            "issued",
            format!(
                "class {} admitted on {evidence}; credentials bound to {}",
                subject.class, subject.bound_address
            ),
            Some(caller),
        );
        event.hardware_id = Some(subject.hardware_id.clone());
        event.spiffe_id = Some(subject.spiffe_id.clone());
        event.serial = Some(issued.serial.clone());
        self.store.issue(&record, event).map_err(|e| store_failure("recording the credential", e))?;
        self.metrics.issued();
        Ok(IssuedCredentials {
            spiffe_id: subject.spiffe_id,
            class: subject.class,
            x509_svid: issued.x509_svid_pem,
            x509_serial: issued.serial,
            jwt_svid: issued.jwt_svid,
            x509_bundle: self.issuer.x509_bundle_pem(now),
            expires_at: issued.expires_at,
            renew_after: issued.issued_at + (issued.expires_at - issued.issued_at) / 2,
            bound_address: subject.bound_address,
            secrets,
        })
    }
}

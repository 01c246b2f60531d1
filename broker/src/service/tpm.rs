//! The TPM path: `begin` checks the identity and sends a credential-activation
//! challenge; `finish` checks activation, quote, certification, event log and policy,
//! then issues.

use mooring_attestation::protocol::{
    tpm_qualifying_data, HardwareId, IdentityStatus, IssuedCredentials, Revocation, RevocationCode,
    RevocationTarget, TpmBeginRequest, TpmChallenge, TpmFinishRequest,
};
use mooring_attestation::tpm::appraisal::TpmAppraisal;
use mooring_attestation::tpm::attest::{Ak, Signature, AK_ATTRIBUTES};
use mooring_attestation::tpm::certify::{verify_certify, NON_EXPORTABLE_SIGNING_KEY};
use mooring_attestation::tpm::credential::make_credential;
use mooring_attestation::tpm::ekcert::verify_ek_certificate;
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_attestation::tpm::public::{ObjectAttributes, Public};
use mooring_attestation::tpm::quote::{verify_quote, QuoteError, QuoteExpectation};
use sha2::{Digest, Sha256};

use super::{internal, Broker, Caller};
use crate::audit::{Action, Outcome};
use crate::issuer::Subject;
use crate::policy::TpmIdentity;
use crate::records::{BootCounters, ChallengeRecord, CredentialRecord, EvidenceKind, TpmChallengeState};
use crate::refusal::{Code, Refusal};
use mooring_attestation::svid::CredentialKey;

/// Hardware identity of an EK: SHA-256 of its SubjectPublicKeyInfo, hex.
pub(crate) fn ek_hardware_id(ek: &Public) -> String {
    hex::encode(Sha256::digest(ek.key().to_spki_der()))
}

struct Keys {
    ek: Public,
    ak: Public,
    key: Public,
    credential_key: CredentialKey,
}

fn parse_keys(ek: &[u8], ak: &[u8], key: &[u8]) -> Result<Keys, Refusal> {
    let ek =
        Public::from_tpm2b(ek).map_err(|e| Refusal::new(Code::EkInvalid, format!("EK public area: {e}")))?;
    let ak =
        Public::from_tpm2b(ak).map_err(|e| Refusal::new(Code::AkInvalid, format!("AK public area: {e}")))?;
    let missing = ak.attributes().missing(AK_ATTRIBUTES);
    if !missing.is_empty() || ak.attributes().has(ObjectAttributes::DECRYPT) {
        return Err(Refusal::new(
            Code::AkInvalid,
            format!("AK must be a restricted signing key that never left the TPM; missing {missing:?}"),
        ));
    }
    let key = Public::from_tpm2b(key)
        .map_err(|e| Refusal::new(Code::KeyInvalid, format!("credential key public area: {e}")))?;
    let missing = key.attributes().missing(NON_EXPORTABLE_SIGNING_KEY);
    if !missing.is_empty() {
        return Err(Refusal::new(
            Code::KeyInvalid,
            format!("credential key must be a non-exportable TPM signing key; missing {missing:?}"),
        ));
    }
    let credential_key =
        CredentialKey::from_public_key(key.key()).map_err(|e| Refusal::new(Code::KeyInvalid, e))?;
    Ok(Keys { ek, ak, key, credential_key })
}

impl Broker {
    /// `POST /v1/tpm/begin`.
    pub(crate) fn tpm_begin(
        &self,
        request: &TpmBeginRequest,
        caller: &Caller,
    ) -> Result<TpmChallenge, Refusal> {
        self.audited(Action::Begin, caller, |hardware_id| self.tpm_begin_inner(request, caller, hardware_id))
    }

    fn tpm_begin_inner(
        &self,
        request: &TpmBeginRequest,
        caller: &Caller,
        hardware_id_out: &mut Option<String>,
    ) -> Result<TpmChallenge, Refusal> {
        let keys = parse_keys(&request.ek_public, &request.ak_public, &request.key_public)?;
        let hardware_id = ek_hardware_id(&keys.ek);
        let status = self
            .store
            .identity_status(&HardwareId::Ek(hardware_id.clone()))
            .map_err(|e| internal("reading enrollment", e))?;
        let ek_issuer = match &request.ek_certificate {
            Some(cert) => {
                let verified = verify_ek_certificate(cert, &[], &self.ek_roots, self.clock.now())
                    .map_err(|e| Refusal::new(Code::EkUntrusted, format!("EK certificate: {e}")))?;
                verified.matches_public_key(keys.ek.key()).map_err(|e| {
                    Refusal::new(Code::EkMismatch, format!("EK certificate and EK public area: {e}"))
                })?;
                Some(verified.issuer().to_owned())
            }
            None if status == Some(IdentityStatus::Enrolled) => None,
            None => {
                return Err(Refusal::new(
                    Code::EkUntrusted,
                    format!("no EK certificate, and EK {hardware_id} is not enrolled"),
                ))
            }
        };
        // The EK is vouched for (certificate or enrollment): refusals from here on are about
        // a known TPM and are recorded one by one.
        *hardware_id_out = Some(hardware_id.clone());
        let policy = self.policy();
        let class = policy.match_tpm(TpmIdentity {
            ek_issuer: ek_issuer.as_deref(),
            hardware_id: &hardware_id,
            status,
        })?;
        class.check_address(caller.address)?;
        let rules = class.tpm().ok_or_else(|| internal("policy", "TPM class without TPM rules"))?;

        let secret: [u8; 32] = self.random()?;
        let challenge = make_credential(&keys.ek, &keys.ak.name(), &secret, &self.rng).map_err(|e| {
            Refusal::new(Code::EkInvalid, format!("cannot make a credential for this EK: {e}"))
        })?;
        let nonce: [u8; 32] = self.random()?;
        let id: [u8; 16] = self.random()?;
        let expires_at = self.now() + i64::from(self.config.challenge.ttl_seconds);
        let record = ChallengeRecord {
            id: hex::encode(id),
            kind: EvidenceKind::Tpm,
            nonce: nonce.to_vec(),
            expires_at,
            source: caller.address,
            tpm: Some(TpmChallengeState {
                secret_digest: Sha256::digest(secret).to_vec(),
                ek_public: request.ek_public.clone(),
                ak_public: request.ak_public.clone(),
                key_public: request.key_public.clone(),
                hardware_id,
                class: class.name().to_owned(),
                ek_issuer,
            }),
        };
        Ok(TpmChallenge {
            challenge_id: self.open_challenge(&record)?,
            nonce: nonce.to_vec(),
            credential_blob: challenge.id_object().to_vec(),
            encrypted_secret: challenge.encrypted_secret().to_vec(),
            pcr_selection: rules.selection_map(),
            expires_at,
        })
    }

    /// `POST /v1/tpm/finish`.
    pub(crate) fn tpm_finish(
        &self,
        request: &TpmFinishRequest,
        caller: &Caller,
    ) -> Result<IssuedCredentials, Refusal> {
        self.audited(Action::Attest, caller, |hardware_id| {
            self.tpm_finish_inner(request, caller, hardware_id)
        })
    }

    fn tpm_finish_inner(
        &self,
        request: &TpmFinishRequest,
        caller: &Caller,
        hardware_id_out: &mut Option<String>,
    ) -> Result<IssuedCredentials, Refusal> {
        let record = self.consume(&request.challenge_id, EvidenceKind::Tpm, caller)?;
        let state =
            record.tpm.as_ref().ok_or_else(|| internal("challenge", "TPM challenge without state"))?;
        *hardware_id_out = Some(state.hardware_id.clone());

        let digest = Sha256::digest(&request.activated_secret);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&digest, &state.secret_digest).is_err() {
            return Err(Refusal::new(
                Code::ActivationFailed,
                "activated secret is wrong: the AK is not in the TPM that holds this EK",
            ));
        }
        let keys = parse_keys(&state.ek_public, &state.ak_public, &state.key_public)?;
        let hardware = HardwareId::Ek(state.hardware_id.clone());
        if self.store.identity_status(&hardware).map_err(|e| internal("reading enrollment", e))?
            == Some(IdentityStatus::Blocked)
        {
            return Err(Refusal::new(
                Code::VmBlocked,
                format!("EK {} is blocked by an administrator", state.hardware_id),
            ));
        }
        let policy = self.policy();
        let class = policy.class(&state.class).ok_or_else(|| {
            Refusal::new(
                Code::NoMatchingClass,
                format!("class {:?} was removed from the policy: begin again", state.class),
            )
        })?;
        class.check_address(caller.address)?;
        let rules = class.tpm().ok_or_else(|| internal("policy", "TPM class without TPM rules"))?;

        let pcrs = pcr_values(request)?;
        let signature = Signature::parse(&request.quote_signature)
            .map_err(|e| Refusal::new(Code::QuoteInvalid, format!("quote signature: {e}")))?;
        let qualifying_data = tpm_qualifying_data(&record.nonce, &state.key_public);
        let expected = QuoteExpectation { qualifying_data: &qualifying_data, selection: rules.selection() };
        let quote =
            verify_quote(Ak::Tpm(&keys.ak), &request.quote, &signature, &pcrs, &expected).map_err(|e| {
                let code = match &e {
                    QuoteError::QualifyingData { .. } => Code::NonceMismatch,
                    QuoteError::Selection { .. } => Code::PcrSelectionMismatch,
                    _ => Code::QuoteInvalid,
                };
                Refusal::new(code, format!("quote: {e}"))
            })?;
        let certify_signature = Signature::parse(&request.certify_signature)
            .map_err(|e| Refusal::new(Code::CertifyInvalid, format!("certify signature: {e}")))?;
        verify_certify(
            &keys.ak,
            &keys.key,
            &request.certify,
            &certify_signature,
            None,
            NON_EXPORTABLE_SIGNING_KEY,
        )
        .map_err(|e| {
            Refusal::new(Code::CertifyInvalid, format!("certification of the credential key: {e}"))
        })?;
        let appraisal = TpmAppraisal::new(quote, request.event_log.as_deref(), rules.bank())
            .map_err(|e| Refusal::new(Code::EventLogMismatch, format!("event log: {e}")))?;
        rules.check(&appraisal)?;

        let subject = Subject {
            spiffe_id: class.spiffe_id(self.issuer.trust_domain(), &state.hardware_id),
            class: class.name().to_owned(),
            hardware_id: state.hardware_id.clone(),
            key: keys.credential_key,
            bound_address: caller.address,
            ttl_seconds: class.ttl_seconds(),
            audiences: class.audiences().to_vec(),
        };
        let secrets = self.seal_tpm_secrets(class, &keys.ek, appraisal.pcrs())?;
        let evidence = match &state.ek_issuer {
            Some(issuer) => format!("TPM quote, EK certified by {issuer}"),
            None => "TPM quote, enrolled EK".to_owned(),
        };
        let clock = appraisal.quote().clock();
        let boot = BootCounters { reset_count: clock.reset_count, restart_count: clock.restart_count };
        self.judge_boot(&hardware, &subject.spiffe_id, boot, clock.clock, caller)?;
        self.issue(subject, hardware, caller, &evidence, secrets, Some((boot, clock.clock)))
    }

    /// Judges the boot a TPM attests from against the one it last attested from. A newer
    /// boot voids the credentials of the earlier one (`superseded_by_reboot`). Clock
    /// information that does not move forward (an earlier boot than one already seen, or
    /// the same boot with a clock earlier by more than a challenge's lifetime) means two
    /// machines run one TPM state, a cloned
    /// vTPM: `clone_suspected`, the hardware identity blocked (`tpm.block_clones`) and
    /// every live credential of it revoked.
    fn judge_boot(
        &self,
        hardware: &HardwareId,
        spiffe_id: &str,
        boot: BootCounters,
        clock: u64,
        caller: &Caller,
    ) -> Result<(), Refusal> {
        let key = crate::store::vm_key(hardware, spiffe_id);
        let Some(previous) = self.store.vm(&key).map_err(|e| internal("reading the VM", e))? else {
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

    /// Issues credentials and records them with their audit record before answering.
    /// `evidence` says in a few words what the VM proved itself with (for the audit log).
    pub(crate) fn issue(
        &self,
        subject: Subject,
        hardware: HardwareId,
        caller: &Caller,
        evidence: &str,
        secrets: Vec<mooring_attestation::protocol::SealedSecret>,
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
        self.store.issue(&record, event).map_err(|e| internal("recording the credential", e))?;
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

fn pcr_values(request: &TpmFinishRequest) -> Result<PcrValues, Refusal> {
    PcrValues::from_map(&request.pcrs).map_err(|e| Refusal::new(Code::MalformedRequest, format!("pcrs: {e}")))
}

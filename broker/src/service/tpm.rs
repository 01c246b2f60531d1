//! The TPM path: `begin` checks the identity and sends a credential-activation
//! challenge; `finish` checks activation, quote, certification, event log and policy,
//! then issues.

use mooring_attestation::crypto::PublicKey;
use mooring_attestation::protocol::{
    tpm_qualifying_data, HardwareId, IdentityStatus, IssuedCredentials, RecordedEvidence, RecordedExchange,
    TpmBeginRequest, TpmChallenge, TpmFinishRequest,
};
use mooring_attestation::svid::CredentialKey;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::appraisal::TpmAppraisal;
use mooring_attestation::tpm::attest::{Ak, Signature, AK_ATTRIBUTES};
use mooring_attestation::tpm::certify::{verify_certify, NON_EXPORTABLE_SIGNING_KEY};
use mooring_attestation::tpm::credential::make_credential;
use mooring_attestation::tpm::ekcert::verify_ek_certificate;
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_attestation::tpm::public::{ObjectAttributes, Public};
use mooring_attestation::tpm::quote::{verify_quote, QuoteError, QuoteExpectation, VerifiedQuote};
use mooring_attestation::x509::TrustStore;
use sha2::{Digest, Sha256};
use std::time::SystemTime;

use super::challenge::tpm_state;
use super::event_logs::FinishLog;
use super::{internal, standing, Broker, Caller};
use crate::audit::Action;
use crate::issuer::Subject;
use crate::policy::{TpmApplicant, TpmRules};
use crate::records::{BootCounters, ChallengeRecord, EvidenceKind, TpmChallengeState};
use crate::refusal::{Code, Refusal};
use crate::store::Standing;

/// Hardware identity of an EK: SHA-256 of its SubjectPublicKeyInfo, hex.
pub(crate) fn ek_hardware_id(ek: &PublicKey) -> String {
    hex::encode(Sha256::digest(ek.to_spki_der()))
}

/// An EK vouched for by its certificate (`ek_issuer`) or by enrollment.
pub(super) struct VouchedEk {
    pub(super) hardware_id: String,
    pub(super) ek_issuer: Option<String>,
    /// What an administrator said about it, as read at `begin`.
    pub(super) status: Option<IdentityStatus>,
}

pub(super) struct Keys {
    pub(super) ek: Public,
    ak: Public,
    key: Public,
    credential_key: CredentialKey,
}

pub(super) fn parse_keys(ek: &[u8], ak: &[u8], key: &[u8]) -> Result<Keys, Refusal> {
    let ek =
        Public::from_tpm2b(ek).map_err(|e| Refusal::new(Code::EkInvalid, format!("EK public area: {e}")))?;
    let ak = parse_ak(ak)?;
    let (key, credential_key) = parse_credential_key(key)?;
    Ok(Keys { ek, ak, key, credential_key })
}

/// An AK's `TPM2B_PUBLIC`: a restricted signing key that never left its TPM.
pub(super) fn parse_ak(ak: &[u8]) -> Result<Public, Refusal> {
    let ak =
        Public::from_tpm2b(ak).map_err(|e| Refusal::new(Code::AkInvalid, format!("AK public area: {e}")))?;
    let missing = ak.attributes().missing(AK_ATTRIBUTES);
    if !missing.is_empty() || ak.attributes().has(ObjectAttributes::DECRYPT) {
        return Err(Refusal::new(
            Code::AkInvalid,
            format!("AK must be a restricted signing key that never left the TPM; missing {missing:?}"),
        ));
    }
    Ok(ak)
}

/// The credential key K's `TPM2B_PUBLIC`: a non-exportable TPM signing key of a kind
/// credentials are issued for.
pub(super) fn parse_credential_key(key: &[u8]) -> Result<(Public, CredentialKey), Refusal> {
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
    Ok((key, credential_key))
}

/// A quote's `TPMT_SIGNATURE`.
pub(super) fn quote_signature(bytes: &[u8]) -> Result<Signature, Refusal> {
    Signature::parse(bytes).map_err(|e| Refusal::new(Code::QuoteInvalid, format!("quote signature: {e}")))
}

/// The refusal for a quote that does not verify.
pub(super) fn quote_refusal(e: &QuoteError) -> Refusal {
    let code = match e {
        QuoteError::QualifyingData { .. } => Code::NonceMismatch,
        QuoteError::Selection { .. } => Code::PcrSelectionMismatch,
        _ => Code::QuoteInvalid,
    };
    Refusal::new(code, format!("quote: {e}"))
}

/// TPM2_Certify(K) by the AK: K is a non-exportable key in the AK's TPM.
pub(super) fn check_certify(
    ak: Ak<'_>,
    key: &Public,
    certify: &[u8],
    signature: &[u8],
) -> Result<(), Refusal> {
    let signature = Signature::parse(signature)
        .map_err(|e| Refusal::new(Code::CertifyInvalid, format!("certify signature: {e}")))?;
    verify_certify(ak, key, certify, &signature, None, NON_EXPORTABLE_SIGNING_KEY).map_err(|e| {
        Refusal::new(Code::CertifyInvalid, format!("certification of the credential key: {e}"))
    })?;
    Ok(())
}

/// A verified quote and the event log (when sent) replayed against it.
pub(super) fn appraise_boot(
    quote: VerifiedQuote,
    event_log: Option<&[u8]>,
    bank: HashAlg,
) -> Result<TpmAppraisal, Refusal> {
    TpmAppraisal::new(quote, event_log, bank)
        .map_err(|e| Refusal::new(Code::EventLogMismatch, format!("event log: {e}")))
}

/// The PCR values a finish sent.
pub(super) fn pcr_values(
    pcrs: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
) -> Result<PcrValues, Refusal> {
    PcrValues::from_map(pcrs).map_err(|e| Refusal::new(Code::MalformedRequest, format!("pcrs: {e}")))
}

/// The boot counters and clock of a quote, for [`Broker::judge_boot`].
pub(super) fn boot_of(appraisal: &TpmAppraisal) -> (BootCounters, u64) {
    let clock = appraisal.quote().clock();
    (BootCounters { reset_count: clock.reset_count, restart_count: clock.restart_count }, clock.clock)
}

/// The EK of a `begin` vouched for: its certificate chains to `roots` and names this
/// EK, or (without one) an administrator enrolled it (`status`).
pub(super) fn vouch_ek(
    request: &TpmBeginRequest,
    keys: &Keys,
    roots: &TrustStore,
    now: SystemTime,
    status: Option<IdentityStatus>,
) -> Result<VouchedEk, Refusal> {
    let hardware_id = ek_hardware_id(keys.ek.key());
    let ek_issuer = match &request.ek_certificate {
        Some(cert) => {
            let verified = verify_ek_certificate(cert, &[], roots, now)
                .map_err(|e| Refusal::new(Code::EkUntrusted, format!("EK certificate: {e}")))?;
            verified.matches_public_key(keys.ek.key()).map_err(|e| {
                Refusal::new(Code::EkMismatch, format!("EK certificate and EK public area: {e}"))
            })?;
            Some(verified.issuer().to_owned())
        }
        None if status == Some(IdentityStatus::Enrolled) => None,
        None => {
            // A blocked EK is refused as blocked (vm_blocked), not as never enrolled.
            standing(&HardwareId::Ek(hardware_id.clone()), status)?;
            return Err(Refusal::new(
                Code::EkUntrusted,
                format!("no EK certificate, and EK {hardware_id} is not enrolled"),
            ));
        }
    };
    Ok(VouchedEk { hardware_id, ek_issuer, status })
}

/// What a TPM `finish` shows, appraised against a class's `rules`: the quote by the AK
/// answers `nonce` for K and covers the class's PCRs, K is certified by the AK, the event
/// log replays, and the boot state is one the class admits.
pub(super) fn appraise_tpm(
    keys: &Keys,
    request: &TpmFinishRequest,
    event_log: Option<&[u8]>,
    nonce: &[u8],
    key_public: &[u8],
    rules: &TpmRules,
) -> Result<TpmAppraisal, Refusal> {
    let pcrs = pcr_values(&request.pcrs)?;
    let signature = quote_signature(&request.quote_signature)?;
    let qualifying_data = tpm_qualifying_data(nonce, key_public);
    let expected = QuoteExpectation { qualifying_data: &qualifying_data, selection: rules.selection() };
    let quote = verify_quote(Ak::Tpm(&keys.ak), &request.quote, &signature, &pcrs, &expected)
        .map_err(|e| quote_refusal(&e))?;
    check_certify(Ak::Tpm(&keys.ak), &keys.key, &request.certify, &request.certify_signature)?;
    let appraisal = appraise_boot(quote, event_log, rules.bank())?;
    rules.check(&appraisal)?;
    Ok(appraisal)
}

impl Broker {
    /// `POST /v1/tpm/begin`: an EK vouched for (certificate or enrollment), its class, and a
    /// credential-activation challenge. Nothing at `begin` proves the caller holds the TPM
    /// (EK certificates are public), so its refusals are counted, never recorded one by one.
    /// A blocked TPM with an EK certificate is refused at `finish` unless a class matches on
    /// enrollment.
    pub(crate) fn tpm_begin(
        &self,
        request: &TpmBeginRequest,
        caller: &Caller,
    ) -> Result<TpmChallenge, Refusal> {
        self.anonymous(Action::Begin, caller, || {
            let (keys, ek) = self.vouched_ek(request)?;
            self.tpm_challenge(request, caller, &keys, &ek)
        })
    }

    /// The keys of a `begin`, and its EK vouched for by a certificate chaining to the
    /// configured roots, or by enrollment.
    fn vouched_ek(&self, request: &TpmBeginRequest) -> Result<(Keys, VouchedEk), Refusal> {
        let keys = parse_keys(&request.ek_public, &request.ak_public, &request.key_public)?;
        let hardware_id = ek_hardware_id(keys.ek.key());
        // An EK with a certificate needs the administrator's word at `begin` only when a
        // class matches on enrollment; otherwise it is read once, at `finish`, as the
        // challenge is used up (where a blocked TPM is refused, on the record). One store
        // read less per attestation: a database round trip with PostgreSQL.
        let status = if request.ek_certificate.is_none() || self.policy().matches_enrollment() {
            self.store
                .identity_status(&HardwareId::Ek(hardware_id.clone()))
                .map_err(|e| internal("reading enrollment", e))?
        } else {
            None
        };
        let ek = vouch_ek(request, &keys, &self.ek_roots, self.clock.now(), status)?;
        Ok((keys, ek))
    }

    /// The class of a vouched-for EK, and its challenge.
    fn tpm_challenge(
        &self,
        request: &TpmBeginRequest,
        caller: &Caller,
        keys: &Keys,
        ek: &VouchedEk,
    ) -> Result<TpmChallenge, Refusal> {
        let VouchedEk { hardware_id, ek_issuer, status } = ek;
        let enrolled = standing(&HardwareId::Ek(hardware_id.clone()), *status)?;
        let policy = self.policy();
        let class =
            policy.match_tpm(TpmApplicant { ek_issuer: ek_issuer.as_deref(), hardware_id, enrolled })?;
        class.check_address(caller.address)?;
        let rules = class.tpm().ok_or_else(|| internal("policy", "TPM class without TPM rules"))?;

        let secret: [u8; 32] = self.random()?;
        let challenge = make_credential(&keys.ek, &keys.ak.name(), &secret, &self.rng).map_err(|e| {
            Refusal::new(Code::EkInvalid, format!("cannot make a credential for this EK: {e}"))
        })?;
        let state = TpmChallengeState {
            secret_digest: Sha256::digest(secret).to_vec(),
            ek_public: request.ek_public.clone(),
            ak_public: request.ak_public.clone(),
            key_public: request.key_public.clone(),
            hardware_id: hardware_id.clone(),
            class: class.name().to_owned(),
            ek_issuer: ek_issuer.clone(),
        };
        let (challenge_id, record) = self.new_challenge(EvidenceKind::Tpm, caller, Some(state))?;
        Ok(TpmChallenge {
            challenge_id,
            nonce: record.nonce,
            credential_blob: challenge.id_object().to_vec(),
            encrypted_secret: challenge.encrypted_secret().to_vec(),
            pcr_selection: rules.selection_map(),
            expires_at: record.expires_at,
        })
    }

    /// `POST /v1/tpm/finish`: the activated secret proves the AK is in the TPM that holds the
    /// challenge's EK; from then on refusals are about that TPM and recorded one by one.
    /// Quote, certification, appraisal and policy decide.
    pub(crate) fn tpm_finish(
        &self,
        request: &TpmFinishRequest,
        caller: &Caller,
    ) -> Result<IssuedCredentials, Refusal> {
        let (record, standing, log) = self.anonymous(Action::Attest, caller, || {
            let record = self.opened(&request.challenge_id, EvidenceKind::Tpm, caller)?;
            let state = tpm_state(&record)?;
            // The activated secret first: a caller that does not hold the TPM learns nothing
            // more about this challenge (no event log lookup), and uses it up.
            let digest = Sha256::digest(&request.activated_secret);
            if aws_lc_rs::constant_time::verify_slices_are_equal(&digest, &state.secret_digest).is_err() {
                self.use_up(&record)?;
                return Err(Refusal::new(
                    Code::ActivationFailed,
                    "activated secret is wrong: the AK is not in the TPM that holds this EK",
                ));
            }
            // A log named by a digest this broker does not hold is refused before the
            // challenge is used up: the VM sends the same finish again with the log.
            let log = self.event_logs.resolve(request)?;
            let standing = self.use_up_tpm(&record, &HardwareId::Ek(state.hardware_id.clone()))?;
            Ok((record, standing, log))
        })?;
        let state = tpm_state(&record)?;
        let event_log = log.bytes(request);
        let issued = self.about(Action::Attest, caller, &state.hardware_id, || {
            self.tpm_decide(request, event_log, caller, &record, state, standing)
        })?;
        if let (FinishLog::Sent { keep: Some(digest) }, Some(sent)) = (&log, event_log) {
            self.event_logs.keep(*digest, sent);
        }
        self.remember(
            &issued,
            || {
                RecordedEvidence::Tpm(RecordedExchange {
                    address: caller.address,
                    nonce: record.nonce.clone(),
                    begin: TpmBeginRequest {
                        ek_public: state.ek_public.clone(),
                        ek_certificate: None,
                        ak_public: state.ak_public.clone(),
                        key_public: state.key_public.clone(),
                    },
                    // As if it had sent its log itself: a dry run holds no logs by digest.
                    finish: {
                        let mut finish = request.clone();
                        finish.event_log_sha256 = None;
                        if let FinishLog::Known(known) = &log {
                            finish.event_log = Some(known.to_vec());
                        }
                        finish
                    },
                })
            },
            state.ek_issuer.clone(),
        );
        Ok(issued)
    }

    /// Decides a finish; `standing` is what the store said about the EK as the challenge
    /// was used up.
    fn tpm_decide(
        &self,
        request: &TpmFinishRequest,
        event_log: Option<&[u8]>,
        caller: &Caller,
        record: &ChallengeRecord,
        state: &TpmChallengeState,
        standing: Standing,
    ) -> Result<IssuedCredentials, Refusal> {
        let keys = parse_keys(&state.ek_public, &state.ak_public, &state.key_public)?;
        let hardware = HardwareId::Ek(state.hardware_id.clone());
        let enrolled = super::standing(&hardware, standing.status)?;
        let policy = self.policy();
        let class = policy
            .class(&state.class)
            .filter(|class| class.matches_identity(&state.hardware_id, state.ek_issuer.as_deref(), enrolled))
            .ok_or_else(|| {
                Refusal::new(
                    Code::NoMatchingClass,
                    format!(
                        "class {:?} no longer admits this EK (the policy or its enrollment changed since begin): \
                         begin again",
                        state.class
                    ),
                )
            })?;
        class.check_address(caller.address)?;
        let rules = class.tpm().ok_or_else(|| internal("policy", "TPM class without TPM rules"))?;

        let appraisal = appraise_tpm(&keys, request, event_log, &record.nonce, &state.key_public, rules)?;

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
        let (boot, clock) = boot_of(&appraisal);
        self.judge_boot(&hardware, &subject.spiffe_id, standing.vm, boot, clock, caller)?;
        self.issue(subject, hardware, caller, &evidence, secrets, Some((boot, clock)))
    }
}

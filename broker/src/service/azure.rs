//! The Azure confidential VM path. Such a VM has no `/dev/sev-guest`: its paravisor
//! writes an HCL report into the vTPM (an SEV-SNP report whose REPORT_DATA commits to
//! runtime claims naming the vTPM's AK and EK). `begin` hands out a nonce and the PCRs to
//! quote; `finish` verifies report, claims, a quote by that AK answering the nonce, the
//! credential key K certified by the same AK, the event log, and policy, then issues.
//!
//! The VM's identity is its vTPM's EK as the report names it (not the host's chip, which
//! many VMs share), so reboots and clones are judged as on the TPM path.

use mooring_attestation::protocol::{
    tpm_qualifying_data, AzureBeginRequest, AzureChallenge, AzureFinishRequest, HardwareId,
    IssuedCredentials, RecordedEvidence, RecordedExchange,
};
use mooring_attestation::snp::appraisal::SnpAppraisal;
use mooring_attestation::snp::azure::{verify_azure_cvm, AzureCvmEvidence, AzureError, RuntimeClaims};
use mooring_attestation::snp::{RootOrigin, SnpCertSource, SnpVerifier};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::appraisal::TpmAppraisal;
use mooring_attestation::tpm::attest::Ak;
use mooring_attestation::tpm::pcr::PcrSelection;
use mooring_attestation::tpm::public::Public;
use mooring_attestation::tpm::quote::{QuoteExpectation, VerifiedQuote};

use super::tpm::{
    appraise_boot, boot_of, check_certify, ek_hardware_id, parse_credential_key, pcr_values, quote_refusal,
    quote_signature,
};
use super::{internal, Broker, Caller};
use crate::audit::Action;
use crate::issuer::Subject;
use crate::policy::{Class, Policy};
use crate::records::EvidenceKind;
use crate::refusal::{Code, Refusal};
use crate::store::vm_key;

/// A `finish`'s evidence verified and appraised: its quote must answer `nonce` for its K,
/// over `selection`.
pub(crate) fn appraise_azure_finish(
    verifier: &SnpVerifier,
    request: &AzureFinishRequest,
    nonce: &[u8],
    selection: &PcrSelection,
    now: i64,
) -> Result<AzureAppraisal, Refusal> {
    let signature = quote_signature(&request.quote_signature)?;
    let qualifying_data = tpm_qualifying_data(nonce, &request.key_public);
    let expected = QuoteExpectation { qualifying_data: &qualifying_data, selection };
    let pcrs = pcr_values(&request.pcrs)?;
    let evidence = AzureCvmEvidence {
        hcl_report: &request.hcl_report,
        certs: request
            .vcek_chain
            .as_deref()
            .map_or(SnpCertSource::Provisioned, |chain| SnpCertSource::Certificates(chain.as_bytes())),
        quote: &request.quote,
        signature: &signature,
        pcrs: &pcrs,
    };
    appraise_azure(verifier, &evidence, &expected, now)
}

/// Azure evidence whose chain verified: the SNP report (to AMD's roots), the runtime claims
/// it commits to and the quote by the claims' AK.
pub(crate) struct AzureAppraisal {
    pub(crate) snp: SnpAppraisal,
    pub(crate) claims: RuntimeClaims,
    /// The quote; its event log is appraised with policy ([`decide_azure`]), on the record.
    pub(crate) quote: VerifiedQuote,
    /// The vTPM's EK named by the claims: SHA-256 of its SubjectPublicKeyInfo, hex.
    pub(crate) hardware_id: String,
}

/// Verifies Azure evidence end to end; `expected` is what the quote must answer.
pub(crate) fn appraise_azure(
    verifier: &SnpVerifier,
    evidence: &AzureCvmEvidence<'_>,
    expected: &QuoteExpectation<'_>,
    now: i64,
) -> Result<AzureAppraisal, Refusal> {
    let verified = verify_azure_cvm(evidence, verifier, expected, now).map_err(|e| azure_refusal(&e))?;
    let (snp, claims, quote) = verified.into_parts();
    let ek = claims.ek().ok_or_else(|| {
        Refusal::new(
            Code::HclReportInvalid,
            "the runtime claims name no vTPM EK (HCLEkPub): the VM cannot be told apart from others",
        )
    })?;
    let hardware_id = ek_hardware_id(ek);
    Ok(AzureAppraisal { snp, claims, quote, hardware_id })
}

fn azure_refusal(e: &AzureError) -> Refusal {
    let code = match e {
        AzureError::Snp(_) => Code::SnpReportInvalid,
        AzureError::RuntimeClaimsHash { .. } => Code::RuntimeClaimsMismatch,
        AzureError::Quote(quote) => return quote_refusal(quote),
        _ => Code::HclReportInvalid,
    };
    Refusal::new(code, format!("Azure evidence: {e}"))
}

/// Policy's decision on appraised Azure evidence and its event log (replayed against the
/// quote here): the class that admits it (its networks are the caller's to check), and the
/// vTPM's boot.
pub(crate) fn decide_azure<'p>(
    policy: &'p Policy,
    appraisal: &AzureAppraisal,
    event_log: Option<&[u8]>,
    enrolled: bool,
) -> Result<(&'p Class, TpmAppraisal), Refusal> {
    let boot = appraise_boot(appraisal.quote.clone(), event_log, HashAlg::Sha256)?;
    let class = policy.match_azure(&appraisal.snp, &appraisal.hardware_id, enrolled)?;
    class.check_snp(&appraisal.snp)?;
    class.tpm_rules()?.check(&boot)?;
    Ok((class, boot))
}

/// The credential key K of a `finish`, certified by the AK the runtime claims name. The
/// AK is that key (`HCLAkPub`, committed to by the SNP report); the public area the VM
/// sends must carry it, and says nothing more: its attributes are covered by nothing
/// signed, so the certification is checked against the claims' key alone.
pub(crate) fn certified_key(
    request: &AzureFinishRequest,
    claims: &RuntimeClaims,
) -> Result<mooring_attestation::svid::CredentialKey, Refusal> {
    let sent = Public::from_tpm2b(&request.ak_public)
        .map_err(|e| Refusal::new(Code::AkInvalid, format!("AK public area: {e}")))?;
    if sent.key() != claims.ak() {
        return Err(Refusal::new(
            Code::AkMismatch,
            "the AK sent is not the vTPM AK the runtime claims name (HCLAkPub)",
        ));
    }
    let (key, credential_key) = parse_credential_key(&request.key_public)?;
    check_certify(Ak::Vouched(claims.ak()), &key, &request.certify, &request.certify_signature)?;
    Ok(credential_key)
}

/// The PCRs an Azure VM quotes under the current policy.
fn selection(
    policy: &Policy,
) -> Result<(std::collections::BTreeMap<String, Vec<u8>>, PcrSelection), Refusal> {
    let map = policy.azure_selection().ok_or_else(|| {
        Refusal::new(Code::NoMatchingClass, "no class of the policy admits Azure confidential VMs")
    })?;
    let indices = map.values().flatten().copied().collect::<Vec<u8>>();
    let selection = PcrSelection::single(HashAlg::Sha256, &indices).map_err(|e| internal("policy", e))?;
    Ok((map, selection))
}

impl Broker {
    /// `POST /v1/azure/begin`: a nonce and the PCRs to quote.
    pub(crate) fn azure_begin(
        &self,
        _request: &AzureBeginRequest,
        caller: &Caller,
    ) -> Result<AzureChallenge, Refusal> {
        self.anonymous(Action::Begin, caller, || {
            let (pcr_selection, _) = selection(&self.policy())?;
            let (challenge_id, record) = self.new_challenge(EvidenceKind::Azure, caller, None)?;
            Ok(AzureChallenge {
                challenge_id,
                nonce: record.nonce,
                pcr_selection,
                expires_at: record.expires_at,
            })
        })
    }

    /// `POST /v1/azure/finish`: a quote answering this challenge, signed by the AK an SNP
    /// report vouches for, proves a live vTPM of a confidential VM; from then on refusals are
    /// about that vTPM and recorded one by one. (The HCL report alone proves nothing: it is
    /// made at boot and can be replayed.) Key certification and policy decide.
    pub(crate) fn azure_finish(
        &self,
        request: &AzureFinishRequest,
        caller: &Caller,
    ) -> Result<IssuedCredentials, Refusal> {
        let (nonce, appraisal) = self.anonymous(Action::Attest, caller, || {
            let record = self.consume(&request.challenge_id, EvidenceKind::Azure, caller)?;
            let (_, selection) = selection(&self.policy())?;
            let appraisal = appraise_azure_finish(&self.snp, request, &record.nonce, &selection, self.now())?;
            Ok((record.nonce, appraisal))
        })?;
        let hardware_id = appraisal.hardware_id.clone();
        let issued = self
            .about(Action::Attest, caller, &hardware_id, || self.azure_decide(request, caller, &appraisal))?;
        self.remember(
            &issued,
            || {
                RecordedEvidence::Azure(RecordedExchange {
                    address: caller.address,
                    nonce,
                    begin: AzureBeginRequest {},
                    finish: request.clone(),
                })
            },
            None,
        );
        Ok(issued)
    }

    fn azure_decide(
        &self,
        request: &AzureFinishRequest,
        caller: &Caller,
        appraisal: &AzureAppraisal,
    ) -> Result<IssuedCredentials, Refusal> {
        let credential_key = certified_key(request, &appraisal.claims)?;
        let hardware = HardwareId::Ek(appraisal.hardware_id.clone());
        let enrolled = self.enrolled(&hardware)?;
        let policy = self.policy();
        let (class, boot) = decide_azure(&policy, appraisal, request.event_log.as_deref(), enrolled)?;
        class.check_address(caller.address)?;
        let subject = Subject {
            spiffe_id: class.spiffe_id(self.issuer.trust_domain(), &appraisal.hardware_id),
            class: class.name().to_owned(),
            hardware_id: appraisal.hardware_id.clone(),
            key: credential_key,
            bound_address: caller.address,
            ttl_seconds: class.ttl_seconds(),
            audiences: class.audiences().to_vec(),
        };
        let report = appraisal.snp.report();
        let evidence = match report.claims().root() {
            RootOrigin::Amd => {
                format!("Azure confidential VM, SEV-SNP {} report, vTPM quote", report.product().name())
            }
            RootOrigin::Test => format!(
                "Azure confidential VM, SEV-SNP {} report signed by a TEST root, vTPM quote",
                report.product().name()
            ),
        };
        let (boot, clock) = boot_of(&boot);
        let previous = self
            .store
            .vm(&vm_key(&hardware, &subject.spiffe_id))
            .map_err(|e| internal("reading the VM record", e))?;
        self.judge_boot(&hardware, &subject.spiffe_id, previous, boot, clock, caller)?;
        self.issue(subject, hardware, caller, &evidence, Vec::new(), Some((boot, clock)))
    }
}

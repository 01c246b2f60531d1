//! Dry runs: evidence recorded from real VMs judged against a policy by the same appraisal
//! and decision code as a live attestation. Only what needs a live exchange is skipped:
//! the challenge's freshness and single use and, on the TPM path, credential activation
//! (whose secret only the broker that made the challenge knew). Nothing is stored.
//!
//! Evidence is one JSON document: a [`RecordedEvidence`] (`mooring-client --record`), an
//! Azure confidential VM vector as trustee's `az-snp-vtpm` attester writes it, or a TPM
//! quote vector (`"kind": "tpm_quote"`: a quote recorded outside Mooring, without EK or
//! credential key).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use mooring_attestation::crypto::Scheme;
use mooring_attestation::protocol::{
    Decision, DryRunReport, DryRunRequest, DryRunResult, HardwareId, IdentityStatus, IssuedCredentials,
    RecordedEvidence, RecordedExchange,
};
use mooring_attestation::snp::azure::AzureCvmEvidence;
use mooring_attestation::snp::{SnpCertSource, SnpVerifier};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::{Ak, Attest, Attested, Signature};
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::public::Public;
use mooring_attestation::tpm::quote::{verify_quote, QuoteExpectation};
use mooring_attestation::x509::TrustStore;
use serde::Deserialize;

use super::azure::{appraise_azure, appraise_azure_finish, certified_key, decide_azure, AzureAppraisal};
use super::event_logs::KnownEventLogs;
use super::snp::{appraise_snp, decide_snp};
use super::tpm::{
    appraise_boot, appraise_tpm, ek_hardware_id, parse_ak, parse_keys, pcr_values, quote_refusal,
    quote_signature, vouch_ek, VouchedEk,
};
use super::{internal, standing, store_failure, unix_seconds, Broker};
use crate::audit::{Action, Outcome};
use crate::policy::{Policy, TpmApplicant};
use crate::refusal::{Code, Refusal};

/// Largest evidence document read.
pub(crate) const MAX_EVIDENCE_BYTES: usize = 4 * 1024 * 1024;

/// What verifies evidence in a dry run, and when.
pub(crate) struct Verifiers<'a> {
    pub(crate) ek_roots: &'a TrustStore,
    pub(crate) snp: &'a SnpVerifier,
    pub(crate) now: SystemTime,
}

impl Verifiers<'_> {
    fn unix(&self) -> i64 {
        unix_seconds(self.now)
    }
}

/// An administrator's word on a hardware identity, as the dry run should assume it.
pub(crate) type Standing<'a> = &'a dyn Fn(&HardwareId) -> Result<Option<IdentityStatus>, Refusal>;

/// One evidence document.
#[derive(Debug)]
pub(crate) enum Evidence {
    Recorded(Box<RecordedEvidence>),
    Azure(Box<AzureVector>),
    Quote(Box<QuoteVector>),
}

/// Azure evidence as trustee's `az-snp-vtpm` attester writes it (versions 0 to 2: byte
/// arrays, or hex and base64 strings).
#[derive(Debug, Deserialize)]
pub(crate) struct AzureVector {
    #[serde(alias = "tpm_quote")]
    quote: VectorQuote,
    #[serde(alias = "hcl_report")]
    report: Blob,
    vcek: String,
}

#[derive(Debug, Deserialize)]
struct VectorQuote {
    message: Blob,
    signature: Blob,
    pcrs: Vec<Blob>,
}

/// Bytes as a JSON array of numbers, or as text in the field's encoding.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Blob {
    Bytes(Vec<u8>),
    Text(String),
}

/// How a vector field writes bytes as text: trustee writes the quote in hex, the HCL
/// report in base64url, the VCEK in base64 (when not PEM).
#[derive(Debug, Clone, Copy)]
enum Text {
    Hex,
    Base64,
}

impl Blob {
    fn bytes(&self, what: &str, encoding: Text) -> Result<Vec<u8>, String> {
        match (self, encoding) {
            (Self::Bytes(bytes), _) => Ok(bytes.clone()),
            (Self::Text(text), Text::Hex) => hex::decode(text).map_err(|e| format!("{what}: not hex: {e}")),
            (Self::Text(text), Text::Base64) => {
                let text = text.trim_end_matches('=');
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text)
                    .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                    .map_err(|e| format!("{what}: not base64: {e}"))
            }
        }
    }
}

/// A TPM quote recorded outside Mooring: what it proves is the boot state, not which TPM.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuoteVector {
    /// The AK's `TPM2B_PUBLIC` or `TPMT_PUBLIC`.
    #[serde(with = "mooring_attestation::protocol::b64")]
    ak_public: Vec<u8>,
    #[serde(with = "mooring_attestation::protocol::b64")]
    quote: Vec<u8>,
    #[serde(with = "mooring_attestation::protocol::b64")]
    quote_signature: Vec<u8>,
    pcrs: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default, with = "mooring_attestation::protocol::b64_option")]
    event_log: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Tagged {
    TpmQuote(QuoteVector),
}

/// Reads one evidence document.
///
/// # Errors
/// Why the document is none of the kinds a dry run reads.
pub(crate) fn parse_evidence(bytes: &[u8]) -> Result<Evidence, String> {
    if bytes.len() > MAX_EVIDENCE_BYTES {
        return Err(format!("{} bytes; evidence documents hold at most {MAX_EVIDENCE_BYTES}", bytes.len()));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("kind").and_then(serde_json::Value::as_str) {
        Some("tpm_quote") => {
            let Tagged::TpmQuote(vector) =
                serde_json::from_value(value).map_err(|e| format!("TPM quote vector: {e}"))?;
            Ok(Evidence::Quote(Box::new(vector)))
        }
        Some(_) => serde_json::from_value(value)
            .map(|recorded| Evidence::Recorded(Box::new(recorded)))
            .map_err(|e| format!("recorded evidence: {e}")),
        None if value.get("vcek").is_some() => serde_json::from_value(value)
            .map(|vector| Evidence::Azure(Box::new(vector)))
            .map_err(|e| format!("Azure evidence vector: {e}")),
        None => {
            Err("neither recorded evidence (\"kind\"), an Azure vector (\"vcek\") nor a TPM quote vector"
                .into())
        }
    }
}

/// What each kind of evidence cannot show a dry run (`not_checked`).
const SNP_RECORDED: &str = "challenge freshness and single use";
const AZURE_RECORDED: &str = "challenge freshness and single use; the VM's reboot and clone history";
const TPM_RECORDED: &str = "challenge freshness and single use; credential activation (AK in the EK's TPM); \
                            the VM's reboot and clone history";
const AZURE_VECTOR: &str =
    "freshness (the quote's own qualifying data is taken); the credential key; the address; \
                            the VM's reboot and clone history";
const QUOTE_VECTOR: &str = "freshness (the quote's own qualifying data is taken); which TPM (no EK), and that the \
                            AK is a TPM's at all (its attributes are not signed); the credential key; the address";

/// An attestation the broker admitted, kept for admin dry runs.
#[derive(Debug)]
pub(crate) struct Recent {
    at: i64,
    /// The VM's SPIFFE ID: one entry per VM.
    vm: String,
    evidence: RecordedEvidence,
    /// The EK certificate's issuer as `begin` verified it (TPM evidence, whose record holds
    /// no certificate).
    ek_issuer: Option<String>,
}

/// Judges `evidence` against `policy`. `ek_issuer`: for TPM evidence recorded without
/// its EK certificate, the issuer the broker verified at its `begin`.
pub(crate) fn judge(
    verifiers: &Verifiers<'_>,
    policy: &Policy,
    standing_of: Standing<'_>,
    evidence: &Evidence,
    ek_issuer: Option<&str>,
) -> Decision {
    let result = match evidence {
        Evidence::Recorded(recorded) => match recorded.as_ref() {
            RecordedEvidence::Tpm(exchange) => tpm(verifiers, policy, standing_of, exchange, ek_issuer),
            RecordedEvidence::Snp(exchange) => snp(verifiers, policy, standing_of, exchange),
            RecordedEvidence::Azure(exchange) => {
                azure(verifiers, policy, standing_of, evidence, Some(exchange.address), AZURE_RECORDED)
            }
        },
        Evidence::Azure(_) => azure(verifiers, policy, standing_of, evidence, None, AZURE_VECTOR),
        Evidence::Quote(vector) => quote_vector(policy, vector),
    };
    result.unwrap_or_else(|refusal| Decision::Refused { code: refusal.code, reason: refusal.reason })
}

fn tpm(
    verifiers: &Verifiers<'_>,
    policy: &Policy,
    standing_of: Standing<'_>,
    exchange: &RecordedExchange<
        mooring_attestation::protocol::TpmBeginRequest,
        mooring_attestation::protocol::TpmFinishRequest,
    >,
    ek_issuer: Option<&str>,
) -> Result<Decision, Refusal> {
    let begin = &exchange.begin;
    let keys = parse_keys(&begin.ek_public, &begin.ak_public, &begin.key_public)?;
    let hardware_id = ek_hardware_id(keys.ek.key());
    let hardware = HardwareId::Ek(hardware_id.clone());
    let status = standing_of(&hardware)?;
    let ek = match (&begin.ek_certificate, ek_issuer) {
        (None, Some(issuer)) => VouchedEk { hardware_id, ek_issuer: Some(issuer.to_owned()), status },
        _ => vouch_ek(begin, &keys, verifiers.ek_roots, verifiers.now, status)?,
    };
    let enrolled = standing(&hardware, status)?;
    let class = policy.match_tpm(TpmApplicant {
        ek_issuer: ek.ek_issuer.as_deref(),
        hardware_id: &ek.hardware_id,
        enrolled,
    })?;
    class.check_address(exchange.address)?;
    // A dry run holds no logs by digest: a recording that names its log is refused.
    let log = KnownEventLogs::new(0).resolve(&exchange.finish)?;
    let event_log = log.bytes(&exchange.finish);
    appraise_tpm(&keys, &exchange.finish, event_log, &exchange.nonce, &begin.key_public, class.tpm_rules()?)?;
    Ok(admitted(class.name(), Some(ek.hardware_id), TPM_RECORDED))
}

fn snp(
    verifiers: &Verifiers<'_>,
    policy: &Policy,
    standing_of: Standing<'_>,
    exchange: &RecordedExchange<
        mooring_attestation::protocol::SnpBeginRequest,
        mooring_attestation::protocol::SnpFinishRequest,
    >,
) -> Result<Decision, Refusal> {
    let (_, appraisal) = appraise_snp(verifiers.snp, &exchange.finish, &exchange.nonce, verifiers.unix())?;
    let chip_id = hex::encode(appraisal.report().hw_id());
    let hardware = HardwareId::Chip(chip_id.clone());
    let enrolled = standing(&hardware, standing_of(&hardware)?)?;
    let class = decide_snp(policy, &appraisal, &chip_id, enrolled)?;
    class.check_address(exchange.address)?;
    Ok(admitted(class.name(), Some(chip_id), SNP_RECORDED))
}

fn azure(
    verifiers: &Verifiers<'_>,
    policy: &Policy,
    standing_of: Standing<'_>,
    evidence: &Evidence,
    address: Option<IpAddr>,
    not_checked: &'static str,
) -> Result<Decision, Refusal> {
    let appraisal = appraise_azure_evidence(verifiers.snp, evidence, verifiers.now)?;
    let hardware = HardwareId::Ek(appraisal.hardware_id.clone());
    let enrolled = standing(&hardware, standing_of(&hardware)?)?;
    let (class, _) = decide_azure(policy, &appraisal, azure_event_log(evidence), enrolled)?;
    if let Some(address) = address {
        class.check_address(address)?;
    }
    Ok(admitted(class.name(), Some(appraisal.hardware_id), not_checked))
}

/// Azure evidence, recorded (with its credential key certified) or a vector, verified and
/// appraised as at `now`. A recorded quote must answer its nonce for its key; a vector's
/// is taken as it is.
pub(crate) fn appraise_azure_evidence(
    snp: &SnpVerifier,
    evidence: &Evidence,
    now: SystemTime,
) -> Result<AzureAppraisal, Refusal> {
    let now = unix_seconds(now);
    match evidence {
        Evidence::Recorded(recorded) => match recorded.as_ref() {
            RecordedEvidence::Azure(exchange) => recorded_azure(snp, exchange, now),
            _ => Err(Refusal::new(Code::MalformedRequest, "not evidence of an Azure confidential VM")),
        },
        Evidence::Azure(vector) => azure_vector(snp, vector, now),
        Evidence::Quote(_) => {
            Err(Refusal::new(Code::MalformedRequest, "not evidence of an Azure confidential VM"))
        }
    }
}

fn recorded_azure(
    snp: &SnpVerifier,
    exchange: &RecordedExchange<
        mooring_attestation::protocol::AzureBeginRequest,
        mooring_attestation::protocol::AzureFinishRequest,
    >,
    now: i64,
) -> Result<AzureAppraisal, Refusal> {
    let finish = &exchange.finish;
    let selection = selection_of(&parse_attest(&finish.quote)?)?;
    let appraisal = appraise_azure_finish(snp, finish, &exchange.nonce, &selection, now)?;
    certified_key(finish, &appraisal.claims)?;
    Ok(appraisal)
}

fn azure_vector(snp: &SnpVerifier, vector: &AzureVector, now: i64) -> Result<AzureAppraisal, Refusal> {
    let malformed = |e: String| Refusal::new(Code::MalformedRequest, e);
    let quote = vector.quote.message.bytes("quote message", Text::Hex).map_err(malformed)?;
    let raw_signature = vector.quote.signature.bytes("quote signature", Text::Hex).map_err(malformed)?;
    let signature = Signature::parse(&raw_signature)
        .unwrap_or_else(|_| Signature::raw_rsa(Scheme::RsaPkcs1(HashAlg::Sha256), &raw_signature));
    let mut pcrs = PcrValues::new();
    for (index, value) in vector.quote.pcrs.iter().enumerate() {
        let index = u8::try_from(index).map_err(|_| malformed("more than 256 PCRs".into()))?;
        pcrs.insert(HashAlg::Sha256, index, value.bytes("PCR value", Text::Hex).map_err(malformed)?)
            .map_err(|e| malformed(format!("PCR {index}: {e}")))?;
    }
    let hcl_report = vector.report.bytes("HCL report", Text::Base64).map_err(malformed)?;
    let vcek = if vector.vcek.contains("-----BEGIN") {
        vector.vcek.clone().into_bytes()
    } else {
        Blob::Text(vector.vcek.clone()).bytes("VCEK", Text::Base64).map_err(malformed)?
    };
    let attest = parse_attest(&quote)?;
    let selection = selection_of(&attest)?;
    let expected = QuoteExpectation { qualifying_data: attest.extra_data(), selection: &selection };
    let evidence = AzureCvmEvidence {
        hcl_report: &hcl_report,
        certs: SnpCertSource::Certificates(&vcek),
        quote: &quote,
        signature: &signature,
        pcrs: &pcrs,
    };
    appraise_azure(snp, &evidence, &expected, now)
}

/// A quote vector's boot state against each TPM class in order: the first whose rules
/// hold admits it; otherwise the first class's refusal.
fn quote_vector(policy: &Policy, vector: &QuoteVector) -> Result<Decision, Refusal> {
    let ak = parse_ak(&tpm2b(&vector.ak_public))?;
    let signature = quote_signature(&vector.quote_signature)?;
    let pcrs = pcr_values(&vector.pcrs)?;
    let attest = parse_attest(&vector.quote)?;
    let selection = selection_of(&attest)?;
    let expected = QuoteExpectation { qualifying_data: attest.extra_data(), selection: &selection };
    let quote = verify_quote(Ak::Tpm(&ak), &vector.quote, &signature, &pcrs, &expected)
        .map_err(|e| quote_refusal(&e))?;
    let mut first = None;
    for class in policy.classes() {
        let Some(rules) = class.tpm().filter(|_| class.evidence() == crate::records::EvidenceKind::Tpm)
        else {
            continue;
        };
        let judged = rules.check_covered(quote.pcrs()).and_then(|()| {
            appraise_boot(quote.only(rules.bank(), rules.pcrs()), vector.event_log.as_deref(), rules.bank())
                .and_then(|appraisal| rules.check(&appraisal))
        });
        match judged {
            Ok(()) => return Ok(admitted(class.name(), None, QUOTE_VECTOR)),
            Err(refusal) => {
                first.get_or_insert(refusal);
            }
        }
    }
    Err(first.unwrap_or_else(|| Refusal::new(Code::NoMatchingClass, "the policy has no TPM class")))
}

/// The event log recorded Azure evidence sent (a vector carries none).
fn azure_event_log(evidence: &Evidence) -> Option<&[u8]> {
    match evidence {
        Evidence::Recorded(recorded) => match recorded.as_ref() {
            RecordedEvidence::Azure(exchange) => exchange.finish.event_log.as_deref(),
            RecordedEvidence::Tpm(_) | RecordedEvidence::Snp(_) => None,
        },
        Evidence::Azure(_) | Evidence::Quote(_) => None,
    }
}

fn admitted(class: &str, hardware_id: Option<String>, not_checked: &str) -> Decision {
    Decision::Admitted { class: class.to_owned(), hardware_id, not_checked: not_checked.to_owned() }
}

/// A `TPMT_PUBLIC` given its `TPM2B` size prefix; a `TPM2B_PUBLIC` as it is.
fn tpm2b(public: &[u8]) -> Vec<u8> {
    if Public::from_tpm2b(public).is_ok() {
        return public.to_vec();
    }
    let size = u16::try_from(public.len()).unwrap_or(u16::MAX);
    [size.to_be_bytes().as_slice(), public].concat()
}

fn parse_attest(quote: &[u8]) -> Result<Attest, Refusal> {
    Attest::parse(quote).map_err(|e| Refusal::new(Code::QuoteInvalid, format!("quote: {e}")))
}

fn selection_of(attest: &Attest) -> Result<PcrSelection, Refusal> {
    match attest.attested() {
        Attested::Quote { selection, .. } => Ok(selection.clone()),
        _ => Err(Refusal::new(Code::QuoteInvalid, "the attestation is not a quote")),
    }
}

impl Broker {
    /// Keeps an admitted attestation (so a flood of refused evidence, even genuine, cannot
    /// fill the ring) for admin dry runs: the newest `admin.dry_run_recent`, one per VM (its
    /// SPIFFE ID), in memory only.
    pub(super) fn remember(
        &self,
        issued: &IssuedCredentials,
        evidence: impl FnOnce() -> RecordedEvidence,
        ek_issuer: Option<String>,
    ) {
        let keep = self.config.admin.dry_run_recent;
        if keep == 0 {
            return;
        }
        let recent = Arc::new(Recent {
            at: self.now(),
            vm: issued.spiffe_id.clone(),
            evidence: evidence(),
            ek_issuer,
        });
        let mut kept = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|seen| seen.vm != recent.vm);
        while kept.len() >= keep {
            kept.pop_front();
        }
        kept.push_back(recent);
    }

    /// `POST /v1/admin/policy/dry-run`: the recent attestations judged by the policy in
    /// force and by `request`'s, newest first. Nothing changes but the audit record.
    pub(crate) fn dry_run(&self, request: &DryRunRequest, admin: &str) -> Result<DryRunReport, Refusal> {
        let proposed = Policy::parse_proposal(&request.policy, &self.config.policy)
            .map_err(|e| Refusal::new(Code::PolicyInvalid, format!("proposed policy: {e}")))?;
        let in_force = self.policy();
        let recent: Vec<Arc<Recent>> = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .cloned()
            .collect();
        let verifiers = Verifiers { ek_roots: &self.ek_roots, snp: &self.snp, now: self.clock.now() };
        let standing_of = |hardware: &HardwareId| {
            self.store.identity_status(hardware).map_err(|e| internal("reading enrollment", e))
        };
        let results = recent
            .iter()
            .map(|seen| {
                let evidence = Evidence::Recorded(Box::new(seen.evidence.clone()));
                let judged = |policy: &Policy| {
                    judge(&verifiers, policy, &standing_of, &evidence, seen.ek_issuer.as_deref())
                };
                DryRunResult {
                    at: seen.at,
                    address: seen.evidence.address(),
                    kind: seen.evidence.kind().to_owned(),
                    in_force: judged(&in_force),
                    proposed: judged(&proposed),
                }
            })
            .collect();
        let event = self.event(
            Action::Admin,
            Outcome::Accepted,
            "policy_dry_run",
            format!("by {admin}, {} attestations, proposed policy {}", recent.len(), proposed.digest()),
            None,
        );
        self.store.audit(event).map_err(|e| store_failure("audit", e))?;
        Ok(DryRunReport { policy: proposed.digest().to_owned(), results })
    }
}

//! The SEV-SNP path: `begin` hands out a nonce; `finish` verifies the report, its
//! binding to the nonce and the credential key, and policy, then issues.

use mooring_attestation::protocol::{
    snp_report_data, HardwareId, IssuedCredentials, RecordedEvidence, RecordedExchange, SnpBeginRequest,
    SnpChallenge, SnpFinishRequest,
};
use mooring_attestation::snp::appraisal::{SnpAppraisal, SnpAppraisalError};
use mooring_attestation::snp::{RootOrigin, SnpCertSource, SnpVerifier, VerifiedReport};
use mooring_attestation::svid::CredentialKey;
use mooring_attestation::x509::spki_public_key;
use sha2::{Digest, Sha256};

use super::{Broker, Caller};
use crate::audit::Action;
use crate::config::SnpConfig;
use crate::issuer::Subject;
use crate::policy::{Class, Policy};
use crate::records::EvidenceKind;
use crate::refusal::{Code, Refusal};

/// A raw X25519 public key.
const SEALING_KEY_LEN: usize = 32;

/// The verifier for this configuration: AMD's pinned roots, the configured test roots and
/// the provisioned VCEK/VLEK certificates.
pub(crate) fn verifier(config: &SnpConfig) -> anyhow::Result<SnpVerifier> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("snp: reading {}: {e}", path.display()))
    };
    let mut builder = SnpVerifier::builder();
    for root in &config.test_roots {
        tracing::warn!(
            ark = %root.ark.display(),
            "SEV-SNP test root configured: reports signed by a non-AMD key are accepted"
        );
        let asvk = root.asvk.as_deref().map(read).transpose()?;
        builder = builder.trust_test_root(
            root.product.into(),
            &read(&root.ark)?,
            &read(&root.ask)?,
            asvk.as_deref(),
        );
    }
    if let Some(dir) = &config.vcek_dir {
        let entries =
            std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("snp.vcek_dir {}: {e}", dir.display()))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| anyhow::anyhow!("snp.vcek_dir {}: {e}", dir.display()))?.path();
            if path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            builder = builder.provision(&read(&path)?);
        }
    }
    builder.build().map_err(|e| anyhow::anyhow!("snp: {e}"))
}

/// What identifies one SEV-SNP guest: its chip and its REPORT_ID (AMD SEV-SNP ABI, Table
/// 23), which the firmware draws at launch and signs into every report of that guest. A
/// second guest on the same chip has another REPORT_ID, which neither it nor the host can
/// choose; the same guest keeps its own across renewals. A new launch (a reboot) is a new
/// guest.
fn guest_id(report: &VerifiedReport) -> String {
    hex::encode(Sha256::digest(
        [b"mooring snp guest v1".as_slice(), report.chip_id(), report.claims().report_id()].concat(),
    ))
}

/// The credential key K and the sealing key of a `finish`.
fn credential_key(request: &SnpFinishRequest) -> Result<CredentialKey, Refusal> {
    let key = spki_public_key(&request.key_spki)
        .map_err(|e| Refusal::new(Code::KeyInvalid, format!("credential key: {e}")))?;
    let credential_key =
        CredentialKey::from_public_key(&key).map_err(|e| Refusal::new(Code::KeyInvalid, e))?;
    if request.sealing_key.len() != SEALING_KEY_LEN {
        return Err(Refusal::new(
            Code::KeyInvalid,
            format!("sealing key is {} bytes; a raw X25519 public key is 32", request.sealing_key.len()),
        ));
    }
    Ok(credential_key)
}

/// A `finish`'s report verified (to AMD's roots or a configured one) and answering `nonce`
/// for its keys, and its credential key.
pub(crate) fn appraise_snp(
    verifier: &SnpVerifier,
    request: &SnpFinishRequest,
    nonce: &[u8],
    now: i64,
) -> Result<(CredentialKey, SnpAppraisal), Refusal> {
    let credential_key = credential_key(request)?;
    let source = match &request.certificate_table {
        Some(table) => SnpCertSource::CertTable(table),
        None => SnpCertSource::Provisioned,
    };
    let report = verifier
        .verify(&request.report, source, now)
        .map_err(|e| Refusal::new(Code::SnpReportInvalid, format!("SEV-SNP report: {e}")))?;
    let expected = snp_report_data(nonce, &request.key_spki, &request.sealing_key);
    let appraisal = SnpAppraisal::new(report, &expected).map_err(|e| {
        let code = match e {
            SnpAppraisalError::ReportData => Code::ReportDataMismatch,
            _ => Code::SnpReportInvalid,
        };
        Refusal::new(code, e.to_string())
    })?;
    Ok((credential_key, appraisal))
}

/// Policy's decision on an appraised report: the class that admits it (its networks are
/// the caller's to check).
pub(crate) fn decide_snp<'p>(
    policy: &'p Policy,
    appraisal: &SnpAppraisal,
    chip_id: &str,
    enrolled: bool,
) -> Result<&'p Class, Refusal> {
    let class = policy.match_snp(appraisal, chip_id, enrolled)?;
    class.check_snp(appraisal)?;
    Ok(class)
}

impl Broker {
    /// `POST /v1/snp/begin` from `source`.
    pub(crate) fn snp_begin(
        &self,
        _request: &SnpBeginRequest,
        caller: &Caller,
    ) -> Result<SnpChallenge, Refusal> {
        let (challenge_id, record) = self.new_challenge(EvidenceKind::Snp, caller, None)?;
        Ok(SnpChallenge { challenge_id, nonce: record.nonce, expires_at: record.expires_at })
    }

    /// `POST /v1/snp/finish`: a report that verifies and answers this challenge for these keys
    /// (its REPORT_DATA) proves a live guest on its chip; from then on refusals are about that
    /// chip and recorded one by one. (A genuine report alone proves nothing: reports are
    /// replayable, and public ones exist.) Policy decides.
    pub(crate) fn snp_finish(
        &self,
        request: &SnpFinishRequest,
        caller: &Caller,
    ) -> Result<IssuedCredentials, Refusal> {
        let (nonce, (credential_key, appraisal)) = self.anonymous(Action::Attest, caller, || {
            let record = self.consume(&request.challenge_id, EvidenceKind::Snp, caller)?;
            let appraised = appraise_snp(&self.snp, request, &record.nonce, self.now())?;
            Ok((record.nonce, appraised))
        })?;
        let chip_id = hex::encode(appraisal.report().hw_id());
        let issued = self.about(Action::Attest, caller, &chip_id, || {
            self.snp_decide(request, caller, &appraisal, chip_id.clone(), credential_key)
        })?;
        self.remember(
            &issued,
            || {
                RecordedEvidence::Snp(RecordedExchange {
                    address: caller.address,
                    nonce,
                    begin: SnpBeginRequest {},
                    finish: request.clone(),
                })
            },
            None,
        );
        Ok(issued)
    }

    fn snp_decide(
        &self,
        request: &SnpFinishRequest,
        caller: &Caller,
        appraisal: &SnpAppraisal,
        chip_id: String,
        credential_key: CredentialKey,
    ) -> Result<IssuedCredentials, Refusal> {
        let hardware = HardwareId::Chip(chip_id.clone());
        let enrolled = self.enrolled(&hardware)?;
        let policy = self.policy();
        let class = decide_snp(&policy, appraisal, &chip_id, enrolled)?;
        class.check_address(caller.address)?;

        let report = appraisal.report();
        let spiffe_id = class.spiffe_id(self.issuer.trust_domain(), &guest_id(report));
        let secrets = self.seal_hpke_secrets(class, &request.sealing_key, &spiffe_id)?;
        let subject = Subject {
            spiffe_id,
            class: class.name().to_owned(),
            hardware_id: chip_id,
            key: credential_key,
            bound_address: caller.address,
            ttl_seconds: class.ttl_seconds(),
            audiences: class.audiences().to_vec(),
        };
        let evidence = match report.claims().root() {
            RootOrigin::Amd => format!("SEV-SNP {} report", report.product().name()),
            RootOrigin::Test => format!("SEV-SNP {} report signed by a TEST root", report.product().name()),
        };
        self.issue(subject, hardware, caller, &evidence, secrets, None)
    }
}

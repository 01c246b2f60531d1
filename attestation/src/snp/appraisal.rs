//! The appraisal of SEV-SNP evidence: a verified report that answers this challenge for
//! these keys, from a chip that can be told apart from others. Policy decides on this.
//!
//! ```text
//! report bytes --SnpVerifier::verify--> VerifiedReport --SnpAppraisal::new--> SnpAppraisal
//!                    expected REPORT_DATA (nonce, keys) --^
//! ```

use super::VerifiedReport;

/// Why a verified report does not answer the challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpAppraisalError {
    /// `REPORT_DATA` is not the value this challenge and these keys require: a stale
    /// report, or one made for other keys.
    #[error("REPORT_DATA does not bind this challenge and these keys: stale report, or keys other than the ones sent")]
    ReportData,
    /// The CHIP_ID is all zeros (MASK_CHIP_ID, or a VLEK-signed report without one): every
    /// such guest would share one hardware identity.
    #[error("CHIP_ID is zero (masked): guests cannot be told apart; do not set MASK_CHIP_ID in the host's SNP configuration")]
    MaskedChipId,
}

/// Proof that a report verified (signature, chain to AMD or a configured root), carries
/// the expected `REPORT_DATA` and names its chip. [`SnpAppraisal::new`] builds one for a
/// guest's own report; [`crate::snp::azure::VerifiedAzureCvm::into_parts`] for an Azure HCL
/// report, whose REPORT_DATA commits to the runtime claims (replayable on its own: the vTPM
/// quote brings the freshness) and whose chip is not the guest's identity.
#[derive(Debug, Clone)]
pub struct SnpAppraisal {
    report: VerifiedReport,
}

impl SnpAppraisal {
    /// Appraises `report` against the `REPORT_DATA` the challenge requires (compared in
    /// constant time).
    ///
    /// # Errors
    /// [`SnpAppraisalError`] when the chip is masked or `REPORT_DATA` differs.
    pub fn new(report: VerifiedReport, expected_report_data: &[u8; 64]) -> Result<Self, SnpAppraisalError> {
        if report.chip_id().iter().all(|&b| b == 0) {
            return Err(SnpAppraisalError::MaskedChipId);
        }
        aws_lc_rs::constant_time::verify_slices_are_equal(report.report_data(), expected_report_data)
            .map_err(|_| SnpAppraisalError::ReportData)?;
        Ok(Self { report })
    }

    /// A report whose REPORT_DATA was checked by the caller against what it must commit to
    /// (an Azure HCL report's runtime claims). Its chip is not the guest's identity there
    /// (the vTPM's EK is), so a masked CHIP_ID is not refused.
    pub(crate) fn committed(report: VerifiedReport) -> Self {
        Self { report }
    }

    /// The verified report.
    #[must_use]
    pub fn report(&self) -> &VerifiedReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::snp::sim::{ReportFields, TestSigner};
    use crate::snp::{SnpCertSource, SnpVerifier};

    fn verified(signer: &TestSigner, fields: &ReportFields) -> VerifiedReport {
        let verifier = SnpVerifier::builder()
            .trust_test_root(signer.product(), signer.ark_der(), signer.ask_der(), Some(signer.asvk_der()))
            .build()
            .unwrap();
        let table = if fields.signing_key == 1 { signer.vlek_cert_table() } else { signer.cert_table() };
        let now = signer.vcek_spec().not_before + 1;
        verifier.verify(&signer.sign(fields), SnpCertSource::CertTable(&table), now).unwrap()
    }

    #[test]
    fn a_report_for_this_challenge_is_appraised() {
        let signer = TestSigner::generate();
        let mut fields = signer.report_fields();
        fields.report_data = [7; 64];
        let appraisal = SnpAppraisal::new(verified(&signer, &fields), &[7; 64]).unwrap();
        assert_eq!(appraisal.report().hw_id(), &signer.chip_id()[..signer.product().hw_id_len()]);
    }

    #[test]
    fn other_report_data_is_refused() {
        let signer = TestSigner::generate();
        let mut fields = signer.report_fields();
        fields.report_data = [7; 64];
        let mut expected = [7; 64];
        expected[63] = 8;
        let err = SnpAppraisal::new(verified(&signer, &fields), &expected).unwrap_err();
        assert_eq!(err, SnpAppraisalError::ReportData);
    }

    #[test]
    fn a_masked_chip_id_is_refused() {
        let signer = TestSigner::generate();
        let mut fields = signer.report_fields();
        fields.report_data = [7; 64];
        // A VLEK-signed report: the certificate names no chip, the report's CHIP_ID is zero.
        fields.signing_key = 1;
        fields.chip_id = [0; 64];
        let report = verified(&signer, &fields);
        assert_eq!(SnpAppraisal::new(report, &[7; 64]).unwrap_err(), SnpAppraisalError::MaskedChipId);
    }
}

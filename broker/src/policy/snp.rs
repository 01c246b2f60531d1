//! What an SEV-SNP VM must show: launch measurement, TCB, debug, VMPL.

use mooring_attestation::snp::appraisal::SnpAppraisal;
use mooring_attestation::snp::TcbParts;

use super::{file, CompileError};
use crate::refusal::{Code, Refusal};

/// What an SEV-SNP VM must show.
#[derive(Debug)]
pub(crate) struct SnpRules {
    measurements: Vec<Vec<u8>>,
    min_tcb: TcbParts,
    allow_debug: bool,
    max_vmpl: u32,
}

/// The first component of `have` below `min`, as (name, have, min).
fn tcb_below(have: &TcbParts, min: &TcbParts) -> Option<(&'static str, u8, u8)> {
    have.components()
        .into_iter()
        .zip(min.components())
        .find(|((_, have), (_, need))| have < need)
        .map(|((name, have), (_, need))| (name, have, need))
}

impl SnpRules {
    pub(super) fn compile(rules: file::SnpFile) -> Result<Self, CompileError> {
        if rules.measurements.is_empty() {
            return Err("[class.snp] measurements is empty: list the launch measurements to admit".into());
        }
        if let Some(bad) = rules.measurements.iter().find(|m| m.0.len() != 48) {
            return Err(
                format!("measurement {} is {} bytes, not 48", hex::encode(&bad.0), bad.0.len()).into()
            );
        }
        Ok(Self {
            measurements: rules.measurements.into_iter().map(|m| m.0).collect(),
            min_tcb: rules.min_tcb,
            allow_debug: rules.allow_debug,
            max_vmpl: rules.max_vmpl,
        })
    }

    /// Whether the launch measurement is one the class admits.
    pub(super) fn admits_measurement(&self, appraisal: &SnpAppraisal) -> bool {
        let measurement = appraisal.report().measurement();
        self.measurements.iter().any(|m| m.as_slice() == measurement.as_slice())
    }

    /// Requirements beyond the measurement: no debugging, VMPL, minimum TCB.
    pub(super) fn check(&self, appraisal: &SnpAppraisal) -> Result<(), Refusal> {
        let report = appraisal.report();
        if report.policy().debug_allowed() && !self.allow_debug {
            return Err(Refusal::new(
                Code::SnpDebug,
                "guest policy allows debugging (DEBUG bit set): the host can read guest memory",
            ));
        }
        let vmpl = report.claims().vmpl();
        if vmpl > self.max_vmpl {
            return Err(Refusal::new(
                Code::SnpVmpl,
                format!("report from VMPL {vmpl}, class allows at most {}", self.max_vmpl),
            ));
        }
        if let Some((component, have, need)) =
            tcb_below(&report.claims().reported_tcb().parts(), &self.min_tcb)
        {
            return Err(Refusal::new(
                Code::SnpTcbTooLow,
                format!(
                    "reported TCB {component} is {have}, class requires at least {need}: update the host firmware"
                ),
            ));
        }
        Ok(())
    }
}

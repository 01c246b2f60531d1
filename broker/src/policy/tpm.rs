//! What a TPM VM must show: the quoted PCRs, pinned values, measured-boot rules.

use std::collections::BTreeMap;

use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::appraisal::TpmAppraisal;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};

use super::boot::{BootRules, NOT_IN_FIRMWARE_LOG};
use super::{file, CompileError};
use crate::refusal::{Code, Refusal};

/// What a TPM VM must show.
#[derive(Debug)]
pub(crate) struct TpmRules {
    selection: PcrSelection,
    bank: HashAlg,
    pcrs: Vec<u8>,
    pcr_values: BTreeMap<u8, Vec<Vec<u8>>>,
    boot: Option<BootRules>,
    seal_selection: PcrSelection,
}

impl TpmRules {
    pub(super) fn compile(rules: file::TpmFile) -> Result<Self, CompileError> {
        let bank = HashAlg::from_name(&rules.pcr_bank)
            .ok_or_else(|| format!("unknown pcr_bank {:?}", rules.pcr_bank))?;
        let selection = PcrSelection::single(bank, &rules.pcrs).map_err(|e| format!("pcrs: {e}"))?;
        if rules.pcrs.is_empty() {
            return Err("pcrs is empty".into());
        }
        if let Some((index, why)) = NOT_IN_FIRMWARE_LOG.iter().find(|(i, _)| rules.pcrs.contains(i)) {
            return Err(format!(
                "pcrs lists PCR {index}: {why}, and every quoted PCR is checked against that log"
            )
            .into());
        }
        let mut pcr_values = BTreeMap::new();
        for (index, values) in rules.pcr_values {
            let index: u8 = index.parse().map_err(|_| format!("pcr_values: {index:?} is not a PCR index"))?;
            if !rules.pcrs.contains(&index) {
                return Err(format!("pcr_values lists PCR {index}, which is not in pcrs").into());
            }
            if let Some(bad) = values.iter().find(|v| v.0.len() != bank.size()) {
                return Err(format!(
                    "pcr_values {index}: {} bytes, a {} PCR has {}",
                    bad.0.len(),
                    bank.name(),
                    bank.size()
                )
                .into());
            }
            if values.is_empty() {
                return Err(format!(
                    "pcr_values {index}: empty list admits nothing; remove the key or add values"
                )
                .into());
            }
            pcr_values.insert(index, values.into_iter().map(|v| v.0).collect());
        }
        let boot = match rules.event_log {
            Some(table) => {
                let at = table.span().start;
                let compiled = BootRules::compile(table.into_inner(), bank, &rules.pcrs)
                    .map_err(|message| CompileError { at: Some(at), message })?;
                Some(compiled)
            }
            None => None,
        };
        if pcr_values.is_empty() && boot.is_none() {
            return Err(
                "[class.tpm] pins no boot state: give pcr_values, or [class.tpm.event_log] rules".into()
            );
        }
        let seal_pcrs = rules.seal_pcrs.unwrap_or_else(|| rules.pcrs.clone());
        if let Some(index) = seal_pcrs.iter().find(|i| !rules.pcrs.contains(i)) {
            return Err(format!("seal_pcrs lists PCR {index}, which is not quoted (pcrs)").into());
        }
        let seal_selection = PcrSelection::single(bank, &seal_pcrs).map_err(|e| format!("seal_pcrs: {e}"))?;
        Ok(Self { selection, bank, pcrs: rules.pcrs, pcr_values, boot, seal_selection })
    }

    /// The bank the class quotes and appraises.
    pub(crate) fn bank(&self) -> HashAlg {
        self.bank
    }

    /// The PCRs a VM must quote.
    pub(crate) fn selection(&self) -> &PcrSelection {
        &self.selection
    }

    /// The PCRs the class appraises.
    pub(crate) fn pcrs(&self) -> &[u8] {
        &self.pcrs
    }

    /// The PCRs a sealed secret's policy covers.
    pub(crate) fn seal_selection(&self) -> &PcrSelection {
        &self.seal_selection
    }

    /// Bank name to indices, for the challenge.
    pub(crate) fn selection_map(&self) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(self.bank.name().to_owned(), self.pcrs.clone())])
    }

    /// Every PCR the class appraises is among the quoted `pcrs`.
    pub(crate) fn check_covered(&self, pcrs: &PcrValues) -> Result<(), Refusal> {
        match self.pcrs.iter().find(|i| pcrs.get(self.bank, **i).is_none()) {
            Some(index) => Err(Refusal::new(
                Code::PcrSelectionMismatch,
                format!(
                    "the quote does not cover PCR {}:{index}, which the class appraises",
                    self.bank.name()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Decides on an appraisal: measured-boot rules first (their refusals say what in the
    /// boot was wrong), then the pinned PCR values.
    pub(crate) fn check(&self, appraisal: &TpmAppraisal) -> Result<(), Refusal> {
        self.check_covered(appraisal.pcrs())?;
        if let Some(rules) = &self.boot {
            let Some(boot) = appraisal.boot() else {
                return Err(Refusal::new(
                    Code::EventLogMissing,
                    "class has measured-boot rules and requires the event log; none was sent",
                ));
            };
            rules.check(boot)?;
        }
        for (index, allowed) in &self.pcr_values {
            let value = appraisal.pcrs().get(self.bank, *index).unwrap_or_default();
            if !allowed.iter().any(|a| a.as_slice() == value) {
                return Err(Refusal::new(
                    Code::PcrValueNotAllowed,
                    format!(
                        "PCR {}:{index} is {}, not an allowed value",
                        self.bank.name(),
                        hex::encode(value)
                    ),
                ));
            }
        }
        Ok(())
    }
}

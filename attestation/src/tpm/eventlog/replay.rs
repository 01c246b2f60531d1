//! Replaying the log into PCR values and checking them against quoted PCRs.

use std::ops::RangeInclusive;

use super::summary::BootSummary;
use super::{EventLog, EventLogError};
use crate::tpm::alg::HashAlg;
use crate::tpm::pcr::{PcrValues, MAX_PCRS};

/// PCRs reset by a dynamic launch (PC Client Platform TPM Profile, "PCR Attributes"):
/// they start at all ones and belong to the DRTM log, not the firmware log.
const DRTM_PCRS: RangeInclusive<u8> = 17..=22;

/// One bank's PCRs after replay, and which of them an event extended.
struct BankState {
    values: Vec<Vec<u8>>,
    touched: u32,
}

impl EventLog<'_> {
    /// Replays every supported bank the log declares.
    ///
    /// Only PCRs that at least one event extends are included (a PCR whose only event is
    /// `StartupLocality` is left out, as in the reference values); PCRs start at zero
    /// except PCR 0 under a `StartupLocality` event.
    #[must_use]
    pub fn replay(&self) -> PcrValues {
        let mut values = PcrValues::new();
        for bank in &self.banks {
            let state = self.replay_bank(*bank);
            for (index, value) in state.values.into_iter().enumerate() {
                let Ok(index) = u8::try_from(index) else { break };
                if state.touched & (1 << index) != 0 {
                    // Cannot fail: index < MAX_PCRS and extend returns bank-sized digests.
                    let _ = values.insert(*bank, index, value);
                }
            }
        }
        values
    }

    /// Replays `bank` and compares it with `quoted` for each of `indices`, lowest first.
    ///
    /// A quoted PCR that no event extends must hold its initial value (zero, or the startup
    /// locality for PCR 0): the log then vouches that nothing was measured there. PCRs
    /// 17-22 are refused (dynamic-launch PCRs start at all ones and are not in this log).
    ///
    /// # Errors
    /// [`EventLogError::PcrMismatch`] naming the lowest PCR whose replayed value differs,
    /// [`EventLogError::QuotedPcrMissing`], [`EventLogError::BankNotInLog`],
    /// [`EventLogError::NothingToCheck`] for an empty `indices`, or
    /// [`EventLogError::UncheckablePcr`].
    pub fn check_against(
        &self,
        quoted: &PcrValues,
        bank: HashAlg,
        indices: &[u8],
    ) -> Result<ReplayMatch<'_, '_>, EventLogError> {
        if indices.is_empty() {
            return Err(EventLogError::NothingToCheck);
        }
        if !self.banks.contains(&bank) {
            let declared: Vec<&str> = self.banks.iter().map(|b| b.name()).collect();
            return Err(EventLogError::BankNotInLog { bank, declared: declared.join(", ") });
        }
        let mut mask = 0u32;
        for &index in indices {
            if index >= MAX_PCRS {
                return Err(EventLogError::UncheckablePcr { index, reason: "PCR indices stop at 31" });
            }
            if DRTM_PCRS.contains(&index) {
                return Err(EventLogError::UncheckablePcr {
                    index,
                    reason: "PCRs 17-22 belong to dynamic launch, not the firmware event log",
                });
            }
            mask |= 1 << index;
        }
        let state = self.replay_bank(bank);
        for index in (0..MAX_PCRS).filter(|i| mask & (1 << i) != 0) {
            let replayed = state.values.get(usize::from(index)).map(Vec::as_slice).unwrap_or_default();
            let quoted = quoted.get(bank, index).ok_or(EventLogError::QuotedPcrMissing { bank, index })?;
            if replayed != quoted {
                return Err(EventLogError::PcrMismatch {
                    bank,
                    index,
                    replayed: hex::encode(replayed),
                    quoted: hex::encode(quoted),
                });
            }
        }
        Ok(ReplayMatch { log: self, bank, pcrs: mask })
    }

    /// Whether an event extends `pcr` in `bank` (what [`EventLog::replay`] would include),
    /// without hashing anything.
    #[must_use]
    pub fn extends(&self, bank: HashAlg, pcr: u8) -> bool {
        self.events
            .iter()
            .any(|e| e.is_extended() && u8::try_from(e.pcr) == Ok(pcr) && e.digest(bank).is_some())
    }

    fn replay_bank(&self, bank: HashAlg) -> BankState {
        let mut values = vec![vec![0u8; bank.size()]; usize::from(MAX_PCRS)];
        if let Some(locality) = self.startup_locality {
            if let Some(last) = values.first_mut().and_then(|pcr0| pcr0.last_mut()) {
                *last = locality;
            }
        }
        let mut touched = 0u32;
        for event in self.events.iter().filter(|e| e.is_extended()) {
            let Some(digest) = event.digest(bank) else { continue };
            let Ok(index) = usize::try_from(event.pcr) else { continue };
            if let Some(value) = values.get_mut(index) {
                *value = bank.extend(value, digest);
                touched |= 1 << index;
            }
        }
        BankState { values, touched }
    }
}

/// Proof that a log's replay equals quoted PCR values: only
/// [`EventLog::check_against`] builds one.
#[derive(Debug, Clone, Copy)]
pub struct ReplayMatch<'l, 'a> {
    log: &'l EventLog<'a>,
    bank: HashAlg,
    pcrs: u32,
}

impl<'l, 'a> ReplayMatch<'l, 'a> {
    /// The log that matched.
    #[must_use]
    pub fn log(&self) -> &'l EventLog<'a> {
        self.log
    }

    /// The bank that was compared.
    #[must_use]
    pub fn bank(&self) -> HashAlg {
        self.bank
    }

    /// The PCRs that were compared, ascending.
    #[must_use]
    pub fn pcrs(&self) -> Vec<u8> {
        (0..MAX_PCRS).filter(|i| self.pcrs & (1 << i) != 0).collect()
    }

    /// Whether `pcr` was among the PCRs compared.
    #[must_use]
    pub fn covers(&self, pcr: u32) -> bool {
        pcr < u32::from(MAX_PCRS) && self.pcrs & (1 << pcr) != 0
    }

    /// The boot summary in the matched bank, restricted to events in the compared PCRs:
    /// claims backed by the quote.
    #[must_use]
    pub fn summary(&self) -> BootSummary {
        BootSummary::build(self.log, self.bank, |pcr| self.covers(pcr))
    }
}

//! The appraisal of TPM evidence: a verified quote and, when the VM sent its event log,
//! the measured boot that log proves against the quote. Policy decides on this and on
//! nothing the VM merely claimed.
//!
//! ```text
//! quote bytes --verify_quote--> VerifiedQuote --+
//! event log bytes ------------------------------+--TpmAppraisal::new--> TpmAppraisal
//! ```

use crate::tpm::alg::HashAlg;
use crate::tpm::eventlog::{EventLogError, MeasuredBoot};
use crate::tpm::pcr::PcrValues;
use crate::tpm::quote::VerifiedQuote;

/// Proof that a quote verified and, if a log came with it, that the log reproduces every
/// PCR the quote selects in the appraised bank. Only [`TpmAppraisal::new`] builds one.
#[derive(Debug, Clone)]
pub struct TpmAppraisal {
    quote: VerifiedQuote,
    boot: Option<MeasuredBoot>,
}

impl TpmAppraisal {
    /// Appraises `event_log` (when sent) against `quote` in `bank`.
    ///
    /// # Errors
    /// [`EventLogError`] when the log is unreadable or does not reproduce a quoted PCR of
    /// `bank` exactly: a log that is sent is never ignored.
    pub fn new(quote: VerifiedQuote, event_log: Option<&[u8]>, bank: HashAlg) -> Result<Self, EventLogError> {
        let boot = event_log.map(|log| MeasuredBoot::appraise(log, &quote, bank)).transpose()?;
        Ok(Self { quote, boot })
    }

    /// The verified quote.
    #[must_use]
    pub fn quote(&self) -> &VerifiedQuote {
        &self.quote
    }

    /// The quoted PCR values.
    #[must_use]
    pub fn pcrs(&self) -> &PcrValues {
        self.quote.pcrs()
    }

    /// The measured boot, when an event log was sent.
    #[must_use]
    pub fn boot(&self) -> Option<&MeasuredBoot> {
        self.boot.as_ref()
    }
}

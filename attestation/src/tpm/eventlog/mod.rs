//! The TCG PC Client measured-boot event log (TCG PC Client Platform Firmware Profile
//! Specification, "PFP", section 10): parsing, typed event content, replay into PCR values
//! and a summary of the boot for policy.
//!
//! ```text
//! bytes --EventLog::parse--> EventLog --check_against(quoted PCRs)--> ReplayMatch --summary--> BootSummary
//! ```
//!
//! Replay rules (PFP section 10.4; agreeing with go-tpm-tools and tpm2-tools):
//! * every PCR starts at zero, except that a `StartupLocality` `EV_NO_ACTION` event sets
//!   the last byte of PCR 0's initial value to the locality of `TPM2_Startup`;
//! * `EV_NO_ACTION` events are never extended; every other event extends each bank with
//!   that bank's digest (an event that carries no digest for a bank leaves it alone);
//! * banks are those the `Spec ID Event03` header declares (SHA-1 alone for the SHA-1
//!   format); declared algorithms this crate does not know are skipped, not replayed;
//! * `EV_EFI_HCRTM_EVENT` does not change PCR 0's initial value (an H-CRTM platform that
//!   starts PCR 0 at locality 4 logs a `StartupLocality` event for it).
//!
//! The event data is not covered by the digests in general: a log can claim anything in
//! its data. [`BootSummary`] only reports content whose digest it has recomputed, and
//! only a [`ReplayMatch`] (from [`EventLog::check_against`]) ties the digests to a quote.

mod content;
mod event;
mod measured;
mod parse;
mod replay;
mod summary;

use serde::Serialize;
use thiserror::Error;

pub use content::{EventKind, FirmwareBlob, Guid, ImageLoad, Separator, TaggedEvent, UefiVariable};
pub use event::{Digests, Event, EventType};
pub use measured::{MeasuredBoot, Measurement, Proof, SecureBootState, WellKnown, MAX_VARIABLE_NAME};
pub use replay::ReplayMatch;
pub use summary::{
    BootApplication, BootSummary, CmdlineSource, KernelCmdline, MeasuredVariable, SecureBootDatabases,
};

use crate::codec::CodecError;
use crate::tpm::alg::HashAlg;

/// Largest event log accepted. Firmware logs are tens of kilobytes (the largest real one
/// in the test vectors is 73 KB); this bounds the work replay does for one request.
pub const MAX_LOG_SIZE: usize = 16 * 1024 * 1024;
/// Largest `eventSize` accepted. The largest real events are `dbx` variables (25 KB in
/// 2025) and Windows boot-manager aggregates (36 KB).
pub const MAX_EVENT_DATA_SIZE: usize = 1024 * 1024;
/// Most algorithms a `Spec ID Event03` header may declare (five are defined today).
pub const MAX_SPEC_ID_ALGORITHMS: usize = 16;
/// Largest `digestSize` a `Spec ID Event03` header may declare: `sizeof(TPMU_HA)`.
pub const MAX_DIGEST_SIZE: usize = crate::tpm::limits::MAX_DIGEST;

const _: () = assert!(MAX_SPEC_ID_ALGORITHMS <= 32, "parse tracks declared algorithms in a u32");

/// Why an event log was rejected or does not match a quote.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// No bytes at all.
    #[error("event log is empty")]
    Empty,
    /// More bytes than [`MAX_LOG_SIZE`].
    #[error("event log is {size} bytes, the maximum is {max}")]
    TooLarge {
        /// Size of the log.
        size: usize,
        /// [`MAX_LOG_SIZE`].
        max: usize,
    },
    /// A record is truncated, oversized or malformed.
    #[error("event log event {number} (at byte {offset}): {source}")]
    Framing {
        /// Index of the event in the log (the header is event 0).
        number: usize,
        /// Byte offset where the event starts.
        offset: usize,
        /// The field at fault.
        source: CodecError,
    },
    /// The Spec ID header lists an algorithm twice.
    #[error("event log Spec ID header declares algorithm {alg:#06x} twice")]
    DuplicateAlgorithm {
        /// `TPM_ALG_ID`.
        alg: u16,
    },
    /// The Spec ID header gives a known algorithm the wrong digest size.
    #[error("event log Spec ID header declares {bank} digests of {size} bytes, they are {expected}")]
    WrongDigestSize {
        /// The algorithm.
        bank: HashAlg,
        /// Size declared.
        size: usize,
        /// The algorithm's digest size.
        expected: usize,
    },
    /// An event carries a digest for an algorithm the Spec ID header did not declare, so
    /// its size (and the rest of the log) cannot be known.
    #[error("event log event {number} carries a digest for algorithm {alg:#06x}, which the Spec ID header does not declare")]
    UndeclaredAlgorithm {
        /// Index of the event.
        number: usize,
        /// `TPM_ALG_ID`.
        alg: u16,
    },
    /// An event carries two digests for one algorithm.
    #[error("event log event {number} carries two digests for algorithm {alg:#06x}")]
    DuplicateDigest {
        /// Index of the event.
        number: usize,
        /// `TPM_ALG_ID`.
        alg: u16,
    },
    /// An extended event names a PCR the TPM does not have.
    #[error("event log event {number} extends PCR {pcr}, but PCR indices stop at 31")]
    PcrOutOfRange {
        /// Index of the event.
        number: usize,
        /// `pcrIndex`.
        pcr: u32,
    },
    /// A `StartupLocality` event that would make PCR 0's initial value ambiguous.
    #[error("event log event {number}: StartupLocality event {problem}")]
    StartupLocality {
        /// Index of the event.
        number: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The quote is over a bank the log has no digests for.
    #[error("event log has no {bank} bank (it declares {declared})")]
    BankNotInLog {
        /// The bank asked for.
        bank: HashAlg,
        /// The banks the log declares, comma-separated.
        declared: String,
    },
    /// Nothing was asked to be checked.
    #[error("no PCRs to check against the event log")]
    NothingToCheck,
    /// A PCR the firmware event log cannot vouch for.
    #[error("PCR {index} cannot be checked against the firmware event log: {reason}")]
    UncheckablePcr {
        /// The PCR index.
        index: u8,
        /// Why.
        reason: &'static str,
    },
    /// The quoted values lack a PCR that was asked to be checked.
    #[error("the quote carries no value for PCR {index} ({bank})")]
    QuotedPcrMissing {
        /// The bank.
        bank: HashAlg,
        /// The PCR index.
        index: u8,
    },
    /// Replaying the log gives a different value than the quote for this PCR (the
    /// lowest-numbered one that differs).
    #[error("event log replays PCR {index} ({bank}) to {replayed}, the quote says {quoted}")]
    PcrMismatch {
        /// The bank.
        bank: HashAlg,
        /// The PCR index.
        index: u8,
        /// Replayed value, hex.
        replayed: String,
        /// Quoted value, hex.
        quoted: String,
    },
}

/// The two record formats of PFP section 10.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `TCG_PCR_EVENT` records throughout, SHA-1 digests only (PFP section 10.2.1;
    /// TPM 1.2-era firmware and some hypervisors, e.g. GCE's Windows images).
    LegacySha1,
    /// A `TCG_PCR_EVENT` carrying `TCG_EfiSpecIdEvent` ("Spec ID Event03"), then
    /// `TCG_PCR_EVENT2` records with a digest per bank (PFP section 10.2.2).
    CryptoAgile,
}

/// A parsed event log, borrowing the bytes it was parsed from.
///
/// Only a log whose framing is entirely valid can exist: every byte belongs to one record,
/// every digest has a declared size, and PCR 0's initial value is unambiguous.
#[derive(Debug, Clone)]
pub struct EventLog<'a> {
    format: LogFormat,
    banks: Vec<HashAlg>,
    unsupported_algorithms: Vec<u16>,
    startup_locality: Option<u8>,
    events: Vec<Event<'a>>,
}

impl<'a> EventLog<'a> {
    /// Parses a log in either format (as read from
    /// `/sys/kernel/security/tpm0/binary_bios_measurements`).
    ///
    /// # Errors
    /// [`EventLogError`] naming the event and field when the framing is invalid: truncated
    /// or oversized records, trailing bytes, undeclared or duplicate digest algorithms,
    /// extended PCRs out of range, or a misplaced `StartupLocality` event.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EventLogError> {
        parse::parse(bytes)
    }

    /// Which record format the log uses.
    #[must_use]
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// The supported banks the log declares, in declaration order: the banks
    /// [`EventLog::replay`] produces.
    #[must_use]
    pub fn banks(&self) -> &[HashAlg] {
        &self.banks
    }

    /// `TPM_ALG_ID`s the Spec ID header declares that this crate does not support: their
    /// digests are skipped and not replayed.
    #[must_use]
    pub fn unsupported_algorithms(&self) -> &[u16] {
        &self.unsupported_algorithms
    }

    /// The locality of the `StartupLocality` event, if the log has one.
    #[must_use]
    pub fn startup_locality(&self) -> Option<u8> {
        self.startup_locality
    }

    /// Every record, in log order; for the crypto-agile format the first is the Spec ID
    /// header.
    #[must_use]
    pub fn events(&self) -> &[Event<'a>] {
        &self.events
    }
}

#[cfg(test)]
mod tests;

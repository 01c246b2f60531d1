//! An editable crypto-agile event log (feature `sim`): tests take a real firmware log,
//! change one thing (what a boot measured, or what the log claims about it) and write it
//! back, framed exactly as the parser expects.

use crate::tpm::alg::HashAlg;
use crate::tpm::eventlog::{EventLog, EventLogError, EventType, LogFormat};
use crate::tpm::pcr::PcrValues;

/// One `TCG_PCR_EVENT2` record, every field editable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditableEvent {
    /// `pcrIndex`.
    pub pcr: u32,
    /// `eventType`.
    pub event_type: EventType,
    /// `digests`, one per bank, in log order.
    pub digests: Vec<(HashAlg, Vec<u8>)>,
    /// `event`.
    pub data: Vec<u8>,
}

impl EditableEvent {
    /// Sets every bank's digest to the hash of `measured`: what a component that measured
    /// those bytes would have extended.
    pub fn measure(&mut self, measured: &[u8]) {
        for (bank, digest) in &mut self.digests {
            *digest = bank.digest(&[measured]);
        }
    }
}

/// A crypto-agile log: its `Spec ID Event03` header record kept as bytes, then the events.
#[derive(Debug, Clone)]
pub struct EditableLog {
    header: Vec<u8>,
    /// The records after the header, in log order.
    pub events: Vec<EditableEvent>,
}

impl EditableLog {
    /// Reads a crypto-agile log whose banks are all supported by this crate.
    ///
    /// # Errors
    /// The parser's error; [`EventLogError::Empty`] for a SHA-1-format log or one that
    /// declares an algorithm this crate does not replay (it could not be written back).
    pub fn parse(bytes: &[u8]) -> Result<Self, EventLogError> {
        let log = EventLog::parse(bytes)?;
        if log.format() != LogFormat::CryptoAgile || !log.unsupported_algorithms().is_empty() {
            return Err(EventLogError::Empty);
        }
        let header_size = bytes
            .get(28..32)
            .and_then(|size| <[u8; 4]>::try_from(size).ok())
            .and_then(|size| usize::try_from(u32::from_le_bytes(size)).ok())
            .map_or(0, |size| 32 + size);
        let header = bytes.get(..header_size).ok_or(EventLogError::Empty)?.to_vec();
        let events = log
            .events()
            .iter()
            .skip(1)
            .map(|e| EditableEvent {
                pcr: e.pcr(),
                event_type: e.event_type(),
                digests: e.digests().iter().map(|(bank, digest)| (bank, digest.to_vec())).collect(),
                data: e.data().to_vec(),
            })
            .collect();
        Ok(Self { header, events })
    }

    /// The log's bytes.
    ///
    /// # Panics
    /// Only if an event's data exceeds 4 GiB (test support code).
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        for e in &self.events {
            out.extend_from_slice(&e.pcr.to_le_bytes());
            out.extend_from_slice(&e.event_type.0.to_le_bytes());
            out.extend_from_slice(&u32::try_from(e.digests.len()).expect("few digests").to_le_bytes());
            for (bank, digest) in &e.digests {
                out.extend_from_slice(&bank.tpm_id().to_le_bytes());
                out.extend_from_slice(digest);
            }
            out.extend_from_slice(&u32::try_from(e.data.len()).expect("small event").to_le_bytes());
            out.extend_from_slice(&e.data);
        }
        out
    }

    /// The PCR values a TPM that saw exactly these measurements would quote.
    ///
    /// # Panics
    /// Only if the log no longer parses (test support code).
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn replay(&self) -> PcrValues {
        let bytes = self.to_bytes();
        EventLog::parse(&bytes).expect("edited log parses").replay()
    }

    /// Indices of the events extended into `pcr`.
    #[must_use]
    pub fn in_pcr(&self, pcr: u32) -> Vec<usize> {
        (0..self.events.len()).filter(|i| self.events.get(*i).is_some_and(|e| e.pcr == pcr)).collect()
    }
}

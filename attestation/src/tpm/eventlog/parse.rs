//! Record framing: the SHA-1 format (`TCG_PCR_EVENT` throughout) and the crypto-agile
//! format (a `TCG_PCR_EVENT` carrying the `Spec ID Event03` header, then `TCG_PCR_EVENT2`
//! records), TCG PC Client Platform Firmware Profile ("PFP") section 10.2.
//!
//! Framing is strict: every byte of the log belongs to exactly one record, and every size
//! is bounded by a named constant before anything is read.

use super::content::SPEC_ID_EVENT03;
use super::event::{Digests, Event, EventType};
use super::{
    EventLog, EventLogError, LogFormat, MAX_DIGEST_SIZE, MAX_EVENT_DATA_SIZE, MAX_LOG_SIZE,
    MAX_SPEC_ID_ALGORITHMS,
};
use crate::codec::{CodecError, Reader};
use crate::tpm::alg::HashAlg;
use crate::tpm::pcr::MAX_PCRS;

/// `TCG_EfiStartupLocalityEvent.Signature` (PFP Table "Startup Locality Event").
pub(super) const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";
/// Size of `TCG_EfiStartupLocalityEvent`: the signature and the `StartupLocality` byte.
const STARTUP_LOCALITY_EVENT_SIZE: usize = STARTUP_LOCALITY_SIGNATURE.len() + 1;
/// Highest TPM locality (TPM 2.0 Part 1, "Locality"): 0-4.
const MAX_LOCALITY: u8 = 4;
/// `TCG_PCR_EVENT.digest` is always a SHA-1 digest.
const SHA1_DIGEST_SIZE: usize = 20;
/// Smallest `TCG_PCR_EVENT2` with one SHA-256 digest and no data, to size the event vector.
const TYPICAL_EVENT_SIZE: usize = 4 + 4 + 4 + 2 + 32 + 4;

/// One algorithm of `TCG_EfiSpecIdEvent.digestSizes` (PFP Table
/// "TCG_EfiSpecIdEventAlgorithmSize").
#[derive(Debug, Clone, Copy)]
struct Declared {
    /// `algorithmId`.
    alg: u16,
    /// `digestSize`.
    size: usize,
    /// The bank, when this crate supports the algorithm; others are skipped, not replayed.
    bank: Option<HashAlg>,
}

fn framing(number: usize, offset: usize) -> impl Fn(CodecError) -> EventLogError {
    move |source| EventLogError::Framing { number, offset, source }
}

pub(super) fn parse(bytes: &[u8]) -> Result<EventLog<'_>, EventLogError> {
    if bytes.is_empty() {
        return Err(EventLogError::Empty);
    }
    if bytes.len() > MAX_LOG_SIZE {
        return Err(EventLogError::TooLarge { size: bytes.len(), max: MAX_LOG_SIZE });
    }
    let mut r = Reader::new(bytes);
    let mut events = Vec::with_capacity(bytes.len() / TYPICAL_EVENT_SIZE);
    let first = read_pcr_event(&mut r, 0)?;
    let crypto_agile = first.event_type == EventType::NO_ACTION && first.data.starts_with(SPEC_ID_EVENT03);
    let (format, banks, unsupported) = if crypto_agile {
        let declared = read_spec_id(&first, &mut r)?;
        events.push(first);
        while !r.is_empty() {
            events.push(read_pcr_event2(&mut r, events.len(), &declared)?);
        }
        let banks = declared.iter().filter_map(|d| d.bank).collect();
        let unsupported = declared.iter().filter(|d| d.bank.is_none()).map(|d| d.alg).collect();
        (LogFormat::CryptoAgile, banks, unsupported)
    } else {
        events.push(first);
        while !r.is_empty() {
            events.push(read_pcr_event(&mut r, events.len())?);
        }
        (LogFormat::LegacySha1, vec![HashAlg::Sha1], Vec::new())
    };
    let startup_locality = check_events(&events)?;
    Ok(EventLog { format, banks, unsupported_algorithms: unsupported, startup_locality, events })
}

/// Reads a `TCG_PCR_EVENT` (PFP Table "TCG_PCR_EVENT").
fn read_pcr_event<'a>(r: &mut Reader<'a>, number: usize) -> Result<Event<'a>, EventLogError> {
    let err = framing(number, r.position());
    let pcr = r.u32_le("TCG_PCR_EVENT.pcrIndex").map_err(&err)?;
    let event_type = EventType(r.u32_le("TCG_PCR_EVENT.eventType").map_err(&err)?);
    let digest = r.take(SHA1_DIGEST_SIZE, "TCG_PCR_EVENT.digest").map_err(&err)?;
    let data = r.u32_le_prefixed(MAX_EVENT_DATA_SIZE, "TCG_PCR_EVENT.eventSize").map_err(&err)?;
    let mut digests = Digests::default();
    digests.insert(HashAlg::Sha1, digest);
    Ok(Event { pcr, event_type, digests, data })
}

/// Checks the header event and reads `TCG_EfiSpecIdEvent` (PFP Table "TCG_EfiSpecIdEvent")
/// from its data.
///
/// One quirk is accepted: when the event data ends right after a non-zero
/// `vendorInfoSize`, the vendor bytes are read from the log after the event, as
/// tpm2-tools does (its fixture `specid-vendordata.bin` is laid out this way). Every other
/// layout must fill the event exactly.
fn read_spec_id(header: &Event<'_>, log: &mut Reader<'_>) -> Result<Vec<Declared>, EventLogError> {
    let err = framing(0, 0);
    if header.pcr != 0 {
        let value = u64::from(header.pcr);
        return Err(err(CodecError::BadValue { field: "Spec ID event pcrIndex", value }));
    }
    if header.digest(HashAlg::Sha1).is_some_and(|d| d.iter().any(|b| *b != 0)) {
        return Err(err(CodecError::BadValue { field: "Spec ID event digest (must be zero)", value: 1 }));
    }
    let mut r = Reader::new(header.data);
    r.take(SPEC_ID_EVENT03.len(), "TCG_EfiSpecIdEvent.signature").map_err(&err)?;
    r.u32_le("TCG_EfiSpecIdEvent.platformClass").map_err(&err)?;
    r.u8("TCG_EfiSpecIdEvent.specVersionMinor").map_err(&err)?;
    r.u8("TCG_EfiSpecIdEvent.specVersionMajor").map_err(&err)?;
    r.u8("TCG_EfiSpecIdEvent.specErrata").map_err(&err)?;
    r.u8("TCG_EfiSpecIdEvent.uintnSize").map_err(&err)?;
    let count = r.u32_le("TCG_EfiSpecIdEvent.numberOfAlgorithms").map_err(&err)?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count == 0 {
        return Err(err(CodecError::BadValue { field: "TCG_EfiSpecIdEvent.numberOfAlgorithms", value: 0 }));
    }
    if count > MAX_SPEC_ID_ALGORITHMS {
        return Err(err(CodecError::TooLarge {
            field: "TCG_EfiSpecIdEvent.numberOfAlgorithms",
            size: count,
            max: MAX_SPEC_ID_ALGORITHMS,
        }));
    }
    let mut declared: Vec<Declared> = Vec::with_capacity(count);
    for _ in 0..count {
        let alg = r.u16_le("TCG_EfiSpecIdEventAlgorithmSize.algorithmId").map_err(&err)?;
        let size = usize::from(r.u16_le("TCG_EfiSpecIdEventAlgorithmSize.digestSize").map_err(&err)?);
        if size == 0 {
            return Err(err(CodecError::BadValue {
                field: "TCG_EfiSpecIdEventAlgorithmSize.digestSize",
                value: 0,
            }));
        }
        if size > MAX_DIGEST_SIZE {
            return Err(err(CodecError::TooLarge {
                field: "TCG_EfiSpecIdEventAlgorithmSize.digestSize",
                size,
                max: MAX_DIGEST_SIZE,
            }));
        }
        if declared.iter().any(|d| d.alg == alg) {
            return Err(EventLogError::DuplicateAlgorithm { alg });
        }
        let bank = HashAlg::from_tpm(alg);
        if let Some(bank) = bank {
            if size != bank.size() {
                return Err(EventLogError::WrongDigestSize { bank, size, expected: bank.size() });
            }
        }
        declared.push(Declared { alg, size, bank });
    }
    let vendor_size = usize::from(r.u8("TCG_EfiSpecIdEvent.vendorInfoSize").map_err(&err)?);
    if r.is_empty() && vendor_size > 0 {
        let err = framing(0, log.position());
        log.take(vendor_size, "TCG_EfiSpecIdEvent.vendorInfo (after eventSize)").map_err(err)?;
    } else {
        r.take(vendor_size, "TCG_EfiSpecIdEvent.vendorInfo").map_err(&err)?;
        r.expect_end("TCG_EfiSpecIdEvent").map_err(&err)?;
    }
    Ok(declared)
}

/// Reads a `TCG_PCR_EVENT2` (PFP Table "TCG_PCR_EVENT2"), whose `digests` is a
/// `TPML_DIGEST_VALUES` of `TPMT_HA` (TPM 2.0 Part 2, Tables 80 and 95) with the sizes the
/// Spec ID event declared.
fn read_pcr_event2<'a>(
    r: &mut Reader<'a>,
    number: usize,
    declared: &[Declared],
) -> Result<Event<'a>, EventLogError> {
    let err = framing(number, r.position());
    let pcr = r.u32_le("TCG_PCR_EVENT2.pcrIndex").map_err(&err)?;
    let event_type = EventType(r.u32_le("TCG_PCR_EVENT2.eventType").map_err(&err)?);
    let count = r.u32_le("TPML_DIGEST_VALUES.count").map_err(&err)?;
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count == 0 {
        // A record that extends no bank; zero padding after the last event reads as one.
        return Err(err(CodecError::BadValue { field: "TPML_DIGEST_VALUES.count", value: 0 }));
    }
    if count > declared.len() {
        return Err(err(CodecError::TooLarge {
            field: "TPML_DIGEST_VALUES.count",
            size: count,
            max: declared.len(),
        }));
    }
    let mut digests = Digests::default();
    let mut seen = 0u32;
    for _ in 0..count {
        let alg = r.u16_le("TPMT_HA.hashAlg").map_err(&err)?;
        let (position, algorithm) = declared
            .iter()
            .enumerate()
            .find(|(_, d)| d.alg == alg)
            .ok_or(EventLogError::UndeclaredAlgorithm { number, alg })?;
        let bit = 1u32.checked_shl(u32::try_from(position).unwrap_or(u32::MAX)).unwrap_or(0);
        if seen & bit != 0 {
            return Err(EventLogError::DuplicateDigest { number, alg });
        }
        seen |= bit;
        let digest = r.take(algorithm.size, "TPMT_HA.digest").map_err(&err)?;
        if let Some(bank) = algorithm.bank {
            digests.insert(bank, digest);
        }
    }
    let data = r.u32_le_prefixed(MAX_EVENT_DATA_SIZE, "TCG_PCR_EVENT2.eventSize").map_err(&err)?;
    Ok(Event { pcr, event_type, digests, data })
}

/// Checks what replay depends on beyond framing: extended PCR indices are in range, and
/// at most one well-formed `StartupLocality` event (PFP section 10.4.5.3) precedes every
/// PCR 0 extension. Returns the startup locality.
fn check_events(events: &[Event<'_>]) -> Result<Option<u8>, EventLogError> {
    let mut locality = None;
    let mut pcr0_extended = false;
    for (number, event) in events.iter().enumerate() {
        if event.is_extended() {
            if event.pcr >= u32::from(MAX_PCRS) {
                return Err(EventLogError::PcrOutOfRange { number, pcr: event.pcr });
            }
            pcr0_extended |= event.pcr == 0;
            continue;
        }
        if !event.data.starts_with(STARTUP_LOCALITY_SIGNATURE) {
            continue;
        }
        let problem = |problem| EventLogError::StartupLocality { number, problem };
        let [.., value] = event.data else { continue };
        if event.pcr != 0 {
            return Err(problem("is not logged to PCR 0"));
        }
        if event.data.len() != STARTUP_LOCALITY_EVENT_SIZE {
            return Err(problem("is not 17 bytes long"));
        }
        if *value > MAX_LOCALITY {
            return Err(problem("names a locality above 4"));
        }
        if locality.is_some() {
            return Err(problem("appears twice"));
        }
        if pcr0_extended {
            return Err(problem("comes after PCR 0 was extended"));
        }
        locality = Some(*value);
    }
    Ok(locality)
}

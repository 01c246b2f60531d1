//! Measured boot as the digests prove it.
//!
//! A [`MeasuredBoot`] lists every measurement extended into the quoted PCRs of one bank,
//! after the log has reproduced each of those PCRs exactly (untouched ones included). For
//! each measurement it says what its digest commits to, found from the digest alone:
//!
//! * a well-known value ([`Proof::WellKnown`]): the hash of a fixed string the firmware or
//!   boot loaders measure (separators, EFI action strings, UKI section names);
//! * event data that hashes to the digest ([`Proof::Variable`], [`Proof::Text`],
//!   [`Proof::Data`]), possibly after a loader's prefix that is not hashed (grub);
//! * nothing ([`Proof::Opaque`]): the digest of an image, a file or a blob the log does not
//!   carry. Only its value can be judged.
//!
//! The event type and any data that does not hash to the digest are kept for messages
//! only: a log is free to lie about them (PFP section 10.4: the digest, not the event, is
//! extended). Rules built on a [`MeasuredBoot`] decide by digests.

use std::fmt;
use std::sync::OnceLock;

use super::content::{utf16_text, utf8_text, EventKind, Guid, UefiVariable};
use super::event::EventType;
use super::{EventLog, EventLogError};
use crate::tpm::alg::HashAlg;
use crate::tpm::pcr::{PcrValues, MAX_PCRS};
use crate::tpm::quote::VerifiedQuote;

/// EFI action strings of a boot going as planned (PFP section 10.4.4), measured without a
/// NUL terminator.
const EFI_ACTIONS: [&str; 3] = [
    "Calling EFI Application from Boot Option",
    "Exit Boot Services Invocation",
    "Exit Boot Services Returned with Success",
];
/// EFI action strings of something that failed: a boot application returned to the firmware
/// (which then goes on to the next boot option), or ExitBootServices failed.
const EFI_FAILURE_ACTIONS: [&str; 2] =
    ["Returning from EFI Application from Boot Option", "Exit Boot Services Returned with Failure"];
/// The section names systemd-stub measures into PCR 11 before each UKI section's contents,
/// with their NUL terminator.
const UKI_SECTIONS: [&str; 12] = [
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".uname", ".sbat", ".pcrsig", ".pcrpkey",
    ".ucode", ".profile",
];
/// `EV_SEPARATOR` data, PFP section 10.4.1: normal, and the value firmware extends on error.
const SEPARATOR: [u8; 4] = [0, 0, 0, 0];
const ERROR_SEPARATOR: [u8; 4] = [1, 0, 0, 0];
/// Prefixes grub writes before the text it hashes (upstream 2.06+ and the Red Hat patches).
const GRUB_PREFIXES: [&str; 4] =
    ["kernel_cmdline: ", "grub_kernel_cmdline ", "grub_cmd: ", "module_cmdline: "];
/// Event data longer than this is hashed once as a whole, never as text variants.
const MAX_TEXT_DATA: usize = 16 * 1024;
/// Longest variable name kept (UEFI names in use are far shorter).
pub const MAX_VARIABLE_NAME: usize = 64;
/// PCR 7: Secure Boot policy (PFP section 3.3.4.8).
const SECURE_BOOT_POLICY_PCR: u8 = 7;
/// Longest text kept for a message.
const MAX_SHOWN_TEXT: usize = 160;

/// The measurements of the quoted PCRs of one bank, each with what its digest proves.
/// Only [`MeasuredBoot::appraise`] (against a verified quote) and
/// [`MeasuredBoot::from_reference`] (against reference values) build one. The log is
/// classified when first asked, so a policy that reads no rule pays for the replay only.
#[derive(Debug, Clone)]
pub struct MeasuredBoot {
    bank: HashAlg,
    pcrs: u32,
    log: Vec<u8>,
    measurements: OnceLock<Vec<Measurement>>,
}

/// One digest extended into a PCR.
#[derive(Debug, Clone)]
pub struct Measurement {
    number: usize,
    pcr: u8,
    digest: Vec<u8>,
    logged_type: EventType,
    logged_as: String,
    proof: Proof,
}

/// What a measurement's digest commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proof {
    /// The digest is not the hash of anything the log carries (an image, a file, a blob).
    Opaque,
    /// The hash of a fixed, well-known value.
    WellKnown(WellKnown),
    /// A `UEFI_VARIABLE_DATA` that hashes to the digest.
    Variable {
        /// `VariableName`: the vendor GUID.
        vendor: Guid,
        /// `UnicodeName` (at most [`MAX_VARIABLE_NAME`] characters kept).
        name: String,
        /// `VariableData` when it is a single byte (e.g. `SecureBoot`).
        value: Option<u8>,
        /// Length of `VariableData`.
        length: usize,
    },
    /// Text whose bytes (after `prefix`, which is not hashed) hash to the digest.
    Text {
        /// A loader's prefix before the hashed text (grub's `kernel_cmdline: `), or empty.
        prefix: &'static str,
        /// The text, without a NUL terminator.
        text: String,
    },
    /// Other data that hashes to the digest.
    Data,
}

/// Fixed values recognized by their hash. Where each may stand is for a policy to say
/// (a separator's digest is also that of four zero bytes of anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WellKnown {
    /// `EV_SEPARATOR` 0: end of a PCR's pre-OS measurements.
    Separator,
    /// `EV_SEPARATOR` 1: the firmware hit an error.
    ErrorSeparator,
    /// An EFI action string of a boot going as planned.
    EfiAction(&'static str),
    /// An EFI action string of a failure (an application returned, ExitBootServices failed).
    EfiFailure(&'static str),
    /// A UKI section name (systemd-stub, PCR 11).
    UkiSection(&'static str),
}

/// The Secure Boot state PCR 7 proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureBootState {
    /// Every `SecureBoot` variable measured says 1.
    On,
    /// Every `SecureBoot` variable measured says 0 (or is empty: the variable is absent).
    Off,
    /// No `SecureBoot` variable whose data hashes to its digest is in PCR 7, or PCR 7 was
    /// not covered.
    NotMeasured,
    /// Measurements disagree, or one holds another value.
    Inconsistent,
}

impl fmt::Display for SecureBootState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "on",
            Self::Off => "off",
            Self::NotMeasured => "not measured",
            Self::Inconsistent => "inconsistent (PCR 7 holds disagreeing SecureBoot measurements)",
        })
    }
}

impl MeasuredBoot {
    /// Appraises `log` against a verified quote: every PCR the quote selects in `bank` must
    /// be reproduced exactly by the log (a PCR no event extends must hold its reset value),
    /// then each measurement of those PCRs is classified by what its digest proves.
    ///
    /// # Errors
    /// [`EventLogError`]: an unreadable log, a bank the log lacks, a quoted PCR the log
    /// cannot vouch for (17-22), or the lowest quoted PCR the replay does not reproduce.
    pub fn appraise(log: &[u8], quote: &VerifiedQuote, bank: HashAlg) -> Result<Self, EventLogError> {
        let indices: Vec<u8> = quote.pcrs().bank(bank).map(|(index, _)| index).collect();
        Self::from_reference(log, quote.pcrs(), bank, &indices)
    }

    /// The same appraisal against reference PCR values (a known-good VM's, for learning a
    /// policy), for `indices` of `bank`.
    ///
    /// # Errors
    /// As [`MeasuredBoot::appraise`].
    pub fn from_reference(
        log: &[u8],
        values: &PcrValues,
        bank: HashAlg,
        indices: &[u8],
    ) -> Result<Self, EventLogError> {
        let parsed = EventLog::parse(log)?;
        let matched = parsed.check_against(values, bank, indices)?;
        let pcrs = matched.pcrs().iter().fold(0u32, |mask, index| mask | (1 << index));
        Ok(Self { bank, pcrs, log: log.to_vec(), measurements: OnceLock::new() })
    }

    fn classify(&self) -> Vec<Measurement> {
        // The log parsed when this was built; it cannot fail now.
        let Ok(log) = EventLog::parse(&self.log) else { return Vec::new() };
        let known = well_known(self.bank);
        let mut measurements = Vec::new();
        for (number, event) in log.events().iter().enumerate() {
            let Ok(pcr) = u8::try_from(event.pcr()) else { continue };
            if !event.is_extended() || !self.covers(pcr) {
                continue;
            }
            let Some(digest) = event.digest(self.bank) else { continue };
            let proof = match known.iter().find(|(value, _)| value.as_slice() == digest) {
                Some((_, what)) => Proof::WellKnown(*what),
                None => prove(self.bank, digest, event.data()),
            };
            measurements.push(Measurement {
                number,
                pcr,
                digest: digest.to_vec(),
                logged_type: event.event_type(),
                logged_as: logged_as(event.event_type(), &event.kind()),
                proof,
            });
        }
        measurements
    }

    /// The bank the digests are in.
    #[must_use]
    pub fn bank(&self) -> HashAlg {
        self.bank
    }

    /// Whether the log was checked against `pcr` (it was quoted and reproduced).
    #[must_use]
    pub fn covers(&self, pcr: u8) -> bool {
        pcr < MAX_PCRS && self.pcrs & (1 << pcr) != 0
    }

    /// Every measurement of the covered PCRs, in log order.
    #[must_use]
    pub fn measurements(&self) -> &[Measurement] {
        self.measurements.get_or_init(|| self.classify())
    }

    /// The Secure Boot state proven by the `SecureBoot` variables (EFI global variable GUID)
    /// whose data hashes to their digest in PCR 7, whatever their event type.
    #[must_use]
    pub fn secure_boot(&self) -> SecureBootState {
        let mut state = SecureBootState::NotMeasured;
        for m in self.in_pcr(SECURE_BOOT_POLICY_PCR) {
            let Proof::Variable { vendor, name, value, length } = &m.proof else { continue };
            if *vendor != Guid::EFI_GLOBAL_VARIABLE || name != "SecureBoot" {
                continue;
            }
            let this = match (value, length) {
                (Some(1), _) => SecureBootState::On,
                (Some(0), _) | (None, 0) => SecureBootState::Off,
                _ => return SecureBootState::Inconsistent,
            };
            if state != SecureBootState::NotMeasured && state != this {
                return SecureBootState::Inconsistent;
            }
            state = this;
        }
        state
    }

    /// The measurements of one PCR, in log order.
    pub fn in_pcr(&self, pcr: u8) -> impl Iterator<Item = &Measurement> + '_ {
        self.measurements().iter().filter(move |m| m.pcr == pcr)
    }
}

impl Measurement {
    /// Index of the event in the log (the header is event 0).
    #[must_use]
    pub fn number(&self) -> usize {
        self.number
    }
    /// The PCR it was extended into.
    #[must_use]
    pub fn pcr(&self) -> u8 {
        self.pcr
    }
    /// The digest extended, in the appraisal's bank.
    #[must_use]
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }
    /// The event type the log gives: for learning from a trusted VM and for messages,
    /// nothing commits to it.
    #[must_use]
    pub fn logged_type(&self) -> EventType {
        self.logged_type
    }
    /// What the log says this event is (type and a short, escaped description): for
    /// messages only, nothing commits to it.
    #[must_use]
    pub fn logged_as(&self) -> &str {
        &self.logged_as
    }
    /// What the digest proves.
    #[must_use]
    pub fn proof(&self) -> &Proof {
        &self.proof
    }
}

impl fmt::Display for Measurement {
    /// `PCR 4 digest ab12... (logged as ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PCR {} digest {} (event {}, logged as {})",
            self.pcr,
            hex::encode(&self.digest),
            self.number,
            self.logged_as
        )
    }
}

/// What `digest` proves about `data`.
fn prove(bank: HashAlg, digest: &[u8], data: &[u8]) -> Proof {
    let hashes_to = |bytes: &[u8]| bank.digest(&[bytes]) == digest;
    if hashes_to(data) {
        if let Some(var) = UefiVariable::decode(data) {
            return Proof::Variable {
                vendor: var.vendor,
                name: var.name().chars().take(MAX_VARIABLE_NAME).collect(),
                value: match var.data {
                    [value] => Some(*value),
                    _ => None,
                },
                length: var.data.len(),
            };
        }
        return match utf8_text(data).map(str::to_owned).or_else(|| utf16_text(data)) {
            Some(text) => Proof::Text { prefix: "", text },
            None => Proof::Data,
        };
    }
    if data.len() > MAX_TEXT_DATA {
        return Proof::Opaque;
    }
    let trimmed = data.strip_suffix(&[0]).unwrap_or(data);
    if trimmed.len() < data.len() && hashes_to(trimmed) {
        if let Some(text) = utf8_text(trimmed) {
            return Proof::Text { prefix: "", text: text.to_owned() };
        }
    }
    for prefix in GRUB_PREFIXES {
        let Some(rest) = data.strip_prefix(prefix.as_bytes()) else { continue };
        let rest_trimmed = rest.strip_suffix(&[0]).unwrap_or(rest);
        if hashes_to(rest) || hashes_to(rest_trimmed) {
            if let Some(text) = utf8_text(rest_trimmed) {
                return Proof::Text { prefix, text: text.to_owned() };
            }
        }
    }
    Proof::Opaque
}

/// The well-known values in `bank`, computed once per bank.
fn well_known(bank: HashAlg) -> &'static [(Vec<u8>, WellKnown)] {
    type Table = Vec<(Vec<u8>, WellKnown)>;
    static TABLES: OnceLock<Vec<(HashAlg, Table)>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        HashAlg::ALL
            .iter()
            .map(|alg| {
                let mut table = vec![
                    (alg.digest(&[&SEPARATOR]), WellKnown::Separator),
                    (alg.digest(&[&ERROR_SEPARATOR]), WellKnown::ErrorSeparator),
                ];
                for text in EFI_ACTIONS {
                    table.push((alg.digest(&[text.as_bytes()]), WellKnown::EfiAction(text)));
                }
                for text in EFI_FAILURE_ACTIONS {
                    table.push((alg.digest(&[text.as_bytes()]), WellKnown::EfiFailure(text)));
                }
                for text in UKI_SECTIONS {
                    table.push((alg.digest(&[text.as_bytes(), &[0]]), WellKnown::UkiSection(text)));
                }
                (*alg, table)
            })
            .collect()
    });
    tables.iter().find(|(alg, _)| *alg == bank).map_or(&[], |(_, table)| table.as_slice())
}

/// A short, escaped description of what the log claims: type and content.
fn logged_as(event_type: EventType, kind: &EventKind<'_>) -> String {
    let name = event_type.name().map_or_else(|| format!("event type {:#x}", event_type.0), str::to_owned);
    let detail = match kind {
        EventKind::Ipl(text)
        | EventKind::EfiAction(text)
        | EventKind::Action(text)
        | EventKind::PostCode(text) => Some(shown(text)),
        EventKind::EfiVariable(var) => Some(shown(&var.name())),
        EventKind::ImageLoad(image) => image.file_path().map(|path| shown(&path)),
        EventKind::EventTag(tag) => Some(format!("tag {:#x}", tag.id)),
        _ => None,
    };
    match detail {
        Some(detail) => format!("{name} {detail}"),
        None => name,
    }
}

/// `text` escaped and cut to [`MAX_SHOWN_TEXT`] characters, for messages.
pub(crate) fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_SHOWN_TEXT).flat_map(char::escape_debug).collect();
    if text.chars().nth(MAX_SHOWN_TEXT).is_some() {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

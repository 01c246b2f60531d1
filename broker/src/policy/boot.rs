//! Measured-boot rules (`[class.tpm.event_log]`), judged on a [`MeasuredBoot`]: by digests,
//! never by event types or data the digests do not cover.
//!
//! Each rule owns PCRs, and every digest extended into a PCR a rule owns must be accounted
//! for: allowed by that rule, listed in `measurements` for that PCR, or a well-known value
//! where it belongs (a separator in PCRs 0-7, an EFI action string in 4, 5 or 7, a UKI
//! section name in 11; the failure actions, an application returning or ExitBootServices
//! failing, never). A rule fails when nothing of its kind was measured.
//!
//! | rule | PCRs it owns | also needs |
//! |---|---|---|
//! | `boot_applications` | 4 | |
//! | `secure_boot` | 7 (verified UEFI variables account for themselves) | `true`: `boot_applications` |
//! | `kernel_cmdlines` | the quoted ones of 8 (grub), 9 (kernel EFI stub), 11 (UKI), 12 (systemd-boot) | `boot_applications`; PCR 9 quoted; 12 with 11 |
//! | `measurements.N` | N (at least one listed digest must be there) | |

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::eventlog::{MeasuredBoot, Measurement, Proof, SecureBootState, WellKnown};

use super::file::EventLogFile;
use crate::refusal::{Code, Refusal};

/// Where firmware measures boot applications (PFP section 3.3.4.5).
pub(crate) const BOOT_APPLICATION_PCR: u8 = 4;
/// Where firmware measures the Secure Boot policy (PFP section 3.3.4.8).
pub(crate) const SECURE_BOOT_PCR: u8 = 7;
/// Where boot chains measure the kernel command line: grub (8), the kernel's EFI stub
/// LoadOptions (9), a UKI's `.cmdline` section (11), systemd-boot (12).
pub(crate) const CMDLINE_PCRS: [u8; 4] = [8, 9, 11, 12];
/// PCRs the firmware event log cannot vouch for: IMA's (10), the OS-resettable ones (16,
/// 23) and dynamic launch's (17-22).
pub(crate) const NOT_IN_FIRMWARE_LOG: [(u8, &str); 9] = [
    (10, "PCR 10 holds IMA's run-time measurements, which are not in the firmware event log"),
    (16, "PCR 16 is the debug PCR: the OS can reset it"),
    (23, "PCR 23 is for applications: the OS can reset it"),
    (17, "PCRs 17-22 belong to dynamic launch, not the firmware event log"),
    (18, "PCRs 17-22 belong to dynamic launch, not the firmware event log"),
    (19, "PCRs 17-22 belong to dynamic launch, not the firmware event log"),
    (20, "PCRs 17-22 belong to dynamic launch, not the firmware event log"),
    (21, "PCRs 17-22 belong to dynamic launch, not the firmware event log"),
    (22, "PCRs 17-22 belong to dynamic launch, not the firmware event log"),
];

/// Most measured command lines a refusal names (a log may carry any number).
const MAX_NAMED: usize = 3;

/// Compiled measured-boot rules of one class.
#[derive(Debug)]
pub(crate) struct BootRules {
    secure_boot: Option<bool>,
    boot_applications: Option<Vec<Vec<u8>>>,
    kernel_cmdlines: Option<Cmdlines>,
    measurements: BTreeMap<u8, Vec<Vec<u8>>>,
}

#[derive(Debug)]
struct Cmdlines {
    /// The quoted PCRs among [`CMDLINE_PCRS`].
    pcrs: Vec<u8>,
    /// Per PCR, the digests of the allowed command lines as that PCR's loader measures them.
    digests: BTreeMap<u8, Vec<Vec<u8>>>,
}

impl Cmdlines {
    fn allows(&self, pcr: u8, digest: &[u8]) -> bool {
        self.digests.get(&pcr).is_some_and(|list| list.iter().any(|d| d == digest))
    }
}

/// The digests a loader extends into `pcr` for command line `text`, each in the encoding
/// that PCR's loader measures: UTF-8 in 8 (grub) and 11 (a UKI's `.cmdline` bytes), UTF-16LE
/// in 9 (the kernel EFI stub's LoadOptions) and 12 (systemd-boot), each with and without
/// its NUL terminator. One encoding standing for the other would let bytes the kernel reads
/// differently pass as the allowed line.
pub(crate) fn cmdline_digests(bank: HashAlg, text: &str, pcr: u8) -> Vec<Vec<u8>> {
    match pcr {
        8 | 11 => vec![bank.digest(&[text.as_bytes()]), bank.digest(&[text.as_bytes(), &[0]])],
        9 | 12 => {
            let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
            vec![bank.digest(&[&utf16]), bank.digest(&[&utf16, &[0, 0]])]
        }
        _ => Vec::new(),
    }
}

/// Whether a measurement in `pcr` accounts for itself: a well-known value where it belongs.
pub(crate) fn accounts_for_itself(pcr: u8, proof: &Proof) -> bool {
    match proof {
        Proof::WellKnown(WellKnown::Separator) => pcr <= 7,
        Proof::WellKnown(WellKnown::EfiAction(_)) => matches!(pcr, 4 | 5 | 7),
        Proof::WellKnown(WellKnown::UkiSection(_)) => pcr == 11,
        _ => false,
    }
}

impl BootRules {
    /// Compiles the table for a class quoting `quoted` in `bank`.
    pub(super) fn compile(file: EventLogFile, bank: HashAlg, quoted: &[u8]) -> Result<Self, String> {
        if file.required == Some(false) {
            return Err("required = false beside rules would skip them whenever a VM sends no log: \
                        an [class.tpm.event_log] table always requires the log; remove `required`"
                .into());
        }
        let must_quote = |pcr: u8, rule: &str| {
            if quoted.contains(&pcr) {
                Ok(())
            } else {
                Err(format!(
                    "{rule} needs PCR {pcr} quoted (add it to pcrs): the rule cannot be proven without it"
                ))
            }
        };
        let digests = |name: &str, list: Vec<super::file::Hex>| -> Result<Vec<Vec<u8>>, String> {
            if list.is_empty() {
                return Err(format!("{name}: an empty list admits nothing; remove it or add digests"));
            }
            if let Some(bad) = list.iter().find(|d| d.0.len() != bank.size()) {
                return Err(format!(
                    "{name}: {} is {} bytes, a {} digest has {}",
                    hex::encode(&bad.0),
                    bad.0.len(),
                    bank.name(),
                    bank.size()
                ));
            }
            Ok(list.into_iter().map(|d| d.0).collect())
        };
        if file.secure_boot.is_some() {
            must_quote(SECURE_BOOT_PCR, "secure_boot")?;
        }
        if file.secure_boot == Some(true) && file.boot_applications.is_none() {
            return Err("secure_boot = true needs boot_applications: Secure Boot proves only that the \
                        boot applications the firmware launched were verified, so name them (qemu \
                        -kernel under Secure Boot launches none and falls back to a legacy loader)"
                .into());
        }
        let boot_applications = match file.boot_applications {
            Some(list) => {
                must_quote(BOOT_APPLICATION_PCR, "boot_applications")?;
                Some(digests("boot_applications", list)?)
            }
            None => None,
        };
        let kernel_cmdlines = match file.kernel_cmdlines {
            Some(list) => {
                if boot_applications.is_none() {
                    return Err("kernel_cmdlines needs boot_applications: a command line is only as \
                                trustworthy as the loader that measured it"
                        .into());
                }
                // PCR 9 is the kernel's own record (the EFI stub's LoadOptions and initrd, or
                // the files grub read); a UKI's command line in 11 can be overridden by load
                // options systemd-stub measures into 12.
                must_quote(
                    9,
                    "kernel_cmdlines (the kernel stub's LoadOptions and initrd, or the files grub read)",
                )?;
                if quoted.contains(&11) {
                    must_quote(
                        12,
                        "kernel_cmdlines with PCR 11 (systemd-stub measures overriding load options there)",
                    )?;
                }
                let pcrs: Vec<u8> = CMDLINE_PCRS.into_iter().filter(|p| quoted.contains(p)).collect();
                if list.is_empty() || list.iter().any(String::is_empty) {
                    return Err(
                        "kernel_cmdlines: list the command lines exactly as measured (none empty)".into()
                    );
                }
                let digests = pcrs
                    .iter()
                    .map(|&pcr| {
                        (pcr, list.iter().flat_map(|text| cmdline_digests(bank, text, pcr)).collect())
                    })
                    .collect();
                Some(Cmdlines { pcrs, digests })
            }
            None => None,
        };
        let mut measurements = BTreeMap::new();
        for (key, list) in file.measurements {
            let pcr: u8 = key.parse().map_err(|_| format!("measurements: {key:?} is not a PCR index"))?;
            must_quote(pcr, &format!("measurements.{pcr}"))?;
            measurements.insert(pcr, digests(&format!("measurements.{pcr}"), list)?);
        }
        if file.secure_boot.is_none()
            && boot_applications.is_none()
            && kernel_cmdlines.is_none()
            && measurements.is_empty()
        {
            return Err("[class.tpm.event_log] has no rule: give secure_boot, boot_applications, \
                        kernel_cmdlines or measurements, or remove the table"
                .into());
        }
        Ok(Self { secure_boot: file.secure_boot, boot_applications, kernel_cmdlines, measurements })
    }

    /// Checks the measured boot, rule by rule; the first failure is the refusal.
    pub(super) fn check(&self, boot: &MeasuredBoot) -> Result<(), Refusal> {
        if let Some(allowed) = &self.boot_applications {
            self.check_pcr(
                boot,
                BOOT_APPLICATION_PCR,
                Code::BootApplicationNotAllowed,
                "an allowed boot application",
            )?;
            let launched =
                boot.in_pcr(BOOT_APPLICATION_PCR).filter(|m| allowed.iter().any(|a| a == m.digest())).count();
            if launched == 0 {
                return Err(Refusal::new(
                    Code::BootApplicationNotAllowed,
                    "PCR 4 holds no boot application: the firmware measured none before the OS ran \
                     (qemu -kernel under Secure Boot falls back to an unverified legacy loader)",
                ));
            }
        }
        if let Some(required) = self.secure_boot {
            let state = boot.secure_boot();
            let wanted = if required { SecureBootState::On } else { SecureBootState::Off };
            if state != wanted {
                return Err(Refusal::new(
                    Code::SecureBootState,
                    format!("Secure Boot is {state} in PCR 7; class requires it {wanted}"),
                ));
            }
            self.check_pcr(
                boot,
                SECURE_BOOT_PCR,
                Code::UnaccountedMeasurement,
                "a Secure Boot variable or allowed",
            )?;
        }
        if let Some(cmdlines) = &self.kernel_cmdlines {
            let found = boot.measurements().iter().any(|m| cmdlines.allows(m.pcr(), m.digest()));
            if !found {
                let mut reason = format!(
                    "no allowed kernel command line is measured in PCR {}",
                    cmdlines.pcrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                );
                let measured = boot.measurements().iter().filter(|m| cmdlines.pcrs.contains(&m.pcr()));
                for (m, text) in measured.filter_map(|m| Some((m, cmdline_text(m)?))).take(MAX_NAMED) {
                    let _ = write!(reason, "; PCR {} measured {text}", m.pcr());
                }
                return Err(Refusal::new(Code::KernelCmdlineNotAllowed, reason));
            }
            for &pcr in &cmdlines.pcrs {
                self.check_pcr(
                    boot,
                    pcr,
                    Code::KernelCmdlineNotAllowed,
                    "an allowed command line or measurement",
                )?;
            }
        }
        for (&pcr, listed) in &self.measurements {
            if !boot.in_pcr(pcr).any(|m| listed.iter().any(|d| d == m.digest())) {
                return Err(Refusal::new(
                    Code::UnaccountedMeasurement,
                    format!("PCR {pcr} holds none of the measurements the class lists for it"),
                ));
            }
            self.check_pcr(boot, pcr, Code::UnaccountedMeasurement, "listed in measurements")?;
        }
        Ok(())
    }

    /// Every digest in `pcr` must be accounted for; `code` names the rule that owns it.
    fn check_pcr(&self, boot: &MeasuredBoot, pcr: u8, code: Code, allowed: &str) -> Result<(), Refusal> {
        let Some(m) = boot.in_pcr(pcr).find(|m| !self.accounts_for(m)) else { return Ok(()) };
        let code = match (code, cmdline_text(m)) {
            (Code::KernelCmdlineNotAllowed, None) => Code::UnaccountedMeasurement,
            (code, _) => code,
        };
        let what = match (m.proof(), cmdline_text(m)) {
            (_, Some(text)) => format!("kernel command line {text}"),
            (Proof::WellKnown(WellKnown::ErrorSeparator), _) => {
                "an error separator: the firmware reported a failure".into()
            }
            (Proof::WellKnown(WellKnown::EfiFailure(action)), _) => {
                format!("{action:?}: a boot application or ExitBootServices failed")
            }
            (Proof::WellKnown(_), _) => "a well-known value that does not belong in this PCR".into(),
            (Proof::Opaque, _) => "a digest the log does not explain".into(),
            _ => "a measurement no rule allows".into(),
        };
        Err(Refusal::new(code, format!("{m} is {what}, not {allowed}")))
    }

    fn accounts_for(&self, m: &Measurement) -> bool {
        let pcr = m.pcr();
        let listed = |list: &[Vec<u8>]| list.iter().any(|d| d == m.digest());
        accounts_for_itself(pcr, m.proof())
            || (pcr == SECURE_BOOT_PCR
                && self.secure_boot.is_some()
                && matches!(m.proof(), Proof::Variable { .. }))
            || (pcr == BOOT_APPLICATION_PCR && self.boot_applications.as_deref().is_some_and(listed))
            || self.kernel_cmdlines.as_ref().is_some_and(|c| c.allows(pcr, m.digest()))
            || self.measurements.get(&pcr).is_some_and(|list| listed(list))
    }
}

/// The command line a measurement's digest proves, quoted for a message: grub's
/// `kernel_cmdline` text, or text measured bare into PCR 8 or 12 (systemd-boot).
pub(crate) fn cmdline_text(m: &Measurement) -> Option<String> {
    match m.proof() {
        Proof::Text { prefix, text }
            if matches!(*prefix, "kernel_cmdline: " | "grub_kernel_cmdline ")
                || (prefix.is_empty() && matches!(m.pcr(), 8 | 12)) =>
        {
            Some(abridged(&format!("{text:?}")))
        }
        _ => None,
    }
}

/// `text` whole when short, else its head and its tail (where command lines differ).
fn abridged(text: &str) -> String {
    const KEEP: usize = 150;
    let count = text.chars().count();
    if count <= 2 * KEEP {
        return text.to_owned();
    }
    let head: String = text.chars().take(KEEP).collect();
    let tail: String = text.chars().skip(count - KEEP).collect();
    format!("{head}...{tail}")
}

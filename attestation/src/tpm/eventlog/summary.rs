//! What the boot did, in the terms a policy uses: Secure Boot state, Secure Boot databases,
//! boot applications, kernel command lines, separators.
//!
//! A summary is built for one bank. It only looks at events that carry a digest for that
//! bank (the others did not change the bank's PCRs), and it only reports content it has
//! tied to that digest: where the specification defines the digest as the hash of the
//! event data (variables, separators, command lines), the hash is recomputed, and events
//! whose data does not hash to their digest are listed in
//! [`BootSummary::unverified_events`] instead. Boot application digests are Authenticode
//! image hashes and are reported as logged; their device paths are informational.

use serde::Serialize;

use super::content::{utf16_text, utf8_text, EventKind, Guid, Separator};
use super::event::{Event, EventType};
use super::EventLog;
use crate::tpm::alg::HashAlg;

/// PCR 7: Secure Boot policy (PFP section 3.3.4.8).
const SECURE_BOOT_POLICY_PCR: u32 = 7;
/// PCRs that carry kernel command lines: 8 (grub, older systemd-boot) and 12
/// (systemd-boot/stub 251 and later).
const CMDLINE_PCRS: [u32; 2] = [8, 12];
/// The prefixes grub puts before the command line it measures into PCR 8 (upstream grub
/// 2.06+, and the Red Hat patch set).
const GRUB_CMDLINE_PREFIXES: [&str; 2] = ["kernel_cmdline: ", "grub_kernel_cmdline "];

/// The boot as the event log describes it, for one bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootSummary {
    bank: HashAlg,
    secure_boot: Option<bool>,
    secure_boot_databases: SecureBootDatabases,
    boot_applications: Vec<BootApplication>,
    kernel_cmdlines: Vec<KernelCmdline>,
    separator_pcrs: Vec<u32>,
    error_separator_pcrs: Vec<u32>,
    unverified_events: Vec<usize>,
}

/// A Secure Boot variable measured into PCR 7 (`EV_EFI_VARIABLE_DRIVER_CONFIG`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeasuredVariable {
    data_len: usize,
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    digest: Vec<u8>,
}

impl MeasuredVariable {
    /// Length of `VariableData`; zero when the variable does not exist (firmware measures
    /// absent variables with empty data).
    #[must_use]
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// Whether the variable had content.
    #[must_use]
    pub fn is_present(&self) -> bool {
        self.data_len > 0
    }

    /// The event digest in the summary's bank: the hash of the `UEFI_VARIABLE_DATA`.
    #[must_use]
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }
}

/// The Secure Boot key and signature databases as measured (the last measurement of each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecureBootDatabases {
    pk: Option<MeasuredVariable>,
    kek: Option<MeasuredVariable>,
    db: Option<MeasuredVariable>,
    dbx: Option<MeasuredVariable>,
}

impl SecureBootDatabases {
    /// `PK`, the platform key.
    #[must_use]
    pub fn pk(&self) -> Option<&MeasuredVariable> {
        self.pk.as_ref()
    }
    /// `KEK`, the key exchange keys.
    #[must_use]
    pub fn kek(&self) -> Option<&MeasuredVariable> {
        self.kek.as_ref()
    }
    /// `db`, the allowed signatures.
    #[must_use]
    pub fn db(&self) -> Option<&MeasuredVariable> {
        self.db.as_ref()
    }
    /// `dbx`, the forbidden signatures.
    #[must_use]
    pub fn dbx(&self) -> Option<&MeasuredVariable> {
        self.dbx.as_ref()
    }
}

/// An `EV_EFI_BOOT_SERVICES_APPLICATION` event: a UEFI application that was started
/// (shim, grub, systemd-boot, a UKI, the Windows boot manager...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootApplication {
    pcr: u32,
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    digest: Vec<u8>,
    #[serde(serialize_with = "crate::serde_hex::option")]
    device_path: Option<Vec<u8>>,
    file_path: Option<String>,
}

impl BootApplication {
    /// The PCR it was measured into (4 for boot applications).
    #[must_use]
    pub fn pcr(&self) -> u32 {
        self.pcr
    }
    /// The image's Authenticode digest in the summary's bank.
    #[must_use]
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }
    /// The raw `EFI_DEVICE_PATH_PROTOCOL` bytes, when the event data decoded
    /// (informational: not covered by the digest).
    #[must_use]
    pub fn device_path(&self) -> Option<&[u8]> {
        self.device_path.as_deref()
    }
    /// The file path in the device path, e.g. `\EFI\BOOT\BOOTX64.EFI` (informational).
    #[must_use]
    pub fn file_path(&self) -> Option<&str> {
        self.file_path.as_deref()
    }
}

/// Which boot loader measured a kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CmdlineSource {
    /// grub's `kernel_cmdline: ` (or Red Hat's `grub_kernel_cmdline `) string in PCR 8. The
    /// text starts with the kernel image path, as grub measures it.
    Grub,
    /// systemd-boot / systemd-stub UTF-16 load options (PCR 12; PCR 8 before systemd 251).
    SystemdBoot,
}

/// A kernel command line whose digest was recomputed from the logged text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelCmdline {
    pcr: u32,
    source: CmdlineSource,
    cmdline: String,
}

impl KernelCmdline {
    /// The PCR it was measured into.
    #[must_use]
    pub fn pcr(&self) -> u32 {
        self.pcr
    }
    /// Who measured it.
    #[must_use]
    pub fn source(&self) -> CmdlineSource {
        self.source
    }
    /// The command line as measured, without the loader's prefix and NUL terminator.
    #[must_use]
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }
}

impl BootSummary {
    /// The bank the digests were checked in.
    #[must_use]
    pub fn bank(&self) -> HashAlg {
        self.bank
    }
    /// The `SecureBoot` variable measured into PCR 7: `Some(true)` for 1, `Some(false)` for
    /// 0 or an absent variable; `None` when it was not measured, its data does not match its
    /// digest, it holds another value, or two measurements disagree.
    #[must_use]
    pub fn secure_boot(&self) -> Option<bool> {
        self.secure_boot
    }
    /// PK, KEK, db and dbx as measured into PCR 7.
    #[must_use]
    pub fn secure_boot_databases(&self) -> &SecureBootDatabases {
        &self.secure_boot_databases
    }
    /// Boot applications, in the order they were started.
    #[must_use]
    pub fn boot_applications(&self) -> &[BootApplication] {
        &self.boot_applications
    }
    /// Kernel command lines, in log order.
    #[must_use]
    pub fn kernel_cmdlines(&self) -> &[KernelCmdline] {
        &self.kernel_cmdlines
    }
    /// PCRs with an `EV_SEPARATOR` event that is not the error value, ascending.
    #[must_use]
    pub fn separator_pcrs(&self) -> &[u32] {
        &self.separator_pcrs
    }
    /// PCRs with an error `EV_SEPARATOR` (value 1): the firmware reported a failure.
    #[must_use]
    pub fn error_separator_pcrs(&self) -> &[u32] {
        &self.error_separator_pcrs
    }
    /// Events whose data should hash to their digest but does not; their content was left
    /// out of the summary.
    #[must_use]
    pub fn unverified_events(&self) -> &[usize] {
        &self.unverified_events
    }

    pub(super) fn build(log: &EventLog<'_>, bank: HashAlg, include: impl Fn(u32) -> bool) -> Self {
        let mut summary = Self {
            bank,
            secure_boot: None,
            secure_boot_databases: SecureBootDatabases::default(),
            boot_applications: Vec::new(),
            kernel_cmdlines: Vec::new(),
            separator_pcrs: Vec::new(),
            error_separator_pcrs: Vec::new(),
            unverified_events: Vec::new(),
        };
        let mut secure_boot: Vec<Option<bool>> = Vec::new();
        for (number, event) in log.events().iter().enumerate() {
            if !event.is_extended() || !include(event.pcr()) {
                continue;
            }
            let Some(digest) = event.digest(bank) else { continue };
            let binds = |content: &[u8]| bank.digest(&[content]) == digest;
            let verified = match event.event_type() {
                EventType::EFI_VARIABLE_DRIVER_CONFIG if event.pcr() == SECURE_BOOT_POLICY_PCR => {
                    summary.variable(event, digest, binds(event.data()), &mut secure_boot)
                }
                EventType::EFI_BOOT_SERVICES_APPLICATION => {
                    let image = match event.kind() {
                        EventKind::ImageLoad(image) => Some(image),
                        _ => None,
                    };
                    summary.boot_applications.push(BootApplication {
                        pcr: event.pcr(),
                        digest: digest.to_vec(),
                        device_path: image.map(|i| i.device_path.to_vec()),
                        file_path: image.and_then(|i| i.file_path()),
                    });
                    true
                }
                EventType::SEPARATOR => {
                    let bound = binds(event.data());
                    if bound {
                        let list = match Separator::decode(event.data()) {
                            Separator::Error => &mut summary.error_separator_pcrs,
                            Separator::Normal | Separator::Other(_) => &mut summary.separator_pcrs,
                        };
                        if !list.contains(&event.pcr()) {
                            list.push(event.pcr());
                        }
                    }
                    bound
                }
                EventType::IPL if CMDLINE_PCRS.contains(&event.pcr()) => match cmdline(event.data()) {
                    Some(found) => {
                        let bound = found.measured.into_iter().flatten().any(binds);
                        if bound {
                            summary.kernel_cmdlines.push(KernelCmdline {
                                pcr: event.pcr(),
                                source: found.source,
                                cmdline: found.text,
                            });
                        }
                        bound
                    }
                    None => true,
                },
                _ => true,
            };
            if !verified {
                summary.unverified_events.push(number);
            }
        }
        summary.separator_pcrs.sort_unstable();
        summary.error_separator_pcrs.sort_unstable();
        summary.secure_boot = match secure_boot.split_first() {
            Some((first, rest)) if rest.iter().all(|v| v == first) => *first,
            _ => None,
        };
        summary
    }

    /// Records a PCR 7 variable when it is one the summary reports; returns false when such
    /// a variable's data does not hash to its digest (other variables are not checked).
    fn variable(
        &mut self,
        event: &Event<'_>,
        digest: &[u8],
        bound: bool,
        secure_boot: &mut Vec<Option<bool>>,
    ) -> bool {
        let EventKind::EfiVariable(var) = event.kind() else { return true };
        let global = Guid::EFI_GLOBAL_VARIABLE;
        let security = Guid::IMAGE_SECURITY_DATABASE;
        let slot = if var.is(global, "SecureBoot") {
            secure_boot.push(match (bound, var.data) {
                (true, [] | [0]) => Some(false),
                (true, [1]) => Some(true),
                _ => None,
            });
            return bound;
        } else if var.is(global, "PK") {
            &mut self.secure_boot_databases.pk
        } else if var.is(global, "KEK") {
            &mut self.secure_boot_databases.kek
        } else if var.is(security, "db") {
            &mut self.secure_boot_databases.db
        } else if var.is(security, "dbx") {
            &mut self.secure_boot_databases.dbx
        } else {
            return true;
        };
        if bound {
            *slot = Some(MeasuredVariable { data_len: var.data.len(), digest: digest.to_vec() });
        }
        bound
    }
}

/// A kernel command line found in `EV_IPL` data.
struct FoundCmdline<'a> {
    source: CmdlineSource,
    text: String,
    /// The byte strings the loader may have computed the digest over.
    measured: [Option<&'a [u8]>; 2],
}

fn cmdline(data: &[u8]) -> Option<FoundCmdline<'_>> {
    if let Some(text) = utf8_text(data) {
        let prefix = GRUB_CMDLINE_PREFIXES.iter().find(|p| text.starts_with(**p))?;
        let cmdline = text.get(prefix.len()..)?;
        // grub hashes the text after the prefix, with or without its NUL terminator.
        let with_nul = data.get(prefix.len()..);
        let without_nul = data.get(prefix.len()..prefix.len() + cmdline.len());
        return Some(FoundCmdline {
            source: CmdlineSource::Grub,
            text: cmdline.to_owned(),
            measured: [without_nul, with_nul],
        });
    }
    let text = utf16_text(data)?;
    Some(FoundCmdline { source: CmdlineSource::SystemdBoot, text, measured: [Some(data), None] })
}

impl EventLog<'_> {
    /// The boot summary in `bank` over every PCR, *not* checked against a quote: prefer
    /// [`super::ReplayMatch::summary`], whose claims the quote backs.
    #[must_use]
    pub fn summary(&self, bank: HashAlg) -> BootSummary {
        BootSummary::build(self, bank, |_| true)
    }
}

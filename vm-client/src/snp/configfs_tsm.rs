//! configfs-tsm: SEV-SNP reports through the kernel's file interface (Linux 6.7+,
//! `/sys/kernel/config/tsm/report`, described in the kernel's
//! `Documentation/ABI/testing/configfs-tsm`), with no ioctl and no `unsafe`.
//!
//! One request uses one report entry of its own:
//!
//! 1. `mkdir ROOT/mooring-<pid>-<random>`: the kernel fills the new directory with the
//!    entry's attributes. Never an entry that already exists: whoever made it may write to
//!    it while we read.
//! 2. `provider` must read `sev_guest`: only then is `outblob` an SEV-SNP
//!    `ATTESTATION_REPORT` (SEV-SNP Firmware ABI, Table 23) and `auxblob` the extended
//!    report's certificate table (GHCB specification, 4.1.8.1).
//! 3. `privlevel_floor`: the lowest VMPL this guest may ask for (the VMPL its VMPCK key
//!    belongs to); asking for less is refused here, naming both.
//! 4. `generation` is read, then `privlevel` (the VMPL, decimal) and `inblob` (REPORT_DATA,
//!    exactly 64 bytes: `sev_guest` refuses any other length) are written.
//! 5. `outblob` is read: the kernel asks the firmware for the report at this moment. Then
//!    `auxblob` (empty when the host supplies no certificates).
//! 6. `generation` is read again and must have moved by exactly our two writes. Every write
//!    to an entry advances it; a failed `inblob` write does not (the kernel applies a binary
//!    attribute when the file is closed and drops its error), and another writer's does too.
//!    On a mismatch the request starts again on a fresh entry, at most [`ATTEMPTS`] times.
//!    The report must then carry our REPORT_DATA, byte for byte.
//! 7. `rmdir` the entry.
//!
//! Every read is bounded: a blob by the kernel's own limit (`TSM_REPORT_OUTBLOB_MAX`,
//! 32 KiB), a text attribute by 64 bytes. [`super::device::GuestDevice`] uses this
//! interface when an entry can be made, `/dev/sev-guest` otherwise.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use mooring_attestation::snp::report::{Report, REPORT_LEN};
use mooring_attestation::snp::SnpError;

use super::{GuestError, SnpDevice, SnpEvidence};

/// Where Linux puts configfs-tsm report entries.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";
/// The `provider` of SEV-SNP guests (the sev-guest driver's module name).
pub const SEV_GUEST_PROVIDER: &str = "sev_guest";
/// Fresh entries one request tries when another writer changed the one it used.
pub const ATTEMPTS: u32 = 3;
/// The largest blob the kernel serves (`TSM_REPORT_OUTBLOB_MAX`, include/linux/tsm.h): the
/// bound of every `outblob` and `auxblob` read.
pub const MAX_BLOB: usize = 32 * 1024;
/// The bound of a text attribute read (`provider`, `generation`, `privlevel_floor`: a name
/// or a decimal number, and a newline).
const MAX_TEXT: usize = 64;
/// What one request writes to its entry (`privlevel`, `inblob`): how far `generation` moves.
const WRITES: u64 = 2;
/// Names of our entries start with this (for whoever lists the directory).
const ENTRY_PREFIX: &str = "mooring-";

/// Why a configfs-tsm request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsmError {
    /// No entry can be made under the root: configfs-tsm is absent or closed to this process.
    #[error("configfs-tsm at {root} cannot be used: {reason}")]
    Unavailable {
        /// The report directory.
        root: PathBuf,
        /// Why, with what to do about it.
        reason: String,
    },
    /// Reading or writing an attribute failed.
    #[error("{path}: {source}")]
    Io {
        /// The attribute.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The entry's provider is not the SEV-SNP guest driver.
    #[error("{path} is {found:?}, not \"sev_guest\": this entry makes no SEV-SNP reports")]
    WrongProvider {
        /// The `provider` attribute.
        path: PathBuf,
        /// What it says (at most 64 bytes).
        found: String,
    },
    /// An attribute is longer than the kernel ever makes it.
    #[error("{path} holds more than {max} bytes")]
    Oversized {
        /// The attribute.
        path: PathBuf,
        /// The bound.
        max: usize,
    },
    /// A text attribute does not read as the kernel writes it.
    #[error("{path}: {reason}")]
    Malformed {
        /// The attribute.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The configured VMPL is below what this guest may ask for.
    #[error(
        "VMPL {vmpl} is below this guest's privlevel_floor {floor}: set evidence.vmpl to at least {floor}"
    )]
    BelowFloor {
        /// The VMPL asked for.
        vmpl: u32,
        /// `privlevel_floor`.
        floor: u64,
    },
    /// `generation` did not move by our writes alone, on every entry tried.
    #[error(
        "the report entry changed under this request: generation {found}, expected {expected} \
         after its own writes (another writer, or a write the kernel refused); {attempts} entries tried"
    )]
    GenerationChanged {
        /// `generation` before our writes, plus them.
        expected: u64,
        /// `generation` after reading the report.
        found: u64,
        /// Entries tried.
        attempts: u32,
    },
    /// `outblob` is not the size of an `ATTESTATION_REPORT`.
    #[error("outblob is {len} bytes; an SEV-SNP report is {REPORT_LEN}")]
    ReportSize {
        /// Its size.
        len: usize,
    },
    /// `outblob` does not parse as a report.
    #[error("outblob is not an SEV-SNP report: {0}")]
    NotAReport(SnpError),
    /// The report answers other REPORT_DATA than this request wrote.
    #[error("outblob's REPORT_DATA is not the 64 bytes this request wrote to inblob")]
    ReportDataMismatch,
}

/// SEV-SNP reports from configfs-tsm entries under one root.
#[derive(Debug)]
pub struct ConfigfsTsm {
    root: PathBuf,
}

impl ConfigfsTsm {
    /// Uses `root` once an entry could be made (and removed again) there: the kernel has a
    /// provider, and this process may write to the directory.
    ///
    /// # Errors
    /// [`TsmError::Unavailable`] naming why not.
    pub fn open(root: &Path) -> Result<Self, TsmError> {
        drop(Entry::create(root)?);
        Ok(Self { root: root.to_owned() })
    }

    /// The report directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A report with `report_data` in REPORT_DATA at `vmpl`, and the host's certificate
    /// table when it supplies one.
    ///
    /// # Errors
    /// Any [`TsmError`]; [`TsmError::GenerationChanged`] after [`ATTEMPTS`] entries.
    pub fn request(&self, report_data: &[u8; 64], vmpl: u32) -> Result<SnpEvidence, TsmError> {
        request_with(|| Entry::create(&self.root), report_data, vmpl)
    }
}

impl SnpDevice for ConfigfsTsm {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<SnpEvidence, GuestError> {
        Ok(self.request(report_data, vmpl)?)
    }
}

/// `generation` moved by more (or less) than our writes.
#[derive(Debug, Clone, Copy)]
struct Changed {
    expected: u64,
    found: u64,
}

/// Requests a report on entries from `entry` until one is not changed under us.
fn request_with(
    mut entry: impl FnMut() -> Result<Entry, TsmError>,
    report_data: &[u8; 64],
    vmpl: u32,
) -> Result<SnpEvidence, TsmError> {
    let mut last = Changed { expected: 0, found: 0 };
    for attempt in 1..=ATTEMPTS {
        let entry = entry()?;
        match entry.request(report_data, vmpl)? {
            Ok(evidence) => return Ok(evidence),
            Err(changed) => {
                tracing::warn!(
                    entry = %entry.path.display(),
                    expected = changed.expected,
                    found = changed.found,
                    attempt,
                    "configfs-tsm entry changed under the request; trying a fresh one"
                );
                last = changed;
            }
        }
    }
    Err(TsmError::GenerationChanged { expected: last.expected, found: last.found, attempts: ATTEMPTS })
}

/// One report entry, removed when dropped.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
}

impl Entry {
    /// Makes a new entry under `root`, with a name nobody else chose.
    fn create(root: &Path) -> Result<Self, TsmError> {
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| TsmError::Unavailable {
            root: root.to_owned(),
            reason: "the random generator failed".into(),
        })?;
        let path = root.join(format!("{ENTRY_PREFIX}{}-{}", std::process::id(), hex::encode(random)));
        fs::create_dir(&path)
            .map_err(|e| TsmError::Unavailable { root: root.to_owned(), reason: unavailable(&e) })?;
        Ok(Self { path })
    }

    /// An entry that exists already (the tests' stand-in for the kernel makes it).
    #[cfg(test)]
    fn existing(path: &Path) -> Self {
        Self { path: path.to_owned() }
    }

    fn attribute(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Steps 2-6 of the module documentation.
    fn request(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Result<SnpEvidence, Changed>, TsmError> {
        let provider = self.read_text("provider")?;
        if provider != SEV_GUEST_PROVIDER {
            return Err(TsmError::WrongProvider { path: self.attribute("provider"), found: provider });
        }
        let floor = self.read_number("privlevel_floor")?;
        if u64::from(vmpl) < floor {
            return Err(TsmError::BelowFloor { vmpl, floor });
        }
        let before = self.read_number("generation")?;
        self.write("privlevel", format!("{vmpl}\n").as_bytes())?;
        self.write("inblob", report_data)?;
        let report = self.read_blob("outblob")?;
        let certificate_table = self.read_blob("auxblob")?;
        let after = self.read_number("generation")?;
        let expected = before.checked_add(WRITES).ok_or_else(|| TsmError::Malformed {
            path: self.attribute("generation"),
            reason: format!("{before} cannot advance by {WRITES}"),
        })?;
        if after != expected {
            return Ok(Err(Changed { expected, found: after }));
        }
        check_report(&report, report_data)?;
        let certificate_table = (!certificate_table.is_empty()).then_some(certificate_table);
        Ok(Ok(SnpEvidence { report, certificate_table }))
    }

    /// A text attribute without its newline.
    fn read_text(&self, name: &str) -> Result<String, TsmError> {
        let path = self.attribute(name);
        let bytes = read_bounded(&path, MAX_TEXT)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| TsmError::Malformed { path: path.clone(), reason: "not UTF-8 text".into() })?;
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
    }

    /// A decimal attribute (`%lu\n` or `%u\n` in the kernel).
    fn read_number(&self, name: &str) -> Result<u64, TsmError> {
        let text = self.read_text(name)?;
        text.parse().map_err(|_| TsmError::Malformed {
            path: self.attribute(name),
            reason: format!("{text:?} is not a decimal number"),
        })
    }

    fn read_blob(&self, name: &str) -> Result<Vec<u8>, TsmError> {
        read_bounded(&self.attribute(name), MAX_BLOB)
    }

    /// One write of the whole value: configfs applies a text attribute at each write(2), a
    /// binary one (`inblob`) when the file is closed.
    fn write(&self, name: &str, value: &[u8]) -> Result<(), TsmError> {
        let path = self.attribute(name);
        let io = |source| TsmError::Io { path: path.clone(), source };
        let mut file = OpenOptions::new().write(true).open(&path).map_err(io)?;
        file.write_all(value).map_err(io)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.path) {
            tracing::warn!(entry = %self.path.display(), error = %e, "could not remove the configfs-tsm entry");
        }
    }
}

/// At most `max` bytes of `path`; more is an error.
fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, TsmError> {
    let io = |source| TsmError::Io { path: path.to_owned(), source };
    crate::bounded::read_at_most(File::open(path).map_err(io)?, max)
        .map_err(io)?
        .ok_or_else(|| TsmError::Oversized { path: path.to_owned(), max })
}

/// The report is one `ATTESTATION_REPORT` answering our REPORT_DATA.
fn check_report(report: &[u8], report_data: &[u8; 64]) -> Result<(), TsmError> {
    if report.len() != REPORT_LEN {
        return Err(TsmError::ReportSize { len: report.len() });
    }
    let parsed = Report::parse(report).map_err(TsmError::NotAReport)?;
    if parsed.report_data() != report_data {
        return Err(TsmError::ReportDataMismatch);
    }
    Ok(())
}

/// Why an entry could not be made, and what to do about it.
fn unavailable(error: &io::Error) -> String {
    let hint = match error.raw_os_error() {
        Some(libc::ENOENT) => "the kernel is older than 6.7, or configfs or CONFIG_TSM_REPORTS is missing",
        Some(libc::ENXIO) => "no attestation provider registered (the sev-guest driver is not loaded)",
        Some(libc::EACCES | libc::EPERM) => "the report directory is root's",
        Some(libc::EROFS) => "read-only here (a sandbox such as systemd's ProtectKernelTunables=yes)",
        _ => return error.to_string(),
    };
    format!("{error}: {hint}")
}

#[cfg(test)]
mod tests;

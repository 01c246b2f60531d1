//! What the guest reports after booting, checked against its event log.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::PcrValues;

use super::Vm;

/// What the guest reported after booting.
#[derive(Debug, Clone)]
pub struct BootReport {
    /// Both banks, PCRs 0-23, as the guest read them from sysfs.
    pub pcrs: PcrValues,
    /// The same as JSON `{"sha1": {"0": "hex", ...}, "sha256": {...}}`.
    pub pcrs_json: String,
    /// `/sys/kernel/security/tpm0/binary_bios_measurements`.
    pub event_log: Vec<u8>,
    /// `/proc/cmdline`.
    pub proc_cmdline: String,
    /// From starting qemu to the guest's report.
    pub boot_time: Duration,
}

impl BootReport {
    /// Checks that the event log replays to the guest's PCRs in both banks: every PCR 0-15
    /// but 10 (IMA's, not in the firmware log) equals the replay where the log extends it
    /// and is zero where it does not. Returns the PCRs the log extends (sha256).
    ///
    /// # Errors
    /// The log does not parse, or a PCR differs (named with both values).
    pub fn check_replay(&self) -> anyhow::Result<Vec<u8>> {
        let log = EventLog::parse(&self.event_log).map_err(|e| anyhow!("event log does not parse: {e}"))?;
        let replayed = log.replay();
        let mut problems = Vec::new();
        for bank in [HashAlg::Sha1, HashAlg::Sha256] {
            for pcr in (0..16).filter(|p| *p != 10) {
                let guest = self
                    .pcrs
                    .get(bank, pcr)
                    .ok_or_else(|| anyhow!("guest sent no {} PCR {pcr}", bank.name()))?;
                let expected = replayed.get(bank, pcr).map_or_else(|| vec![0; bank.size()], <[u8]>::to_vec);
                if guest != expected.as_slice() {
                    problems.push(format!(
                        "{} PCR {pcr}: guest {} but {} {}",
                        bank.name(),
                        hex::encode(guest),
                        if replayed.get(bank, pcr).is_some() {
                            "the log replays to"
                        } else {
                            "no event extends it, so"
                        },
                        hex::encode(&expected)
                    ));
                }
            }
        }
        if !problems.is_empty() {
            bail!("the event log does not replay to the guest's PCRs:\n  {}", problems.join("\n  "));
        }
        Ok((0..24).filter(|p| replayed.get(HashAlg::Sha256, *p).is_some()).collect())
    }
}

/// Copies a VM's report to `dir` (`binary_bios_measurements`, `pcrs.json`, `cmdline.txt`)
/// for a person to look at; used when `MOORING_REALVM_KEEP` names a directory.
///
/// # Errors
/// Writing failed.
pub fn save_report(vm: &Vm, dir: &Path) -> anyhow::Result<()> {
    let dir = dir.join(vm.chain().name());
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("binary_bios_measurements"), &vm.report.event_log)?;
    fs::write(dir.join("pcrs.json"), &vm.report.pcrs_json)?;
    fs::write(dir.join("cmdline.txt"), &vm.report.proc_cmdline)?;
    Ok(())
}

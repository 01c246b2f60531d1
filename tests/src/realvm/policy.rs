//! A policy class learned from a booted VM with the broker's CLI.

use std::fs;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use super::Vm;

/// `mooring-broker policy learn-tpm` on a booted VM: a class named `class` pinning `indices`
/// (sha256) with measured-boot rules from its event log, matching EK certificates from the
/// same issuer, for VMs attesting from 127.0.0.0/8. `kernel_cmdline` is passed as
/// `--kernel-cmdline` (for a UKI, whose log does not carry the command line as text).
/// Returns the class as printed (a `[[class]]` table).
///
/// # Errors
/// The files could not be written or the CLI refused.
pub fn learn_tpm(
    vm: &Vm,
    class: &str,
    indices: &[u8],
    kernel_cmdline: Option<&str>,
) -> anyhow::Result<String> {
    let dir = vm.dir.path();
    let pcrs = dir.join("pcrs.json");
    let log = dir.join("binary_bios_measurements");
    fs::write(&pcrs, &vm.report.pcrs_json)?;
    fs::write(&log, &vm.report.event_log)?;
    let list: Vec<String> = indices.iter().map(ToString::to_string).collect();
    let mut command = Command::new(crate::workspace_binary("mooring-broker"));
    command
        .args([
            "policy",
            "learn-tpm",
            "--class",
            class,
            "--indices",
            &list.join(","),
            "--network",
            "127.0.0.0/8",
        ])
        .arg("--pcrs")
        .arg(&pcrs)
        .arg("--event-log")
        .arg(&log)
        .arg("--ek-certificate")
        .arg(vm.ek_cert());
    if let Some(cmdline) = kernel_cmdline {
        command.args(["--kernel-cmdline", cmdline]);
    }
    let output = command.stdin(Stdio::null()).output().context("run mooring-broker policy learn-tpm")?;
    if !output.status.success() {
        bail!(
            "mooring-broker policy learn-tpm failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    String::from_utf8(output.stdout).context("learn-tpm output is not UTF-8")
}

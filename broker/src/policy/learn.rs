//! `policy learn`: reference values from a known-good VM's evidence, written as a class
//! the operator reviews and pastes into the policy.

use std::fmt::Write as _;

use mooring_attestation::snp::TcbParts;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::PcrValues;

/// A TPM class pinning `pcrs` of `bank` to the values seen, plus event-log rules when a
/// log is given (its replay must match the values).
pub(crate) fn tpm_class(
    name: &str,
    bank: HashAlg,
    pcrs: &[u8],
    values: &PcrValues,
    event_log: Option<&[u8]>,
    ek_issuer: Option<&str>,
) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(out, "[[class]]\nname = {name:?}\nevidence = \"tpm\"\nttl_seconds = 3600");
    let _ = writeln!(out, "audiences = []\nnetworks = [] # fill in: the CIDRs these VMs attest from\n");
    let _ = writeln!(out, "[class.match]");
    match ek_issuer {
        Some(issuer) => {
            let _ = writeln!(out, "ek_issuers = [{issuer:?}]\n");
        }
        None => {
            let _ = writeln!(out, "enrolled = true\n");
        }
    }
    let list: Vec<String> = pcrs.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "[class.tpm]\npcr_bank = {:?}\npcrs = [{}]\n", bank.name(), list.join(", "));
    let _ = writeln!(out, "[class.tpm.pcr_values]");
    for index in pcrs {
        let value =
            values.get(bank, *index).ok_or_else(|| format!("no {} value for PCR {index}", bank.name()))?;
        let _ = writeln!(out, "{index} = [\"{}\"]", hex::encode(value));
    }
    if let Some(bytes) = event_log {
        let log = EventLog::parse(bytes).map_err(|e| format!("event log: {e}"))?;
        let replayed = log.replay();
        let covered: Vec<u8> = pcrs.iter().copied().filter(|i| replayed.get(bank, *i).is_some()).collect();
        let matched = log.check_against(values, bank, &covered).map_err(|e| format!("event log: {e}"))?;
        let summary = matched.summary();
        let _ = writeln!(out, "\n[class.tpm.event_log]\nrequired = true");
        if let Some(on) = summary.secure_boot() {
            let _ = writeln!(out, "secure_boot = {on}");
        }
        let apps: Vec<String> =
            summary.boot_applications().iter().map(|a| format!("\"{}\"", hex::encode(a.digest()))).collect();
        let _ = writeln!(out, "boot_applications = [{}]", apps.join(", "));
        let lines: Vec<String> =
            summary.kernel_cmdlines().iter().map(|c| format!("{:?}", c.cmdline())).collect();
        let _ = writeln!(out, "kernel_cmdlines = [{}]", lines.join(", "));
    }
    Ok(out)
}

/// An SEV-SNP class admitting this measurement at this TCB or newer.
pub(crate) fn snp_class(name: &str, measurement: &[u8], tcb: TcbParts, debug_allowed: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "[[class]]\nname = {name:?}\nevidence = \"snp\"\nttl_seconds = 3600");
    let _ = writeln!(out, "audiences = []\nnetworks = [] # fill in: the CIDRs these VMs attest from\n");
    let _ = writeln!(out, "[class.snp]\nmeasurements = [\"{}\"]", hex::encode(measurement));
    let _ = writeln!(
        out,
        "min_tcb = {{ bootloader = {}, tee = {}, snp = {}, microcode = {}, fmc = {} }}",
        tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode, tcb.fmc
    );
    if debug_allowed {
        let _ = writeln!(
            out,
            "# this VM's guest policy allows debugging; the class refuses it (allow_debug = false)"
        );
    }
    out
}

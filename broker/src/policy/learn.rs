//! `policy learn`: reference values from a known-good VM's evidence, written as a class
//! the operator reviews and pastes into the policy.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mooring_attestation::snp::TcbParts;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::eventlog::{EventType, MeasuredBoot, Measurement, Proof, SecureBootState};
use mooring_attestation::tpm::pcr::PcrValues;

use super::boot::{
    accounts_for_itself, cmdline_digests, cmdline_text, BOOT_APPLICATION_PCR, CMDLINE_PCRS,
    NOT_IN_FIRMWARE_LOG, SECURE_BOOT_PCR,
};
use crate::service::azure::AzureAppraisal;

/// A known-good TPM VM, as `policy learn-tpm` reads it.
#[derive(Debug)]
pub(crate) struct TpmReference<'a> {
    pub(crate) name: &'a str,
    pub(crate) bank: HashAlg,
    pub(crate) pcrs: &'a [u8],
    pub(crate) values: &'a PcrValues,
    pub(crate) event_log: Option<&'a [u8]>,
    pub(crate) ek_issuer: Option<&'a str>,
    pub(crate) networks: &'a [String],
    /// The command line the VM booted with (`/proc/cmdline`), for chains whose log does not
    /// carry it as text (kernel EFI stub, UKI); it must be measured in a quoted PCR.
    pub(crate) kernel_cmdline: Option<&'a str>,
}

/// A TPM class pinning the VM's quoted PCR values and, when its event log is given (it
/// must replay to those values), measured-boot rules that admit exactly this boot chain
/// and name what changed when another is refused.
pub(crate) fn tpm_class(vm: &TpmReference<'_>) -> Result<String, String> {
    if let Some((index, why)) = NOT_IN_FIRMWARE_LOG.iter().find(|(i, _)| vm.pcrs.contains(i)) {
        return Err(format!("PCR {index}: {why}; leave it out of the indices"));
    }
    let mut out = String::new();
    let _ =
        writeln!(out, "[[class]]\nname = {}\nevidence = \"tpm\"\nttl_seconds = 3600", toml_string(vm.name));
    let networks: Vec<String> = vm.networks.iter().map(|n| toml_string(n)).collect();
    let hint = if networks.is_empty() { " # fill in: the CIDRs these VMs attest from" } else { "" };
    let _ = writeln!(out, "audiences = []\nnetworks = [{}]{hint}\n", networks.join(", "));
    let _ = writeln!(out, "[class.match]");
    match vm.ek_issuer {
        Some(issuer) => {
            let _ = writeln!(out, "ek_issuers = [{}]\n", toml_string(issuer));
        }
        None => {
            let _ = writeln!(out, "enrolled = true\n");
        }
    }
    out.push_str(&tpm_tables(vm)?);
    Ok(out)
}

/// `[class.tpm]`, its PCR values and (with an event log) its measured-boot rules.
fn tpm_tables(vm: &TpmReference<'_>) -> Result<String, String> {
    let mut out = String::new();
    let list: Vec<String> = vm.pcrs.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "[class.tpm]\npcr_bank = {:?}\npcrs = [{}]\n", vm.bank.name(), list.join(", "));
    let _ = writeln!(out, "[class.tpm.pcr_values]");
    for index in vm.pcrs {
        let value = vm
            .values
            .get(vm.bank, *index)
            .ok_or_else(|| format!("no {} value for PCR {index}", vm.bank.name()))?;
        let _ = writeln!(out, "{index} = [\"{}\"]", hex::encode(value));
    }
    if let Some(log) = vm.event_log {
        let boot = MeasuredBoot::from_reference(log, vm.values, vm.bank, vm.pcrs)
            .map_err(|e| format!("event log: {e}"))?;
        out.push('\n');
        out.push_str(&boot_rules(vm, &boot)?);
    }
    Ok(out)
}

/// `[class.tpm.event_log]` for a verified boot.
fn boot_rules(vm: &TpmReference<'_>, boot: &MeasuredBoot) -> Result<String, String> {
    let mut out = String::new();
    let mut rules = false;
    let mut listed: BTreeMap<u8, Vec<&Measurement>> = BTreeMap::new();
    let quoted = |pcr: u8| vm.pcrs.contains(&pcr);
    let mut applications: Vec<&Measurement> = Vec::new();
    if quoted(BOOT_APPLICATION_PCR) {
        for m in boot.in_pcr(BOOT_APPLICATION_PCR) {
            if accounts_for_itself(BOOT_APPLICATION_PCR, m.proof()) {
                continue;
            }
            // The golden VM is trusted: its log's word on what an image is counts here.
            if m.logged_type() == EventType::EFI_BOOT_SERVICES_APPLICATION && m.proof() == &Proof::Opaque {
                if !applications.iter().any(|a| a.digest() == m.digest()) {
                    applications.push(m);
                }
            } else {
                listed.entry(BOOT_APPLICATION_PCR).or_default().push(m);
            }
        }
    }
    if applications.is_empty() {
        let _ =
            writeln!(out, "# no boot application is measured in a quoted PCR 4: no boot_applications rule");
        listed.remove(&BOOT_APPLICATION_PCR);
    } else {
        rules = true;
        let _ = writeln!(out, "boot_applications = [");
        for app in &applications {
            let _ = writeln!(out, "  \"{}\", # {}", hex::encode(app.digest()), comment(app));
        }
        let _ = writeln!(out, "]");
    }
    if quoted(SECURE_BOOT_PCR) {
        let state = boot.secure_boot();
        let rule = match state {
            SecureBootState::On if !applications.is_empty() => Some(true),
            SecureBootState::Off => Some(false),
            _ => None,
        };
        match rule {
            Some(on) => {
                rules = true;
                let _ = writeln!(out, "secure_boot = {on}");
                for m in boot.in_pcr(SECURE_BOOT_PCR) {
                    if !accounts_for_itself(SECURE_BOOT_PCR, m.proof())
                        && !matches!(m.proof(), Proof::Variable { .. })
                    {
                        listed.entry(SECURE_BOOT_PCR).or_default().push(m);
                    }
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "# Secure Boot is {state}, and no boot application proves it: no secure_boot rule"
                );
            }
        }
    }
    let cmdline_pcrs: Vec<u8> = CMDLINE_PCRS.into_iter().filter(|p| quoted(*p)).collect();
    // A command line counts when its digest, in the encoding of the PCR it is in, is there.
    let measured = |text: &str| {
        boot.measurements()
            .iter()
            .any(|m| cmdline_digests(vm.bank, text, m.pcr()).iter().any(|d| d == m.digest()))
    };
    let mut cmdlines: Vec<String> = Vec::new();
    for m in boot.measurements().iter().filter(|m| cmdline_pcrs.contains(&m.pcr())) {
        if let (Some(_), Proof::Text { text, .. }) = (cmdline_text(m), m.proof()) {
            if !cmdlines.contains(text) && measured(text) {
                cmdlines.push(text.clone());
            }
        }
    }
    if let Some(given) = vm.kernel_cmdline {
        if !measured(given) {
            return Err(format!(
                "kernel command line {given:?} is not measured in a quoted PCR among 8, 9, 11, 12 \
                 (check the indices, and that it is byte for byte /proc/cmdline)"
            ));
        }
        if !cmdlines.iter().any(|c| c == given) {
            cmdlines.push(given.to_owned());
        }
    }
    let enforceable = quoted(9) && (!quoted(11) || quoted(12));
    if applications.is_empty() || !enforceable || cmdlines.is_empty() {
        let _ = writeln!(
            out,
            "# no kernel_cmdlines rule: it needs boot applications, PCR 9 quoted (and 12 with 11) and a \
             command line measured in 8, 9, 11 or 12 (pass --kernel-cmdline for the kernel stub or a UKI)"
        );
    } else {
        rules = true;
        let quoted_lines: Vec<String> = cmdlines.iter().map(|c| toml_string(c)).collect();
        let _ = writeln!(out, "kernel_cmdlines = [{}]", quoted_lines.join(", "));
        for &pcr in &cmdline_pcrs {
            let allowed: Vec<Vec<u8>> =
                cmdlines.iter().flat_map(|c| cmdline_digests(vm.bank, c, pcr)).collect();
            for m in boot.in_pcr(pcr) {
                if !accounts_for_itself(pcr, m.proof()) && !allowed.iter().any(|d| d == m.digest()) {
                    listed.entry(pcr).or_default().push(m);
                }
            }
        }
    }
    if !rules {
        return Ok(format!("# no measured-boot rule applies to the quoted PCRs:\n{out}"));
    }
    out.insert_str(0, "[class.tpm.event_log]\n");
    if !listed.is_empty() {
        let _ = writeln!(out, "\n[class.tpm.event_log.measurements]");
        for (pcr, measurements) in listed {
            let _ = writeln!(out, "{pcr} = [");
            let mut seen: Vec<&[u8]> = Vec::new();
            for m in measurements {
                if !seen.contains(&m.digest()) {
                    seen.push(m.digest());
                    let _ = writeln!(out, "  \"{}\", # {}", hex::encode(m.digest()), comment(m));
                }
            }
            let _ = writeln!(out, "]");
        }
    }
    Ok(out)
}

/// What a measurement is, for a TOML comment (escaped, one line).
fn comment(m: &Measurement) -> String {
    match m.proof() {
        Proof::Text { prefix, text } => {
            format!(
                "{}{}",
                prefix.escape_debug(),
                text.chars().take(120).flat_map(char::escape_debug).collect::<String>()
            )
        }
        _ => m.logged_as().to_owned(),
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// An SEV-SNP class admitting this measurement at this TCB or newer.
pub(crate) fn snp_class(name: &str, measurement: &[u8], tcb: TcbParts, debug_allowed: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "[[class]]\nname = {}\nevidence = \"snp\"\nttl_seconds = 3600", toml_string(name));
    let _ = writeln!(out, "audiences = []\nnetworks = [] # fill in: the CIDRs these VMs attest from\n");
    out.push_str(&snp_table(measurement, tcb, debug_allowed));
    out
}

/// `[class.snp]` admitting this measurement at this TCB or newer.
fn snp_table(measurement: &[u8], tcb: TcbParts, debug_allowed: bool) -> String {
    let mut out = String::new();
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

/// An Azure confidential VM class admitting this VM's launch measurement at its TCB or
/// newer, and its vTPM's values of PCRs `pcrs` (PCR values only: no event log rules).
pub(crate) fn azure_class(name: &str, vm: &AzureAppraisal, pcrs: &[u8]) -> Result<String, String> {
    let report = vm.snp.report();
    let mut out = String::new();
    let _ =
        writeln!(out, "[[class]]\nname = {}\nevidence = \"azure\"\nttl_seconds = 3600", toml_string(name));
    let _ = writeln!(out, "audiences = []\nnetworks = [] # fill in: the CIDRs these VMs attest from\n");
    let _ = writeln!(
        out,
        "[class.match]\n# this VM's vTPM EK; add the others' (or use enrolled = true)\nhardware_ids = [\"{}\"]\n",
        vm.hardware_id
    );
    out.push_str(&snp_table(
        report.measurement(),
        report.claims().reported_tcb().parts(),
        report.policy().debug_allowed(),
    ));
    out.push('\n');
    out.push_str(&tpm_tables(&TpmReference {
        name,
        bank: HashAlg::Sha256,
        pcrs,
        values: vm.quote.pcrs(),
        event_log: None,
        ek_issuer: None,
        networks: &[],
        kernel_cmdline: None,
    })?);
    Ok(out)
}

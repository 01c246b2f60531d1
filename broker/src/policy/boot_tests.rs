//! Measured-boot rules against a real firmware log (RHEL 9, shim -> grub -> kernel, Secure
//! Boot on; `tpm/eventlogs/keylime/binary_bios_measurements-secureboot`). Each negative
//! test boots something bad (the TPM quotes honestly what was measured) and, where the
//! attack is a lie, edits the log to break exactly one property.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;

use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::appraisal::TpmAppraisal;
use mooring_attestation::tpm::eventlog::EventType;
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_attestation::tpm::sim::eventlog::EditableLog;

use super::learn::{tpm_class, TpmReference};
use super::{Policy, PolicyError};
use crate::refusal::{Code, Refusal};

const BANK: HashAlg = HashAlg::Sha256;
const PCRS: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];
const GRUB_CMDLINE: &[u8] = b"kernel_cmdline: ";

fn golden() -> EditableLog {
    EditableLog::parse(&mooring_testdata::testdata(
        "tpm/eventlogs/keylime/binary_bios_measurements-secureboot",
    ))
    .unwrap()
}

/// What a TPM that measured `booted` quotes over `pcrs` (untouched PCRs at reset, zero).
fn quoted(booted: &EditableLog, pcrs: &[u8]) -> PcrValues {
    let replayed = booted.replay();
    let mut values = PcrValues::new();
    for &index in pcrs {
        let value = replayed.get(BANK, index).map_or_else(|| vec![0; BANK.size()], <[u8]>::to_vec);
        values.insert(BANK, index, value).unwrap();
    }
    values
}

/// The broker's appraisal of a VM that booted `booted` and sent `told` as its log.
fn appraise(booted: &EditableLog, told: &EditableLog, pcrs: &[u8]) -> Result<TpmAppraisal, Refusal> {
    super::tests::appraisal(&quoted(booted, pcrs), Some(&told.to_bytes()))
}

/// A policy learned from the golden VM (PCR values pinned, measured-boot rules).
fn learned_policy(pcrs: &[u8]) -> String {
    let log = golden();
    let class = tpm_class(&TpmReference {
        name: "rhel",
        bank: BANK,
        pcrs,
        values: &quoted(&log, pcrs),
        event_log: Some(&log.to_bytes()),
        ek_issuer: Some("CN=Vendor CA"),
        networks: &["10.0.0.0/8".to_owned()],
        kernel_cmdline: None,
    })
    .unwrap();
    format!("version = 1\n\n{class}")
}

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, Path::new("/etc/mooring/policy.toml"))
}

/// The decision of `policy` on a VM that booted `booted` and sent `told`.
fn decide(policy: &str, booted: &EditableLog, told: &EditableLog) -> Result<(), Refusal> {
    let policy = parse(policy).unwrap();
    let rules = policy.classes()[0].tpm().unwrap();
    let pcrs: Vec<u8> = rules.selection_map().into_values().next().unwrap();
    rules.check(&appraise(booted, told, &pcrs)?)
}

fn refused(result: Result<(), Refusal>, code: Code, needles: &[&str]) -> Refusal {
    let refusal = result.expect_err("admitted");
    assert_eq!(refusal.code, code, "{refusal}");
    for needle in needles {
        assert!(refusal.reason.contains(needle), "{needle:?} not in: {refusal}");
    }
    refusal
}

fn find(log: &EditableLog, pcr: u32, starts: &[u8]) -> usize {
    *log.in_pcr(pcr).iter().find(|i| log.events[**i].data.starts_with(starts)).expect("event in log")
}

/// The golden boot with `init=/bin/sh` appended to the command line grub measured.
fn shell_boot() -> EditableLog {
    let mut log = golden();
    let i = find(&log, 8, GRUB_CMDLINE);
    let mut text = log.events[i].data[GRUB_CMDLINE.len()..].to_vec();
    while text.last() == Some(&0) {
        text.pop();
    }
    text.extend_from_slice(b" init=/bin/sh");
    log.events[i].measure(&text);
    log.events[i].data = [GRUB_CMDLINE, &text[..]].concat();
    log
}

/// The golden boot with grub replaced by a bootkit (another image measured in PCR 4).
fn bootkit_boot() -> EditableLog {
    let mut log = golden();
    let i = find_app(&log, "grubx64");
    log.events[i].measure(b"a bootkit image");
    log
}

fn find_app(log: &EditableLog, name: &str) -> usize {
    let units: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    *log.in_pcr(4)
        .iter()
        .find(|i| {
            let e = &log.events[**i];
            e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION
                && e.data.windows(units.len()).any(|w| w == units.as_slice())
        })
        .expect("application in log")
}

#[test]
fn the_learned_policy_admits_the_golden_boot() {
    let policy = learned_policy(&PCRS);
    assert!(policy.contains("secure_boot = true"), "{policy}");
    assert!(policy.contains("kernel_cmdlines = ["), "{policy}");
    decide(&policy, &golden(), &golden()).unwrap();
}

#[test]
fn a_shell_on_the_command_line_is_refused_however_the_log_lies() {
    let policy = learned_policy(&PCRS);
    let bad = shell_boot();
    // Told honestly: the verified command line is named.
    refused(decide(&policy, &bad, &bad), Code::KernelCmdlineNotAllowed, &["PCR 8", "init=/bin/sh"]);

    // Every event of PCR 8 dropped: the log no longer reproduces the quoted PCR 8.
    let mut dropped = bad.clone();
    dropped.events.retain(|e| e.pcr != 8);
    refused(decide(&policy, &bad, &dropped), Code::EventLogMismatch, &["PCR 8"]);

    // The data rewritten to the allowed command line, the digest kept.
    let i = find(&bad, 8, GRUB_CMDLINE);
    let mut rewritten = bad.clone();
    rewritten.events[i].data = golden().events[i].data.clone();
    refused(
        decide(&policy, &bad, &rewritten),
        Code::KernelCmdlineNotAllowed,
        &["no allowed kernel command line", "PCR 8"],
    );

    // The `kernel_cmdline: ` prefix broken, so a reader would not see a command line.
    let mut unprefixed = bad.clone();
    unprefixed.events[i].data[..GRUB_CMDLINE.len()].copy_from_slice(b"kernel_cmdlinX: ");
    refused(decide(&policy, &bad, &unprefixed), Code::KernelCmdlineNotAllowed, &["PCR 8"]);

    // Retyped: EV_IPL -> EV_EVENT_TAG. No digest covers a type.
    let mut retyped = bad.clone();
    retyped.events[i].event_type = EventType::EVENT_TAG;
    refused(decide(&policy, &bad, &retyped), Code::KernelCmdlineNotAllowed, &["PCR 8", "init=/bin/sh"]);
}

#[test]
fn a_bootkit_is_refused_however_the_log_lies() {
    let policy = learned_policy(&PCRS);
    let bad = bootkit_boot();
    let digest = hex::encode(
        &bad.events[find_app(&bad, "grubx64")].digests.iter().find(|(b, _)| *b == BANK).unwrap().1,
    );
    refused(decide(&policy, &bad, &bad), Code::BootApplicationNotAllowed, &["PCR 4", &digest]);

    // Retyped as a driver: still a digest in PCR 4 no rule allows.
    let mut retyped = bad.clone();
    retyped.events[find_app(&bad, "grubx64")].event_type = EventType::EFI_BOOT_SERVICES_DRIVER;
    refused(decide(&policy, &bad, &retyped), Code::BootApplicationNotAllowed, &["PCR 4", &digest]);

    // Every event of PCR 4 dropped.
    let mut dropped = bad.clone();
    dropped.events.retain(|e| e.pcr != 4);
    refused(decide(&policy, &bad, &dropped), Code::EventLogMismatch, &["PCR 4"]);
}

#[test]
fn secure_boot_off_is_refused_however_the_log_lies() {
    let policy = learned_policy(&PCRS);
    let mut off = golden();
    let i = find_secure_boot(&off);
    let last = off.events[i].data.len() - 1;
    off.events[i].data[last] = 0;
    let data = off.events[i].data.clone();
    off.events[i].measure(&data);
    refused(decide(&policy, &off, &off), Code::SecureBootState, &["Secure Boot is off", "PCR 7"]);

    // The variable's data edited back to 1, its digest kept: it proves nothing, and PCR 7
    // then holds a digest nothing accounts for... but first, no SecureBoot is measured.
    let mut lie = off.clone();
    lie.events[i].data[last] = 1;
    refused(decide(&policy, &off, &lie), Code::SecureBootState, &["not measured", "PCR 7"]);

    // A bootkit that also extends PCR 7 with a genuine "SecureBoot = 1" measurement, and a
    // log that hides the firmware's "off" behind unverifiable data.
    let mut extended = off.clone();
    let mut forged = golden().events[i].clone();
    forged.event_type = EventType::EFI_VARIABLE_DRIVER_CONFIG;
    extended.events.push(forged);
    refused(decide(&policy, &extended, &extended), Code::SecureBootState, &["inconsistent"]);
    let mut hidden = extended.clone();
    hidden.events[i].data[last] = 1;
    refused(decide(&policy, &extended, &hidden), Code::UnaccountedMeasurement, &["PCR 7"]);
}

fn find_secure_boot(log: &EditableLog) -> usize {
    let name: Vec<u8> = "SecureBoot".encode_utf16().flat_map(u16::to_le_bytes).collect();
    *log.in_pcr(7)
        .iter()
        .find(|i| log.events[**i].data.windows(name.len()).any(|w| w == name.as_slice()))
        .expect("SecureBoot variable")
}

#[test]
fn a_quoted_pcr_with_no_events_must_hold_its_reset_value() {
    let pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14];
    let policy = learned_policy(&pcrs);
    decide(&policy, &golden(), &golden()).unwrap();
    // Something measured into PCR 11 that the log leaves out entirely.
    let mut booted = golden();
    let mut extra = booted.events[find(&booted, 8, GRUB_CMDLINE)].clone();
    extra.pcr = 11;
    booted.events.push(extra);
    refused(decide(&policy, &booted, &golden()), Code::EventLogMismatch, &["PCR 11", "0000000000"]);
}

#[test]
fn a_rule_with_nothing_of_its_kind_measured_fails() {
    let policy = learned_policy(&PCRS);
    // No boot application measured (qemu -kernel under Secure Boot: a legacy loader).
    let mut legacy = golden();
    legacy.events.retain(|e| !(e.pcr == 4 && e.event_type == EventType::EFI_BOOT_SERVICES_APPLICATION));
    refused(
        decide(&policy, &legacy, &legacy),
        Code::BootApplicationNotAllowed,
        &["PCR 4 holds no boot application"],
    );
    // A policy that only asks for Secure Boot does not load: Secure Boot proves something
    // only of the boot applications it names.
    let secure_boot_only = format!(
        "{}[class.tpm.event_log]\nsecure_boot = true\n",
        policy.split("[class.tpm.event_log]").next().unwrap()
    );
    assert!(load_error(&secure_boot_only).message.contains("secure_boot = true needs boot_applications"));

    // A measurements rule whose PCR holds none of what it lists (grub never ran).
    let tables = policy.split("[class.tpm.event_log.measurements]").nth(1).unwrap();
    let grub_only = format!(
        "{}[class.tpm.event_log]\n[class.tpm.event_log.measurements]{tables}",
        policy.split("[class.tpm.pcr_values]").next().unwrap()
    );
    let mut no_grub = golden();
    no_grub.events.retain(|e| e.pcr != 8);
    refused(decide(&grub_only, &no_grub, &no_grub), Code::UnaccountedMeasurement, &["PCR 8 holds none"]);

    // No command line measured at all.
    let mut silent = golden();
    silent.events.remove(find(&silent, 8, GRUB_CMDLINE));
    refused(
        decide(&policy, &silent, &silent),
        Code::KernelCmdlineNotAllowed,
        &["no allowed kernel command line", "PCR 8"],
    );

    // No SecureBoot variable measured.
    let mut unmeasured = golden();
    unmeasured.events.remove(find_secure_boot(&unmeasured));
    refused(decide(&policy, &unmeasured, &unmeasured), Code::SecureBootState, &["not measured"]);
}

#[test]
fn a_grub_command_no_rule_allows_is_named() {
    let policy = learned_policy(&PCRS);
    let mut chain = golden();
    let mut command = chain.events[find(&chain, 8, GRUB_CMDLINE)].clone();
    command.data = b"grub_cmd: chainloader /EFI/evil.efi".to_vec();
    command.measure(b"chainloader /EFI/evil.efi");
    chain.events.push(command);
    refused(decide(&policy, &chain, &chain), Code::UnaccountedMeasurement, &["PCR 8", "chainloader"]);
}

fn load_error(policy: &str) -> PolicyError {
    parse(policy).expect_err("loaded")
}

#[test]
fn rules_that_cannot_be_enforced_do_not_load() {
    let learned = learned_policy(&PCRS);
    // The example policy's old mistake: command lines while no PCR that holds one is quoted.
    let base = learned
        .split("[class.tpm.pcr_values]")
        .next()
        .unwrap()
        .replace("pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]", "pcrs = [0, 1, 2, 3, 4, 5, 6, 7]");
    let apps = format!("boot_applications = [\"{}\"]\n", "ab".repeat(32));
    let e = load_error(&format!("{base}[class.tpm.event_log]\n{apps}kernel_cmdlines = [\"ro quiet\"]\n"));
    assert!(e.message.contains("needs PCR 9 quoted"), "{e}");
    assert_eq!(e.line, Some(base.lines().count() + 1), "{e}");
    // A UKI's command line in PCR 11 can be overridden by load options measured into 12.
    let uki = base.replace("pcrs = [0, 1, 2, 3, 4, 5, 6, 7]", "pcrs = [4, 9, 11]");
    let e = load_error(&format!("{uki}[class.tpm.event_log]\n{apps}kernel_cmdlines = [\"ro quiet\"]\n"));
    assert!(e.message.contains("needs PCR 12 quoted"), "{e}");
    // Secure Boot alone proves nothing of what ran.
    let e = load_error(&format!("{base}[class.tpm.event_log]\nsecure_boot = true\n"));
    assert!(e.message.contains("secure_boot = true needs boot_applications"), "{e}");
    // PCRs the OS can reset.
    let debug = base.replace("pcrs = [0, 1, 2, 3, 4, 5, 6, 7]", "pcrs = [4, 16]");
    assert!(load_error(&format!("{debug}[class.tpm.event_log]\n{apps}")).message.contains("PCR 16"));

    let no_pcr4 = base.replace("pcrs = [0, 1, 2, 3, 4, 5, 6, 7]", "pcrs = [0, 7, 8]");
    let e = load_error(&format!("{no_pcr4}[class.tpm.event_log]\n{apps}"));
    assert!(e.message.contains("boot_applications needs PCR 4 quoted"), "{e}");
    let e = load_error(&format!("{no_pcr4}[class.tpm.event_log]\nkernel_cmdlines = [\"ro\"]\n"));
    assert!(e.message.contains("kernel_cmdlines needs boot_applications"), "{e}");
    let e = load_error(&format!("{base}[class.tpm.event_log]\nrequired = false\n{apps}"));
    assert!(e.message.contains("required = false"), "{e}");
    let e = load_error(&format!("{base}[class.tpm.event_log]\nrequired = true\n"));
    assert!(e.message.contains("has no rule"), "{e}");
    let e = load_error(&format!(
        "{base}[class.tpm.event_log]\n{apps}[class.tpm.event_log.measurements]\n9 = [\"{}\"]\n",
        "ab".repeat(32)
    ));
    assert!(e.message.contains("measurements.9 needs PCR 9 quoted"), "{e}");
    let e = load_error(&format!("{base}[class.tpm.event_log]\nboot_applications = [\"abcd\"]\n"));
    assert!(e.message.contains("2 bytes, a sha256 digest has 32"), "{e}");
    let ima = base.replace("pcrs = [0, 1, 2, 3, 4, 5, 6, 7]", "pcrs = [4, 10]");
    let e = load_error(&format!("{ima}[class.tpm.event_log]\n{apps}"));
    assert!(e.message.contains("PCR 10"), "{e}");
}

#[test]
fn the_example_policy_loads() {
    let path = mooring_testdata::workspace_root().join("policies/example.toml");
    Policy::load(&path).unwrap();
}

/// A command line counts only as the loader of its PCR measures it: UTF-16 in PCR 9 (the
/// kernel stub reads LoadOptions as UTF-16), UTF-8 in 8. The UTF-8 bytes of the allowed line
/// passed as LoadOptions are another command line to the kernel.
#[test]
fn a_command_line_counts_only_in_the_encoding_of_its_pcr() {
    let policy = learned_policy(&PCRS);
    let golden = golden();
    let i = find(&golden, 8, GRUB_CMDLINE);
    let allowed = golden.events[i].data[GRUB_CMDLINE.len()..].to_vec();
    let allowed = allowed.strip_suffix(&[0]).unwrap_or(&allowed).to_vec();
    let mut utf8_in_9 = golden.clone();
    let mut stub = golden.events[find(&golden, 9, b"")].clone();
    stub.event_type = EventType::EVENT_TAG;
    stub.data = b"LOADED_IMAGE::LoadOptions".to_vec();
    stub.measure(&allowed);
    utf8_in_9.events.push(stub);
    refused(decide(&policy, &utf8_in_9, &utf8_in_9), Code::UnaccountedMeasurement, &["PCR 9"]);
}

/// Well-known values account for themselves only where firmware puts them: four zero bytes
/// of LoadOptions hash to a separator, and an application that returned is a failure.
#[test]
fn well_known_values_count_only_where_they_belong() {
    let policy = learned_policy(&PCRS);
    let golden = golden();
    let mut empty_options = golden.clone();
    let mut stub = golden.events[find(&golden, 9, b"")].clone();
    stub.measure(&[0, 0, 0, 0]);
    empty_options.events.push(stub);
    refused(
        decide(&policy, &empty_options, &empty_options),
        Code::UnaccountedMeasurement,
        &["PCR 9", "does not belong"],
    );

    let mut returned = golden.clone();
    let mut action = golden.events[find(&golden, 4, b"Calling EFI Application")].clone();
    action.data = b"Returning from EFI Application from Boot Option".to_vec();
    action.measure(b"Returning from EFI Application from Boot Option");
    returned.events.push(action);
    refused(decide(&policy, &returned, &returned), Code::BootApplicationNotAllowed, &["PCR 4", "failed"]);
}

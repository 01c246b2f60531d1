//! Measured-boot appraisal on real VMs (issue #14): qemu + OVMF + swtpm boot Debian's kernel
//! with Secure Boot on through four boot chains, the release `mooring-client` in the guest
//! attests to the real broker on this machine, and the broker's policy is changed between
//! attempts (admin API reload) to see each refusal.
//!
//! - (a) systemd-boot -> kernel and (b) shim -> grub -> kernel: the event log the guest reads
//!   replays to the PCRs the guest reads, in both banks; a class learned from the VM
//!   (`mooring-broker policy learn-tpm`) admits it; the same class with one thing edited
//!   refuses it with that thing's code, naming the PCR: another kernel command line
//!   (`kernel_cmdline_not_allowed`), another boot application digest
//!   (`boot_application_not_allowed`), Secure Boot required off (`secure_boot_state`).
//! - (c) qemu `-kernel` under Secure Boot (OVMF's silent legacy fallback: nothing in PCR 4) is
//!   refused by (a)'s class: `boot_application_not_allowed`.
//! - (d) a UKI: refused by (a)'s class (`boot_application_not_allowed`), admitted by a class
//!   learned from its own boot that quotes PCRs 11 (where the stub measures `.cmdline`) and 12
//!   (where it would measure overriding load options).
//!
//! Nothing expected is committed: digests, command lines and PCR values are learned from the
//! boots or computed here. One test boots the VMs one after another (each takes a core for
//! 10-40 s under TCG). It skips with a message when qemu, OVMF, swtpm or the release client
//! is missing, and fails instead when `CI` is set. Set `MOORING_REALVM_KEEP=DIR` to keep each
//! VM's event log, PCRs and the learned classes in DIR.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mooring_tests::broker::{Broker, BrokerSetup};
use mooring_tests::realvm::{self, learn_tpm, Attempt, BrokerTls, Chain, Media, Vm, VmTpm};

const TEST: &str = "measured_boot_is_appraised_on_real_vms";
/// The whole test, after the media are built: four boots of 10-40 s and a dozen
/// attestations of 2-5 s normally.
const TEST_TIMEOUT: Duration = Duration::from_secs(900);

/// PCRs 0-9: firmware, boot variables, option ROMs, boot applications, GPT and
/// ExitBootServices, Secure Boot policy, grub (8) and the kernel stub or grub's files (9).
const FIRMWARE_PCRS: [u8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

#[test]
fn measured_boot_is_appraised_on_real_vms() {
    if !realvm::require_prerequisites(TEST) {
        return;
    }
    let Some(client) = realvm::release_client_or_skip(TEST) else { return };
    let built = Instant::now();
    let media = Media::build(&client).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{TEST}: boot media built in {:.1?}", built.elapsed());

    let started = Instant::now();
    let deadline = started + TEST_TIMEOUT;
    let keep = std::env::var_os("MOORING_REALVM_KEEP").map(PathBuf::from);
    let tls = BrokerTls::generate().unwrap_or_else(|e| panic!("{e:#}"));
    let tpm = VmTpm::manufacture().unwrap_or_else(|e| panic!("{e:#}"));
    let broker = Broker::start(&BrokerSetup {
        policy: "version = 1\n".into(),
        ek_roots: tpm.ca().all().iter().map(|p| p.to_path_buf()).collect(),
        extra_config: tls.config(),
        ..BrokerSetup::default()
    });
    // Broker::admin() pins `data/tls/ca.pem`, which a broker with its own [tls] does not write.
    std::fs::copy(tls.ca_pem(), broker.data_dir().join("tls/ca.pem")).expect("copy the broker CA");
    let ca = tls.ca_pem();
    let link = (broker.address.port(), ca.as_path());
    let mut findings = Findings::default();

    // (a) systemd-boot -> kernel.
    let mut a = boot(&media, Chain::SystemdBoot, tpm, link, deadline, keep.as_deref());
    let class_a = learn(&a, "systemd-boot", &with(&[12]), None, keep.as_deref());
    appraise_learned_chain(&broker, &mut a, &class_a, 12, &mut findings);
    a.poweroff().unwrap_or_else(|e| panic!("{e:#}"));

    // (b) Debian shim -> grub -> kernel (Microsoft keys).
    let tpm = VmTpm::manufacture().unwrap_or_else(|e| panic!("{e:#}"));
    let mut b = boot(&media, Chain::ShimGrub, tpm, link, deadline, keep.as_deref());
    let class_b = learn(&b, "shim-grub", &with(&[14]), None, keep.as_deref());
    appraise_learned_chain(&broker, &mut b, &class_b, 8, &mut findings);
    b.poweroff().unwrap_or_else(|e| panic!("{e:#}"));

    // (c) qemu -kernel under Secure Boot: no boot application in PCR 4; (a)'s class (same
    // firmware and keys, matched by EK issuer) must refuse it.
    let tpm = VmTpm::manufacture().unwrap_or_else(|e| panic!("{e:#}"));
    let mut c = boot(&media, Chain::QemuKernel, tpm, link, deadline, keep.as_deref());
    set_policy(&broker, &class_a);
    findings.refused(c.attest(), "qemu -kernel under (a)'s class", "boot_application_not_allowed", 4);
    c.poweroff().unwrap_or_else(|e| panic!("{e:#}"));

    // (d) a UKI: another boot application than (a)'s; admitted by its own class, whose
    // command line is proven by the stub's .cmdline measurement in PCR 11.
    let tpm = VmTpm::manufacture().unwrap_or_else(|e| panic!("{e:#}"));
    let mut d = boot(&media, Chain::Uki, tpm, link, deadline, keep.as_deref());
    set_policy(&broker, &class_a);
    findings.refused(d.attest(), "UKI under (a)'s class", "boot_application_not_allowed", 4);
    let cmdline = d.report.proc_cmdline.clone();
    let configured = media.cmdline(Chain::Uki).expect("UKI command line");
    findings.check(
        cmdline == configured,
        format!("UKI /proc/cmdline {cmdline:?} is not its .cmdline {configured:?}"),
    );
    let class_d = learn(&d, "uki", &with(&[11, 12]), Some(&cmdline), keep.as_deref());
    findings.check(
        class_d.contains("kernel_cmdlines = "),
        format!("the class learned from the UKI has no kernel_cmdlines rule:\n{class_d}"),
    );
    set_policy(&broker, &class_d);
    findings.admitted(d.attest(), "UKI under its own class");
    d.poweroff().unwrap_or_else(|e| panic!("{e:#}"));

    eprintln!("{TEST}: VMs done in {:.1?}", started.elapsed());
    findings.assert_none();
}

/// PCRs 0-9 and `extra`.
fn with(extra: &[u8]) -> Vec<u8> {
    let mut pcrs = FIRMWARE_PCRS.to_vec();
    pcrs.extend_from_slice(extra);
    pcrs
}

/// Boots `chain` and checks that its event log replays to the PCRs the guest read.
fn boot(
    media: &Media,
    chain: Chain,
    tpm: VmTpm,
    broker: (u16, &Path),
    deadline: Instant,
    keep: Option<&Path>,
) -> Vm {
    let vm = Vm::boot(media, chain, tpm, broker, deadline).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "{TEST}: {} booted in {:.1?}, /proc/cmdline {:?}",
        chain.name(),
        vm.report.boot_time,
        vm.report.proc_cmdline
    );
    if let Some(dir) = keep {
        realvm::save_report(&vm, dir).expect("save the VM's report");
    }
    let touched = vm.report.check_replay().unwrap_or_else(|e| panic!("{}: {e:#}", chain.name()));
    eprintln!("{TEST}: {} event log replays in both banks; it extends PCRs {touched:?}", chain.name());
    vm
}

/// `policy learn-tpm` on `vm`, as a whole policy file.
fn learn(vm: &Vm, class: &str, indices: &[u8], cmdline: Option<&str>, keep: Option<&Path>) -> String {
    let learned = learn_tpm(vm, class, indices, cmdline).unwrap_or_else(|e| panic!("{e:#}"));
    let policy = format!("version = 1\n\n{learned}");
    if let Some(dir) = keep {
        std::fs::write(dir.join(vm.chain().name()).join("policy.toml"), &policy).expect("keep the policy");
    }
    policy
}

/// Writes the broker's policy file and reloads it through the admin API (which answers 200
/// only when the new policy loaded).
fn set_policy(broker: &Broker, policy: &str) {
    std::fs::write(broker.dir.path().join("policy.toml"), policy).expect("write policy.toml");
    broker.admin_post("admin/policy/reload", &serde_json::json!({}));
}

/// (a) and (b): the learned class admits the VM; each edit of it refuses the VM with the
/// edited rule's code. `cmdline_pcr` is where this chain's loader measured the command line.
fn appraise_learned_chain(
    broker: &Broker,
    vm: &mut Vm,
    class: &str,
    cmdline_pcr: u8,
    findings: &mut Findings,
) {
    let chain = vm.chain().name();
    set_policy(broker, class);
    findings.admitted(vm.attest(), &format!("{chain} under its own class"));

    match replace_line(
        class,
        "kernel_cmdlines = ",
        "kernel_cmdlines = [\"console=ttyS0 quiet init=/bin/sh\"]",
    ) {
        Some(edited) => {
            set_policy(broker, &edited);
            findings.refused(
                vm.attest(),
                &format!("{chain}, another command line"),
                "kernel_cmdline_not_allowed",
                cmdline_pcr,
            );
        }
        None => {
            findings.check(false, format!("{chain}: the learned class has no kernel_cmdlines rule:\n{class}"))
        }
    }
    match edit_first_boot_application(class) {
        Some(edited) => {
            set_policy(broker, &edited);
            findings.refused(
                vm.attest(),
                &format!("{chain}, another boot application"),
                "boot_application_not_allowed",
                4,
            );
        }
        None => findings
            .check(false, format!("{chain}: the learned class has no boot_applications rule:\n{class}")),
    }
    match replace_line(class, "secure_boot = true", "secure_boot = false") {
        Some(edited) => {
            set_policy(broker, &edited);
            findings.refused(
                vm.attest(),
                &format!("{chain}, Secure Boot required off"),
                "secure_boot_state",
                7,
            );
        }
        None => {
            findings.check(false, format!("{chain}: the learned class has no `secure_boot = true`:\n{class}"))
        }
    }
}

/// `text` with its first line starting with `prefix` replaced by `line`.
fn replace_line(text: &str, prefix: &str, line: &str) -> Option<String> {
    let mut found = false;
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            if !found && l.starts_with(prefix) {
                found = true;
                line
            } else {
                l
            }
        })
        .collect();
    found.then(|| lines.join("\n") + "\n")
}

/// `text` with the last hex digit of the first digest under `boot_applications = [` changed.
fn edit_first_boot_application(text: &str) -> Option<String> {
    let start = text.find("boot_applications = [")?;
    let open = start + text.get(start..)?.find('"')?;
    let close = open + 1 + text.get(open + 1..)?.find('"')?;
    let last = text.get(close - 1..close)?;
    let flipped = if last == "0" { "1" } else { "0" };
    Some(format!("{}{flipped}{}", text.get(..close - 1)?, text.get(close..)?))
}

/// What went wrong, collected so that one run reports every mismatch with the contract.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, problem: String) {
        if !ok {
            eprintln!("{TEST}: PROBLEM {problem}");
            self.0.push(problem);
        }
    }

    fn admitted(&mut self, attempt: anyhow::Result<Attempt>, what: &str) {
        let attempt = attempt.unwrap_or_else(|e| panic!("{what}: {e:#}"));
        eprintln!("{TEST}: {what}: exit {} in {:.1?}", attempt.status, attempt.elapsed);
        self.check(
            attempt.status == 0,
            format!("{what}: expected admission, client exited {}: {}", attempt.status, attempt.stderr),
        );
    }

    fn refused(&mut self, attempt: anyhow::Result<Attempt>, what: &str, code: &str, pcr: u8) {
        let attempt = attempt.unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let refusal = attempt.refusal();
        eprintln!("{TEST}: {what}: exit {} in {:.1?}: {refusal:?}", attempt.status, attempt.elapsed);
        let Some((reason, got)) = refusal else {
            self.check(
                false,
                format!(
                    "{what}: expected refusal {code}, client exited {}: {}",
                    attempt.status, attempt.stderr
                ),
            );
            return;
        };
        self.check(attempt.status == 3, format!("{what}: refused, but the client exited {}", attempt.status));
        self.check(got == code, format!("{what}: expected {code}, got {got}: {reason}"));
        let named = format!("PCR {pcr}");
        self.check(reason.contains(&named), format!("{what}: the reason does not name {named}: {reason}"));
    }

    fn assert_none(&self) {
        assert!(self.0.is_empty(), "{} problems:\n- {}", self.0.len(), self.0.join("\n- "));
    }
}

#[test]
fn the_vm_scripts_pass_shellcheck() {
    if !mooring_tests::prereq::require_tools("the_vm_scripts_pass_shellcheck", &["shellcheck"]) {
        return;
    }
    let dir = mooring_testdata::workspace_root().join("tests/realvm");
    let output = std::process::Command::new("shellcheck")
        .arg(dir.join("build.sh"))
        .arg(dir.join("init"))
        .output()
        .expect("run shellcheck");
    assert!(
        output.status.success(),
        "shellcheck: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn policy_edits_change_only_what_they_name() {
    let class = "[class.tpm.event_log]\nboot_applications = [\n  \"ab12\", # a\n  \"cd30\", # b\n]\nsecure_boot = true\nkernel_cmdlines = [\"x\"]\n";
    let edited = edit_first_boot_application(class).unwrap();
    assert_eq!(edited, class.replace("ab12", "ab10"));
    assert_eq!(
        replace_line(class, "secure_boot = true", "secure_boot = false").unwrap(),
        class.replace("secure_boot = true", "secure_boot = false")
    );
    assert_eq!(replace_line(class, "nothing", "x"), None);
    let attempt = Attempt {
        status: 3,
        stderr: "warning\nthe broker refused this VM: PCR 4 digest ab (event 3) is bad (x) (boot_application_not_allowed)\n".into(),
        elapsed: Duration::ZERO,
    };
    assert_eq!(
        attempt.refusal(),
        Some(("PCR 4 digest ab (event 3) is bad (x)".to_owned(), "boot_application_not_allowed".to_owned()))
    );
}

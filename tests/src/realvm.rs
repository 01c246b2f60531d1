//! Real VMs with a genuine UEFI measured boot, for `tests/tests/real_vm.rs`: qemu (software
//! emulation) + OVMF + swtpm boot Debian's kernel through one of four [`Chain`]s, with the
//! release `mooring-client` in a busybox initramfs. REAL-VM.md (in the team's shared
//! directory) records what was measured on these machines; this follows it.
//!
//! - [`Media::build`] runs `tests/realvm/build.sh`: Debian's kernel, shim and grub are fetched
//!   once with `apt-get download` into `<target>/realvm/debs` (never installed), and the
//!   initramfs and the three disks are rebuilt from them and the given client on each run.
//! - [`VmTpm::manufacture`] makes a TPM with the harness's own swtpm setup
//!   ([`crate::swtpm::manufacture_state`]: EK certificates from the shared local CA);
//!   [`Vm::boot`] starts `swtpm socket --ctrl type=unixio,... --terminate` on it (no
//!   `startup-clear`: the firmware starts the TPM) and qemu with Secure Boot firmware, its
//!   own copy of the OVMF variables, `-device e1000,romfile=` and the disk at `bootindex=0`.
//! - The guest (`tests/realvm/init`) reports the PCRs of both banks, the event log and
//!   `/proc/cmdline` on its second serial port, a unix socket here ([`BootReport`]), then runs
//!   `mooring-client attest` each time [`Vm::attest`] asks. Its configuration and the broker's
//!   CA come through fw_cfg, so the images hold nothing that changes between runs.
//! - Networking is qemu's user mode with `restrict=on`: the guest reaches nothing but
//!   `10.0.2.100:8443` ([`GUEST_BROKER`]), which qemu forwards through `socat` to the broker on
//!   this machine's 127.0.0.1; the broker sees the VM as 127.0.0.1. [`BrokerTls`] makes a
//!   server certificate naming that address.
//!
//! KVM here runs no firmware, so qemu uses TCG: a boot takes 10-40 s of one core. Boot one VM
//! at a time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::PcrValues;

use crate::prereq::{self, find_program};
use crate::swtpm::{self, EkCaFiles, EkKind, SwtpmOptions};

/// Where the guest dials the broker; qemu forwards it to the broker's port on 127.0.0.1.
pub const GUEST_BROKER: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 2, 100), 8443);
/// How long a boot may take, firmware to the guest's report (TCG: 10-40 s normally).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one `mooring-client attest` in the guest may take (4-5 s normally).
pub const ATTEST_TIMEOUT: Duration = Duration::from_secs(120);

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const OVMF_VARS_SNAKEOIL: &str = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd";
const OVMF_VARS_MICROSOFT: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// Programs the real-VM test runs (here and in build.sh), with their Debian packages.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("swtpm", "swtpm"),
    ("swtpm_setup", "swtpm-tools"),
    ("swtpm_localca", "swtpm-tools"),
    ("socat", "socat"),
    ("sbsign", "sbsigntool"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("sfdisk", "fdisk"),
    ("cpio", "cpio"),
    ("objcopy", "binutils"),
    ("openssl", "openssl"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
];

/// Files the test needs, with their Debian packages.
const FILES: &[(&str, &str)] = &[
    (OVMF_CODE, "ovmf"),
    (OVMF_VARS_SNAKEOIL, "ovmf"),
    (OVMF_VARS_MICROSOFT, "ovmf"),
    ("/usr/share/ovmf/PkKek-1-snakeoil.key", "ovmf"),
    ("/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "systemd-boot-efi"),
    ("/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "systemd-boot-efi"),
    ("/bin/busybox", "busybox-static"),
    ("/usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0", "libtss2-tcti-device0"),
];

/// How the VM boots. Secure Boot is on in every chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Chain {
    /// systemd-boot -> kernel from a GPT disk's ESP, both signed with OVMF's snakeoil db key.
    SystemdBoot,
    /// Debian's shim -> grub -> kernel as Debian signed them; OVMF with Microsoft's keys.
    ShimGrub,
    /// qemu `-kernel/-initrd/-append`: OVMF cannot verify the patched kernel and silently
    /// falls back to a legacy loader that measures nothing into PCR 4.
    QemuKernel,
    /// A unified kernel image (systemd's stub, assembled with objcopy, snakeoil-signed) as
    /// `\EFI\BOOT\BOOTX64.EFI`.
    Uki,
}

impl Chain {
    /// The name build.sh uses in its file names.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::SystemdBoot => "systemd-boot",
            Self::ShimGrub => "shim-grub",
            Self::QemuKernel => "kernel",
            Self::Uki => "uki",
        }
    }

    const fn ovmf_vars(self) -> &'static str {
        match self {
            Self::ShimGrub => OVMF_VARS_MICROSOFT,
            Self::SystemdBoot | Self::QemuKernel | Self::Uki => OVMF_VARS_SNAKEOIL,
        }
    }
}

/// `true` when every program and file the real-VM test needs is installed. Otherwise,
/// outside CI, prints why `test` is skipped and returns `false`; in CI (`CI` set), panics.
#[must_use]
#[allow(clippy::panic)]
pub fn require_prerequisites(test: &str) -> bool {
    let mut missing: Vec<String> = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    for (tool, package) in TOOLS {
        if find_tool(tool).is_none() {
            missing.push((*tool).to_owned());
            packages.push(package);
        }
    }
    for (file, package) in FILES {
        if !Path::new(file).is_file() {
            missing.push((*file).to_owned());
            packages.push(package);
        }
    }
    if missing.is_empty() {
        return true;
    }
    packages.dedup();
    let message =
        format!("{test}: missing {} (Debian: apt-get install {})", missing.join(", "), packages.join(" "));
    assert!(!prereq::in_ci(), "CI is set, so this is a failure, not a skip: {message}");
    eprintln!("SKIPPED {message}; set CI=true to make this a failure");
    false
}

/// `tool` on `PATH`, or in the sbin directories a non-root `PATH` may lack.
fn find_tool(tool: &str) -> Option<PathBuf> {
    find_program(tool).or_else(|| {
        ["/usr/sbin", "/sbin"].iter().map(|dir| Path::new(dir).join(tool)).find(|path| path.is_file())
    })
}

/// The cargo target directory this test binary was built into (the ancestor holding
/// `CACHEDIR.TAG`), else `<workspace>/target`.
#[must_use]
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors().skip(1).find(|dir| dir.join("CACHEDIR.TAG").is_file()).map(PathBuf::from)
        })
        .unwrap_or_else(|| mooring_testdata::workspace_root().join("target"))
}

/// The release client the VMs run: `$MOORING_RELEASE_CLIENT`, else
/// `<target>/release/mooring-client` (scripts/test.sh builds it with
/// `cargo build --release -p mooring-client --locked`). `None` after printing why `test` is
/// skipped when it is missing; a panic instead in CI.
#[must_use]
#[allow(clippy::panic)]
pub fn release_client_or_skip(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("MOORING_RELEASE_CLIENT")
        .map_or_else(|| target_dir().join("release/mooring-client"), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "{test}: {} is missing (build it: cargo build --release -p mooring-client --locked)",
        path.display()
    );
    assert!(!prereq::in_ci(), "CI is set, so this is a failure, not a skip: {message}");
    eprintln!("SKIPPED {message}");
    None
}

/// The boot media build.sh made.
#[derive(Debug)]
pub struct Media {
    images: PathBuf,
}

impl Media {
    /// Runs `tests/realvm/build.sh <target>/realvm CLIENT` (fetches the Debian packages on
    /// first use, rebuilds the images).
    ///
    /// # Errors
    /// The script failed; the error carries its output.
    pub fn build(client: &Path) -> anyhow::Result<Self> {
        let script = mooring_testdata::workspace_root().join("tests/realvm/build.sh");
        let out = target_dir().join("realvm");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .arg(client)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", script.display()))?;
        if !output.status.success() {
            bail!(
                "{} failed ({}):\n{}{}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(Self { images: out.join("images") })
    }

    /// The kernel command line build.sh configured for `chain` (for a UKI: its `.cmdline`).
    ///
    /// # Errors
    /// The file is missing.
    pub fn cmdline(&self, chain: Chain) -> anyhow::Result<String> {
        let path = self.images.join(format!("cmdline-{}.txt", chain.name()));
        fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.images.join(name)
    }
}

/// The broker's TLS material for the VMs: a CA and a server certificate naming
/// [`GUEST_BROKER`]'s address (what the guest dials) as well as localhost and 127.0.0.1
/// (what the harness dials).
#[derive(Debug)]
pub struct BrokerTls {
    dir: tempfile::TempDir,
}

impl BrokerTls {
    /// Generates the CA and the server certificate (ECDSA P-256).
    ///
    /// # Errors
    /// Key generation, signing or writing the files failed.
    pub fn generate() -> anyhow::Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let dir = tempfile::Builder::new().prefix("mooring-realvm-tls-").tempdir()?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "Mooring real-VM test broker CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server.distinguished_name.push(DnType::CommonName, "mooring-broker");
        server.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(GUEST_BROKER.0)));
        server.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;

        fs::write(dir.path().join("ca.pem"), ca_cert.pem())?;
        fs::write(dir.path().join("server.pem"), format!("{}{}", server_cert.pem(), ca_cert.pem()))?;
        fs::write(dir.path().join("server.key"), server_key.serialize_pem())?;
        Ok(Self { dir })
    }

    /// The CA certificate (PEM) the client pins.
    #[must_use]
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The broker configuration's `[tls]` table.
    #[must_use]
    pub fn config(&self) -> String {
        let quoted = |name: &str| format!("{:?}", self.dir.path().join(name).display().to_string());
        format!("[tls]\ncertificate = {}\nprivate_key = {}\n", quoted("server.pem"), quoted("server.key"))
    }
}

/// A manufactured TPM for one VM (state and EK certificates), not yet running.
#[derive(Debug)]
pub struct VmTpm {
    dir: tempfile::TempDir,
    ca: EkCaFiles,
}

impl VmTpm {
    /// swtpm_setup through the harness's setup ([`crate::swtpm::manufacture_state`]): both
    /// PCR banks, EK certificates from the shared local CA.
    ///
    /// # Errors
    /// swtpm_setup failed.
    pub fn manufacture() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("mooring-realvm-tpm-").tempdir()?;
        let ca = swtpm::manufacture_state(dir.path(), &SwtpmOptions::default())?;
        Ok(Self { dir, ca })
    }

    /// The CA that issued the EK certificates (the broker's `[tpm] ek_roots`).
    #[must_use]
    pub fn ca(&self) -> &EkCaFiles {
        &self.ca
    }

    /// The RSA EK certificate (DER) swtpm_setup wrote to NV.
    #[must_use]
    pub fn ek_cert(&self) -> PathBuf {
        swtpm::ek_cert_file(self.dir.path(), EkKind::Rsa2048)
    }
}

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

/// One `mooring-client attest` in the guest.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The client's exit status: 0 admitted, 3 refused (see vm-client/README.md).
    pub status: i32,
    /// Its standard error.
    pub stderr: String,
    /// How long it took, as the host saw it.
    pub elapsed: Duration,
}

impl Attempt {
    /// `(reason, code)` from `the broker refused this VM: <reason> (<code>)`.
    #[must_use]
    pub fn refusal(&self) -> Option<(String, String)> {
        const PREFIX: &str = "the broker refused this VM: ";
        let line = self.stderr.lines().find_map(|l| l.split_once(PREFIX).map(|(_, rest)| rest.trim_end()))?;
        let open = line.rfind(" (")?;
        let code = line.get(open + 2..)?.strip_suffix(')')?;
        Some((line.get(..open)?.to_owned(), code.to_owned()))
    }
}

/// A running VM: swtpm, qemu, and the guest's control port.
#[derive(Debug)]
pub struct Vm {
    chain: Chain,
    qemu: Option<Child>,
    swtpm: Option<Child>,
    control: ControlPort,
    /// What the guest reported after booting.
    pub report: BootReport,
    dir: tempfile::TempDir,
    /// Dropped after the processes: holds the TPM state swtpm runs on.
    tpm: VmTpm,
    /// No wait goes past this.
    deadline: Instant,
}

impl Vm {
    /// Boots `chain` with `tpm`, the guest configured to attest to the broker listening on
    /// 127.0.0.1:`broker.0` whose CA is `broker.1`; returns once the guest reported its
    /// PCRs and event log (within [`BOOT_TIMEOUT`]). Nothing this VM does waits past
    /// `deadline` (the whole test's limit).
    ///
    /// # Errors
    /// swtpm or qemu did not start, the guest did not report in time, or its report is
    /// malformed; the error carries the tail of the console and of qemu's and swtpm's logs.
    pub fn boot(
        media: &Media,
        chain: Chain,
        tpm: VmTpm,
        broker: (u16, &Path),
        deadline: Instant,
    ) -> anyhow::Result<Self> {
        let (broker_port, broker_ca) = broker;
        let dir = tempfile::Builder::new().prefix("mooring-realvm-").tempdir()?;
        let root = dir.path();
        let started = Instant::now();
        let swtpm = start_swtpm(root, &tpm)?;
        // From here on `vm` owns the processes: an early return stops them.
        let mut vm = Self {
            chain,
            qemu: None,
            swtpm: Some(swtpm),
            control: ControlPort::default(),
            report: BootReport {
                pcrs: PcrValues::new(),
                pcrs_json: String::new(),
                event_log: Vec::new(),
                proc_cmdline: String::new(),
                boot_time: Duration::ZERO,
            },
            dir,
            tpm,
            deadline,
        };
        let result = vm.start_qemu(media, broker_port, broker_ca).and_then(|()| vm.read_report(started));
        match result {
            Ok(report) => {
                vm.report = report;
                Ok(vm)
            }
            Err(e) => Err(e.context(format!("boot {}\n{}", chain.name(), vm.diagnostics()))),
        }
    }

    /// The boot chain.
    #[must_use]
    pub fn chain(&self) -> Chain {
        self.chain
    }

    /// The VM's RSA EK certificate (DER).
    #[must_use]
    pub fn ek_cert(&self) -> PathBuf {
        self.tpm.ek_cert()
    }

    /// Runs `mooring-client attest` in the guest and returns its exit status and stderr.
    ///
    /// # Errors
    /// The guest did not answer within [`ATTEST_TIMEOUT`] or the VM ended.
    pub fn attest(&mut self) -> anyhow::Result<Attempt> {
        let started = Instant::now();
        let deadline = (started + ATTEST_TIMEOUT).min(self.deadline);
        let result = (|| {
            self.control.send("attest")?;
            self.control.until("@@MOORING:ATTEST-BEGIN@@", deadline)?;
            let stderr = self.control.until("@@MOORING:ATTEST-STATUS ", deadline)?;
            let status = self.control.until("@@", deadline)?;
            self.control.until("@@MOORING:READY@@", deadline)?;
            let status: i32 = status.trim().parse().with_context(|| format!("exit status {status:?}"))?;
            Ok(Attempt { status, stderr: stderr.trim().to_owned(), elapsed: started.elapsed() })
        })();
        result.map_err(|e: anyhow::Error| {
            e.context(format!("attest in {}\n{}", self.chain.name(), self.diagnostics()))
        })
    }

    /// Powers the guest off and waits for qemu to exit (killing it after 60 s).
    ///
    /// # Errors
    /// The control port failed; qemu is killed regardless.
    pub fn poweroff(mut self) -> anyhow::Result<()> {
        let sent = self.control.send("poweroff");
        if let Some(mut qemu) = self.qemu.take() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && matches!(qemu.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            // Best effort: it may have exited already.
            let _ = qemu.kill();
            let _ = qemu.wait();
        }
        sent
    }

    fn start_qemu(&mut self, media: &Media, broker_port: u16, broker_ca: &Path) -> anyhow::Result<()> {
        let root = self.dir.path().to_owned();
        let vars = root.join("OVMF_VARS.fd");
        fs::copy(self.chain.ovmf_vars(), &vars)
            .with_context(|| format!("copy {}", self.chain.ovmf_vars()))?;
        let client_config = root.join("client.toml");
        fs::write(&client_config, client_config_text())?;
        let ca = root.join("broker-ca.pem");
        fs::copy(broker_ca, &ca).with_context(|| format!("copy {}", broker_ca.display()))?;
        let control = root.join("control.sock");

        let (guest_ip, guest_port) = GUEST_BROKER;
        let mut args: Vec<String> = vec![
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-machine".into(),
            "q35,smm=on".into(),
            "-global".into(),
            "driver=cfi.pflash01,property=secure,value=on".into(),
            "-m".into(),
            "1024".into(),
            "-no-reboot".into(),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", root.join("swtpm.sock").display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-tis,tpmdev=tpm0".into(),
            // No ROM: iPXE would measure itself into PCR 2 and try a network boot.
            "-netdev".into(),
            format!(
                "user,id=net0,restrict=on,guestfwd=tcp:{guest_ip}:{guest_port}-cmd:socat - TCP:127.0.0.1:{broker_port}"
            ),
            "-device".into(),
            "e1000,netdev=net0,romfile=".into(),
            // ttyS0: the console, to a file. ttyS1: the guest's reports and our commands;
            // qemu waits for us to connect before it runs the VM.
            "-serial".into(),
            format!("file:{}", root.join("console.log").display()),
            "-chardev".into(),
            format!("socket,id=control,path={},server=on,wait=on", control.display()),
            "-serial".into(),
            "chardev:control".into(),
            "-fw_cfg".into(),
            format!("name=opt/mooring/client.toml,file={}", client_config.display()),
            "-fw_cfg".into(),
            format!("name=opt/mooring/broker-ca.pem,file={}", ca.display()),
        ];
        match self.chain {
            Chain::QemuKernel => {
                args.extend([
                    "-kernel".into(),
                    media.file("vmlinuz").display().to_string(),
                    "-initrd".into(),
                    media.file("initrd.img").display().to_string(),
                    "-append".into(),
                    media.cmdline(self.chain)?,
                ]);
            }
            Chain::SystemdBoot | Chain::ShimGrub | Chain::Uki => {
                let disk = media.file(&format!("disk-{}.img", self.chain.name()));
                args.extend([
                    "-drive".into(),
                    format!("if=none,id=disk,format=raw,readonly=on,file={}", disk.display()),
                    "-device".into(),
                    "virtio-blk-pci,drive=disk,bootindex=0".into(),
                ]);
            }
        }
        let log = fs::File::create(root.join("qemu.log"))?;
        let qemu = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start qemu-system-x86_64")?;
        self.qemu = Some(qemu);

        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            if let Ok(stream) = UnixStream::connect(&control) {
                break stream;
            }
            if let Some(status) = self.qemu.as_mut().and_then(|q| q.try_wait().ok().flatten()) {
                bail!("qemu exited ({status}) before its control port opened");
            }
            if Instant::now() > deadline {
                bail!("qemu's control port {} did not open within 30 s", control.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.control = ControlPort { stream: Some(stream), buffer: Vec::new(), position: 0 };
        Ok(())
    }

    /// Reads the guest's report (see tests/realvm/init for the format).
    fn read_report(&mut self, started: Instant) -> anyhow::Result<BootReport> {
        let deadline = (started + BOOT_TIMEOUT).min(self.deadline);
        self.control.until("@@MOORING:PCRS-BEGIN@@", deadline)?;
        let pcr_text = self.control.until("@@MOORING:PCRS-END@@", deadline)?;
        self.control.until("@@MOORING:EVENTLOG-BEGIN@@", deadline)?;
        let log_text = self.control.until("@@MOORING:EVENTLOG-END@@", deadline)?;
        self.control.until("@@MOORING:CMDLINE ", deadline)?;
        let cmdline = self.control.until("\n", deadline)?;
        self.control.until("@@MOORING:READY@@", deadline)?;

        let mut banks: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for line in pcr_text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut words = line.split_whitespace();
            let (Some(bank), Some(index), Some(value), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                bail!("malformed PCR line from the guest: {line:?}");
            };
            banks.entry(bank.to_owned()).or_default().insert(index.to_owned(), value.to_ascii_lowercase());
        }
        let pcrs = PcrValues::from_map(&banks).map_err(|e| anyhow!("PCRs from the guest: {e}"))?;
        let compact: String = log_text.split_whitespace().collect();
        let event_log = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .context("event log from the guest: base64")?;
        if event_log.is_empty() {
            bail!("the guest has no event log (/sys/kernel/security/tpm0/binary_bios_measurements empty or missing)");
        }
        Ok(BootReport {
            pcrs,
            pcrs_json: serde_json::to_string_pretty(&banks)?,
            event_log,
            proc_cmdline: cmdline.trim_end_matches(['\r', '\n']).to_owned(),
            boot_time: started.elapsed(),
        })
    }

    /// The tails of the console, qemu's output and swtpm's log, for error messages.
    fn diagnostics(&self) -> String {
        let mut text = String::new();
        for name in ["console.log", "qemu.log", "swtpm.log", "swtpm.stderr"] {
            let bytes = fs::read(self.dir.path().join(name)).unwrap_or_default();
            let tail = bytes.get(bytes.len().saturating_sub(3000)..).unwrap_or_default();
            let _ =
                writeln!(text, "--- {name} (last {} bytes)\n{}", tail.len(), String::from_utf8_lossy(tail));
        }
        let _ = writeln!(text, "--- control port (last bytes)\n{}", self.control.tail());
        text
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Best effort: the processes may have exited already. swtpm (--terminate) ends when
        // qemu disconnects; it is killed too in case it does not.
        for child in [self.qemu.take(), self.swtpm.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The client's configuration in the guest (passed through fw_cfg).
fn client_config_text() -> String {
    let (ip, port) = GUEST_BROKER;
    format!(
        "broker_url = \"https://{ip}:{port}\"\n\
         broker_ca = \"/etc/mooring/broker-ca.pem\"\n\
         runtime_dir = \"/run/mooring\"\n\
         state_dir = \"/var/lib/mooring\"\n\n\
         [evidence]\n\
         kind = \"tpm\"\n\
         tcti = \"device:/dev/tpmrm0\"\n\
         ek = \"rsa2048\"\n\
         event_log = \"/sys/kernel/security/tpm0/binary_bios_measurements\"\n"
    )
}

/// Starts swtpm for qemu on `tpm`'s state: control channel on a unix socket, no
/// `startup-clear` (the firmware sends TPM2_Startup), ends when qemu disconnects.
fn start_swtpm(root: &Path, tpm: &VmTpm) -> anyhow::Result<Child> {
    let socket = root.join("swtpm.sock");
    let stderr = fs::File::create(root.join("swtpm.stderr"))?;
    let mut child = Command::new("swtpm")
        .arg("socket")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(format!("dir={}", tpm.dir.path().join("state").display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", socket.display()))
        .arg("--terminate")
        .arg("--log")
        .arg(format!("file={}", root.join("swtpm.log").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("start swtpm")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(root.join("swtpm.stderr")).unwrap_or_default();
            bail!("swtpm exited ({status}) before opening {}: {log}", socket.display());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("swtpm did not open {} within 15 s", socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// The guest's second serial port: everything it sent so far, and where the last marker
/// ended. OVMF prints its console here too, so the guest frames what it sends.
#[derive(Debug, Default)]
struct ControlPort {
    stream: Option<UnixStream>,
    buffer: Vec<u8>,
    position: usize,
}

impl ControlPort {
    fn send(&mut self, command: &str) -> anyhow::Result<()> {
        let stream = self.stream.as_mut().ok_or_else(|| anyhow!("no control port"))?;
        stream.write_all(format!("{command}\n").as_bytes()).context("write to the guest's control port")
    }

    /// Reads until `marker`; returns what came before it (since the last marker) and moves
    /// past it.
    fn until(&mut self, marker: &str, deadline: Instant) -> anyhow::Result<String> {
        let needle = marker.as_bytes();
        loop {
            let unread = self.buffer.get(self.position..).unwrap_or_default();
            if let Some(at) = unread.windows(needle.len()).position(|w| w == needle) {
                let text = String::from_utf8_lossy(unread.get(..at).unwrap_or_default()).into_owned();
                self.position += at + needle.len();
                return Ok(text);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out waiting for {marker:?} from the guest");
            }
            let stream = self.stream.as_mut().ok_or_else(|| anyhow!("no control port"))?;
            stream.set_read_timeout(Some((deadline - now).min(Duration::from_secs(1))))?;
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk) {
                Ok(0) => bail!("the VM ended (control port closed) while waiting for {marker:?}"),
                Ok(n) => self.buffer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("read the guest's control port"),
            }
        }
    }

    fn tail(&self) -> String {
        let tail = self.buffer.get(self.buffer.len().saturating_sub(2000)..).unwrap_or_default();
        String::from_utf8_lossy(tail).into_owned()
    }
}

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

/// Copies a VM's report to `dir` (`binary_bios_measurements`, `pcrs.json`, `cmdline.txt`)
/// for a person to look at; used when `MOORING_REALVM_KEEP` names a directory.
///
/// # Errors
/// Writing failed.
pub fn save_report(vm: &Vm, dir: &Path) -> anyhow::Result<()> {
    let dir = dir.join(vm.chain.name());
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("binary_bios_measurements"), &vm.report.event_log)?;
    fs::write(dir.join("pcrs.json"), &vm.report.pcrs_json)?;
    fs::write(dir.join("cmdline.txt"), &vm.report.proc_cmdline)?;
    Ok(())
}

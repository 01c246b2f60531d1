//! A running VM: qemu with Secure Boot firmware on swtpm, the guest's report and its
//! `mooring-client attest` runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use mooring_attestation::tpm::pcr::PcrValues;

use super::control::ControlPort;
use super::tpm::{start_swtpm, VmTpm};
use super::{BootReport, Chain, Media, ATTEST_TIMEOUT, BOOT_TIMEOUT, GUEST_BROKER, OVMF_CODE};

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
    pub(super) dir: tempfile::TempDir,
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
        self.control = ControlPort::new(stream);
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

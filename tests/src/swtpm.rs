//! Real software TPMs for tests: one `swtpm` process per [`Swtpm`], with its own state
//! directory, its own loopback ports, and EK certificates from a local CA.
//!
//! ```no_run
//! use mooring_tests::swtpm::{EkKind, Swtpm, SwtpmOptions};
//!
//! # fn main() -> Result<(), mooring_tests::HarnessError> {
//! let tpm = Swtpm::start(SwtpmOptions::default())?;
//! let tools = tpm.tools(); // tpm2-tools against this TPM, files in tpm.work_dir()
//! tools.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"])?;
//! tools.flush_transient()?; // no resource manager: flush, or the TPM runs out of slots
//! let ek_cert = tpm.ek_cert_der(EkKind::Rsa2048)?; // also in NV at EkKind::Rsa2048.cert_nv_index()
//! let roots = tpm.ek_cert_ca_files(); // root + intermediate that issued the EK certificates
//! # let _ = (ek_cert, roots);
//! // tss-esapi: TctiNameConf::from_str(&tpm.tcti())
//! # Ok(()) }
//! ```
//!
//! In a test, [`Swtpm::start_or_skip`] skips (prints why, returns `None`) when swtpm or
//! tpm2-tools are not installed, unless `CI` is set: then it fails.
//!
//! What [`Swtpm::start`] does:
//!
//! 1. Manufactures a TPM with `swtpm_setup --tpm2 --tpmstate DIR --config CONF --overwrite
//!    --pcr-banks sha1,sha256 --create-ek-cert --create-platform-cert`, with its own
//!    `swtpm_setup.conf` / `swtpm-localca.conf` / `swtpm-localca.options` in the instance's
//!    temporary directory (never `/etc` or `/var/lib`). No `--allow-signing`: the EKs use the
//!    standard TCG templates (decrypt, restricted). swtpm 0.7.1 always creates both an
//!    RSA-2048 EK (persistent 0x81010001, certificate in NV 0x01c00002) and an ECC NIST P-384
//!    EK (0x81010016, certificate in NV 0x01c00016), plus a platform certificate (NV
//!    0x01c08000). Its `--ecc` flag only concerns the storage primary key, so there is no
//!    option for it here. The certificates are also written to files ([`Swtpm::ek_cert_der`]).
//! 2. Starts `swtpm socket --tpm2 --server type=tcp,port=P,bindaddr=127.0.0.1 --ctrl
//!    type=tcp,port=P+1,bindaddr=127.0.0.1 --flags not-need-init,startup-clear`. The control
//!    port must be the server port + 1: tpm2-tss's swtpm TCTI derives it that way. P is found
//!    by binding 127.0.0.1:0; if swtpm then cannot bind (another test took the port in the
//!    meantime) it is started again on other ports. swtpm writes its pid file only after both
//!    sockets are bound, so a connection accepted after that reaches this instance, not a
//!    neighbour that won the port.
//! 3. Drop (and [`Swtpm::restart`]) ask swtpm to shut down over its control channel, kill it
//!    if it does not, and wait for it. Dropping removes the state directory.
//!
//! The local CA (`swtpm_localca`: an RSA-3072 root `swtpm-localca-rootca` and an intermediate
//! `swtpm-localca` that signs the EK certificates) costs about a third of a second to create,
//! so it is shared: the first instance creates one in its own directory and publishes a copy,
//! by atomic rename, to `<cargo target dir>/mooring-swtpm-localca` (or `$MOORING_SWTPM_CA_DIR`);
//! later instances, in this and other test processes (nextest runs each test in its own),
//! sign with that one. `swtpm_localca` locks the CA directory while it issues, so concurrent
//! setups get distinct serial numbers. [`SwtpmOptions::private_ca`] gives an instance a CA of
//! its own, e.g. to test that an EK certificate from an unknown CA is refused.
//!
//! Without a resource manager (there is none here) every transient object and session a
//! client loads stays loaded until flushed; swtpm has three object slots. Flush after use
//! ([`crate::tpm2_tools::Tpm2Tools::flush_all`]), or the next command fails with 0x902 /
//! 0x903. One client at a time per instance: swtpm serves one connection at a time.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::Invocation;
use crate::error::HarnessError;
use crate::prereq::{self, find_program};
use crate::tpm2_tools::Tpm2Tools;

/// NV index of the platform certificate swtpm_setup writes (`--create-platform-cert`).
pub const PLATFORM_CERT_NV_INDEX: u32 = 0x01c0_8000;

/// How long swtpm may take to accept connections after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many port pairs [`Swtpm::start`] tries before giving up.
const PORT_ATTEMPTS: usize = 20;
/// How often [`Swtpm::restart`] retries its own ports while another process holds them.
const RESTART_ATTEMPTS: usize = 100;
/// How long swtpm may take to exit after the control-channel shutdown command.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// swtpm control channel command `CMD_SHUTDOWN` (swtpm's `tpm_ioctl.h`): shut the TPM down
/// and end the process.
const CTRL_CMD_SHUTDOWN: u32 = 3;

/// File names swtpm_localca uses in its state directory.
const CA_ROOT_CERT: &str = "swtpm-localca-rootca-cert.pem";
const CA_ROOT_KEY: &str = "swtpm-localca-rootca-privkey.pem";
const CA_SIGNING_KEY: &str = "signkey.pem";
const CA_ISSUER_CERT: &str = "issuercert.pem";
const CA_SERIAL: &str = "certserial";
const CA_FILES: [&str; 5] = [CA_ROOT_CERT, CA_ROOT_KEY, CA_SIGNING_KEY, CA_ISSUER_CERT, CA_SERIAL];
/// Name of the shared CA directory below the cargo target directory.
const SHARED_CA_DIR_NAME: &str = "mooring-swtpm-localca";
/// Environment variable overriding where the shared CA lives.
pub const SHARED_CA_DIR_ENV: &str = "MOORING_SWTPM_CA_DIR";

/// The endorsement keys swtpm_setup creates, and where their certificates are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EkKind {
    /// RSA 2048, TCG EK Credential Profile template L-1.
    Rsa2048,
    /// ECC NIST P-384 (swtpm 0.7.1 makes P-384, not the P-256 of template L-2).
    EccP384,
}

impl EkKind {
    /// Both kinds, RSA first.
    pub const ALL: [Self; 2] = [Self::Rsa2048, Self::EccP384];

    /// NV index holding the DER EK certificate (TCG EK Credential Profile 2.0, section 2.2.1.4).
    #[must_use]
    pub const fn cert_nv_index(self) -> u32 {
        match self {
            Self::Rsa2048 => 0x01c0_0002,
            Self::EccP384 => 0x01c0_0016,
        }
    }

    /// Persistent handle swtpm_setup stores the EK at.
    #[must_use]
    pub const fn persistent_handle(self) -> u32 {
        match self {
            Self::Rsa2048 => 0x8101_0001,
            Self::EccP384 => 0x8101_0016,
        }
    }

    /// File name `swtpm_setup --write-ek-cert-files` uses.
    const fn cert_file_name(self) -> &'static str {
        match self {
            Self::Rsa2048 => "ek-rsa2048.crt",
            Self::EccP384 => "ek-secp384r1.crt",
        }
    }
}

/// How to manufacture a [`Swtpm`]. Start from `SwtpmOptions::default()`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SwtpmOptions {
    /// Create the EKs and their certificates (and the platform certificate). Default `true`.
    /// `false` gives a TPM with no EK certificate in NV and no persistent EK (`tpm2_createek`
    /// still derives the same EKs from the seed).
    pub ek_certs: bool,
    /// PCR banks to activate, comma separated. Default `sha1,sha256`.
    pub pcr_banks: String,
    /// Sign the EK certificates with a CA of this instance's own instead of the shared one.
    /// Default `false`.
    pub private_ca: bool,
}

impl Default for SwtpmOptions {
    fn default() -> Self {
        Self { ek_certs: true, pcr_banks: "sha1,sha256".to_owned(), private_ca: false }
    }
}

impl SwtpmOptions {
    /// No EKs or EK certificates.
    #[must_use]
    pub fn without_ek_certs(mut self) -> Self {
        self.ek_certs = false;
        self
    }

    /// Activate these PCR banks (e.g. `"sha256"`, `"sha1,sha256,sha384"`).
    #[must_use]
    pub fn with_pcr_banks(mut self, banks: &str) -> Self {
        banks.clone_into(&mut self.pcr_banks);
        self
    }

    /// A CA of this instance's own (see [`SwtpmOptions::private_ca`]).
    #[must_use]
    pub fn with_private_ca(mut self) -> Self {
        self.private_ca = true;
        self
    }
}

/// The PEM certificates of the local CA that issued an instance's EK certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EkCaFiles {
    root: PathBuf,
    intermediate: PathBuf,
}

impl EkCaFiles {
    fn in_dir(dir: &Path) -> Self {
        Self { root: dir.join(CA_ROOT_CERT), intermediate: dir.join(CA_ISSUER_CERT) }
    }

    /// The self-signed root (`CN=swtpm-localca-rootca`): the trust anchor.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The intermediate (`CN=swtpm-localca`) that signs the EK certificates.
    #[must_use]
    pub fn intermediate(&self) -> &Path {
        &self.intermediate
    }

    /// Root then intermediate.
    #[must_use]
    pub fn all(&self) -> [&Path; 2] {
        [&self.root, &self.intermediate]
    }
}

/// A running swtpm (see the module documentation). Stopped, and its state removed, on drop.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    port: u16,
    ca: EkCaFiles,
    options: SwtpmOptions,
    /// Holds `state/`, `work/`, `ek-certs/`, the config files and logs. Last field: removed
    /// after `Drop::drop` has stopped swtpm.
    dir: tempfile::TempDir,
}

impl Swtpm {
    /// Manufactures a fresh TPM and starts swtpm on free loopback ports.
    ///
    /// # Errors
    /// A program is missing, swtpm_setup failed, or swtpm did not start; the error carries
    /// the command line and output or swtpm's log.
    pub fn start(options: SwtpmOptions) -> Result<Self, HarnessError> {
        for tool in ["swtpm", "swtpm_setup", "swtpm_localca"] {
            if find_program(tool).is_none() {
                return Err(HarnessError::MissingTool { tool: tool.to_owned() });
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("mooring-swtpm-")
            .tempdir()
            .map_err(|e| HarnessError::io("create swtpm temporary directory", e))?;
        for sub in ["state", "work", "ek-certs"] {
            fs::create_dir(dir.path().join(sub))
                .map_err(|e| HarnessError::io(format!("create {sub} directory"), e))?;
        }

        let ca = manufacture(dir.path(), &options)?;
        Self { child: None, port: 0, ca, options, dir }.launch_on_free_ports()
    }

    /// Test helper: [`Swtpm::start`], or `None` after printing why `test` is skipped when
    /// swtpm or tpm2-tools are not installed and `CI` is not set.
    ///
    /// # Panics
    /// When the tools are missing in CI, or the instance fails to start.
    #[must_use]
    #[allow(clippy::panic)]
    pub fn start_or_skip(test: &str, options: SwtpmOptions) -> Option<Self> {
        if !prereq::require_tools(test, prereq::TPM_TOOLS) {
            return None;
        }
        match Self::start(options) {
            Ok(tpm) => Some(tpm),
            Err(e) => panic!("{test}: {e}"),
        }
    }

    /// A second swtpm started from a copy of this one's state directory, as a hypervisor
    /// cloning a VM's vTPM would make: same EK, same persistent objects and counters (its
    /// start is a TPM reset of the copy). This one keeps running.
    ///
    /// # Errors
    /// The copy or the start failed.
    pub fn clone_state(&self) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("mooring-swtpm-clone-")
            .tempdir()
            .map_err(|e| HarnessError::io("create swtpm clone directory", e))?;
        for sub in ["state", "work", "ek-certs"] {
            fs::create_dir(dir.path().join(sub))
                .map_err(|e| HarnessError::io(format!("create {sub} directory"), e))?;
        }
        for entry in
            fs::read_dir(self.state_dir()).map_err(|e| HarnessError::io("read the swtpm state", e))?
        {
            let entry = entry.map_err(|e| HarnessError::io("read the swtpm state", e))?;
            fs::copy(entry.path(), dir.path().join("state").join(entry.file_name()))
                .map_err(|e| HarnessError::io("copy the swtpm state", e))?;
        }
        Self { child: None, port: 0, ca: self.ca.clone(), options: self.options.clone(), dir }
            .launch_on_free_ports()
    }

    /// Starts this (not yet running) instance on the first free pair of loopback ports.
    fn launch_on_free_ports(mut self) -> Result<Self, HarnessError> {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port_pair()?;
            if let Launch::Ready(child) = self.launch(port)? {
                self.child = Some(child);
                self.port = port;
                return Ok(self);
            }
        }
        Err(HarnessError::StartFailed {
            reason: format!("no free port pair after {PORT_ATTEMPTS} attempts"),
            log: self.log_tail(),
        })
    }

    /// Stops swtpm and starts it again on the same state and ports: a reboot. PCRs reset,
    /// transient objects and sessions are gone, persistent objects and NV stay.
    ///
    /// # Errors
    /// swtpm did not stop or start, or another process holds its ports for seconds.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop()?;
        for _ in 0..RESTART_ATTEMPTS {
            match self.launch(self.port)? {
                Launch::Ready(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Launch::PortBusy => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        Err(HarnessError::StartFailed {
            reason: format!("ports {} and {} stayed in use by another process", self.port, self.port + 1),
            log: self.log_tail(),
        })
    }

    /// The TCTI configuration string (`swtpm:host=127.0.0.1,port=P`) for tpm2-tools
    /// (`TPM2TOOLS_TCTI`) and tss-esapi. It does not change over the instance's life.
    #[must_use]
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM command port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The swtpm control channel port on 127.0.0.1 (always [`Swtpm::port`] + 1).
    #[must_use]
    pub fn ctrl_port(&self) -> u16 {
        self.port + 1
    }

    /// swtpm's state directory (`tpm2-00.permall`).
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A scratch directory for this instance's files; [`Swtpm::tools`] runs there.
    #[must_use]
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// tpm2-tools against this instance, running in [`Swtpm::work_dir`].
    #[must_use]
    pub fn tools(&self) -> Tpm2Tools {
        Tpm2Tools::new(self.tcti(), self.work_dir())
    }

    /// The CA certificates that issued this instance's EK certificates.
    #[must_use]
    pub fn ek_cert_ca_files(&self) -> &EkCaFiles {
        &self.ca
    }

    /// The DER EK certificate swtpm_setup wrote to NV (`kind.cert_nv_index()`), from the
    /// copy it wrote to a file.
    ///
    /// # Errors
    /// The instance was started without EK certificates, or the file cannot be read.
    pub fn ek_cert_der(&self, kind: EkKind) -> Result<Vec<u8>, HarnessError> {
        if !self.options.ek_certs {
            return Err(HarnessError::io(
                "read EK certificate",
                std::io::Error::other("this instance was started without EK certificates"),
            ));
        }
        let path = self.dir.path().join("ek-certs").join(kind.cert_file_name());
        fs::read(&path).map_err(|e| HarnessError::io(format!("read {}", path.display()), e))
    }

    /// The options this instance was manufactured with.
    #[must_use]
    pub fn options(&self) -> &SwtpmOptions {
        &self.options
    }

    /// Starts swtpm on `port` and `port + 1` and waits until it accepts connections.
    fn launch(&self, port: u16) -> Result<Launch, HarnessError> {
        let root = self.dir.path();
        let pid_file = root.join("swtpm.pid");
        let log_file = root.join("swtpm.log");
        match fs::remove_file(&pid_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HarnessError::io("remove old swtpm pid file", e)),
        }
        let log_start = fs::metadata(&log_file).map_or(0, |m| m.len());
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("swtpm.stderr"))
            .map_err(|e| HarnessError::io("open swtpm.stderr", e))?;
        let stderr_start = stderr.metadata().map_or(0, |m| m.len());

        let ctrl_port = port.checked_add(1).ok_or_else(|| {
            HarnessError::io("choose ports", std::io::Error::other("port 65535 has no successor"))
        })?;
        let mut child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(kv("dir=", &self.state_dir()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl_port},bindaddr=127.0.0.1"))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .arg("--pid")
            .arg(kv("file=", &pid_file))
            .arg("--log")
            .arg(kv("file=", &log_file))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| HarnessError::io("start swtpm", e))?;

        let new_log = || {
            let mut text = read_from(&log_file, log_start);
            text.push_str(&read_from(&root.join("swtpm.stderr"), stderr_start));
            text
        };
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().map_err(|e| HarnessError::io("wait for swtpm", e))? {
                let log = new_log();
                if log.contains("Address already in use") {
                    return Ok(Launch::PortBusy);
                }
                return Err(HarnessError::StartFailed { reason: format!("swtpm exited ({status})"), log });
            }
            // The pid file appears once both sockets are bound (swtpm 0.7.1 binds them
            // first), so from then on the port is ours.
            let pid_written =
                fs::read_to_string(&pid_file).is_ok_and(|pid| pid.trim() == child.id().to_string());
            if pid_written && TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() {
                return Ok(Launch::Ready(child));
            }
            if started.elapsed() > START_TIMEOUT {
                // Best effort: the error below is what matters.
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::StartFailed {
                    reason: format!("no connection on port {port} after {START_TIMEOUT:?}"),
                    log: new_log(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Asks swtpm to shut down over the control channel, kills it if it does not, and
    /// waits for it.
    fn stop(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // Best effort: if the request fails, the kill below ends the process.
        let _ = request_shutdown(self.ctrl_port());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                _ => break,
            }
        }
        // Best effort: the process may have exited in the meantime.
        let _ = child.kill();
        child.wait().map(drop).map_err(|e| HarnessError::io("wait for swtpm to exit", e))
    }

    fn log_tail(&self) -> String {
        let mut text = read_tail(&self.dir.path().join("swtpm.log"));
        text.push_str(&read_tail(&self.dir.path().join("swtpm.stderr")));
        text
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        // Nothing useful to do with an error here; the process is killed regardless.
        let _ = self.stop();
    }
}

enum Launch {
    Ready(Child),
    PortBusy,
}

/// Manufactures a TPM the way [`Swtpm::start`] does, without starting swtpm: its state in
/// `root/state`, its EK certificates in `root/ek-certs` ([`ek_cert_file`]), signed by the
/// shared local CA (or a private one, per `options`). For a swtpm that another program
/// drives, e.g. qemu's TPM emulator backend in the real-VM test (`crate::realvm`).
///
/// # Errors
/// A program is missing, or swtpm_setup failed (the error carries its output).
pub fn manufacture_state(root: &Path, options: &SwtpmOptions) -> Result<EkCaFiles, HarnessError> {
    for sub in ["state", "ek-certs"] {
        fs::create_dir_all(root.join(sub))
            .map_err(|e| HarnessError::io(format!("create {sub} directory"), e))?;
    }
    manufacture(root, options)
}

/// Where [`manufacture_state`] wrote the DER certificate of the `kind` EK.
#[must_use]
pub fn ek_cert_file(root: &Path, kind: EkKind) -> PathBuf {
    root.join("ek-certs").join(kind.cert_file_name())
}

/// Runs swtpm_setup in `root/state`; returns the CA that signed the EK certificates.
fn manufacture(root: &Path, options: &SwtpmOptions) -> Result<EkCaFiles, HarnessError> {
    let shared = if options.private_ca { None } else { shared_ca_dir() };
    let (ca_dir, publish_to) = match shared {
        Some(dir) if CA_FILES.iter().all(|f| dir.join(f).is_file()) => (dir, None),
        other => {
            let private = root.join("ca");
            fs::create_dir(&private).map_err(|e| HarnessError::io("create CA directory", e))?;
            // Publish only where nothing is yet: an incomplete directory is left alone.
            (private, other.filter(|dir| !dir.exists()))
        }
    };

    let localca = find_program("swtpm_localca")
        .ok_or_else(|| HarnessError::MissingTool { tool: "swtpm_localca".to_owned() })?;
    let localca_conf = root.join("swtpm-localca.conf");
    let localca_options = root.join("swtpm-localca.options");
    let setup_conf = root.join("swtpm_setup.conf");
    write_file(
        &localca_conf,
        &format!(
            "statedir = {}\nsigningkey = {}\nissuercert = {}\ncertserial = {}\n",
            ca_dir.display(),
            ca_dir.join(CA_SIGNING_KEY).display(),
            ca_dir.join(CA_ISSUER_CERT).display(),
            ca_dir.join(CA_SERIAL).display(),
        ),
    )?;
    write_file(
        &localca_options,
        "--platform-manufacturer Mooring\n--platform-version 2.1\n--platform-model swtpm\n",
    )?;
    write_file(
        &setup_conf,
        &format!(
            "create_certs_tool = {}\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\n",
            localca.display(),
            localca_conf.display(),
            localca_options.display(),
        ),
    )?;

    let mut args: Vec<OsString> = vec![
        "--tpm2".into(),
        "--tpmstate".into(),
        root.join("state").into(),
        "--config".into(),
        setup_conf.into(),
        "--overwrite".into(),
        "--pcr-banks".into(),
        options.pcr_banks.clone().into(),
    ];
    if options.ek_certs {
        args.extend([
            "--create-ek-cert".into(),
            "--create-platform-cert".into(),
            "--write-ek-cert-files".into(),
            root.join("ek-certs").into(),
        ]);
    }
    Invocation { program: "swtpm_setup", args, envs: Vec::new(), cwd: Some(root) }.run()?;

    if let Some(shared) = publish_to {
        publish_ca(&ca_dir, &shared);
    }
    Ok(EkCaFiles::in_dir(&ca_dir))
}

/// Where the shared CA lives: `$MOORING_SWTPM_CA_DIR`, else `mooring-swtpm-localca` in the
/// cargo target directory this test binary was built into (the ancestor holding
/// `CACHEDIR.TAG`). `None` when neither is known: every instance then has its own CA.
fn shared_ca_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(SHARED_CA_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|target| target.join(SHARED_CA_DIR_NAME))
}

/// Copies the CA in `from` to `to` through a staging directory and one rename, so readers
/// see all of it or nothing. Best effort: losing the race to another process, or any I/O
/// error, leaves `to` as it was (this instance keeps its own CA either way).
fn publish_ca(from: &Path, to: &Path) {
    let (Some(parent), Some(name)) = (to.parent(), to.file_name()) else {
        return;
    };
    let Ok(staging) =
        tempfile::Builder::new().prefix(&format!(".{}.", name.to_string_lossy())).tempdir_in(parent)
    else {
        return;
    };
    let copied = CA_FILES.iter().all(|file| fs::copy(from.join(file), staging.path().join(file)).is_ok());
    if copied && fs::rename(staging.path(), to).is_ok() {
        // The staging directory is now `to`: nothing left for `staging` to remove.
        let _ = staging.keep();
    }
}

/// Two adjacent free ports on 127.0.0.1 (server P, control P + 1), found by binding port 0.
/// They are released before swtpm binds them, so the caller must cope with losing them.
fn free_port_pair() -> Result<u16, HarnessError> {
    for _ in 0..100 {
        let first = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| HarnessError::io("bind 127.0.0.1:0", e))?
            .port();
        let Some(second) = first.checked_add(1) else { continue };
        // Both must be free at the same time.
        let both = TcpListener::bind((Ipv4Addr::LOCALHOST, first))
            .and_then(|a| TcpListener::bind((Ipv4Addr::LOCALHOST, second)).map(|b| (a, b)));
        if both.is_ok() {
            return Ok(first);
        }
    }
    Err(HarnessError::io(
        "find two adjacent free ports on 127.0.0.1",
        std::io::Error::other("none found in 100 attempts"),
    ))
}

/// Sends `CMD_SHUTDOWN` on swtpm's control channel and reads its 4-byte result.
fn request_shutdown(ctrl_port: u16) -> std::io::Result<()> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, ctrl_port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(&CTRL_CMD_SHUTDOWN.to_be_bytes())?;
    let mut result = [0_u8; 4];
    stream.read_exact(&mut result)
}

/// `prefix` followed by `path`, as one argument (`dir=/tmp/...`).
fn kv(prefix: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(prefix);
    arg.push(path);
    arg
}

fn write_file(path: &Path, contents: &str) -> Result<(), HarnessError> {
    fs::write(path, contents).map_err(|e| HarnessError::io(format!("write {}", path.display()), e))
}

/// The text of `path` from byte `offset` on (empty when unreadable).
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = fs::File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            // Diagnostics only: a short read is still useful.
            let _ = file.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last few KiB of `path`, for error messages.
fn read_tail(path: &Path) -> String {
    const TAIL: u64 = 4096;
    let len = fs::metadata(path).map_or(0, |m| m.len());
    read_from(path, len.saturating_sub(TAIL))
}

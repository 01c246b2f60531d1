//! A running swtpm on loopback ports: started, restarted, cloned and stopped.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::manufacture::manufacture;
use super::{EkCaFiles, EkKind, SwtpmOptions};
use crate::error::HarnessError;
use crate::prereq::{self, find_program};
use crate::tpm2_tools::Tpm2Tools;

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

/// A running swtpm (see the [`swtpm`](super) module documentation). Stopped, and its state
/// removed, on drop.
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

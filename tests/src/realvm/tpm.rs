//! A VM's TPM: manufactured with the harness's swtpm setup, run by swtpm for qemu.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::swtpm::{self, EkCaFiles, EkKind, SwtpmOptions};

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

/// Starts swtpm for qemu on `tpm`'s state: control channel on a unix socket, no
/// `startup-clear` (the firmware sends TPM2_Startup), ends when qemu disconnects.
pub(super) fn start_swtpm(root: &Path, tpm: &VmTpm) -> anyhow::Result<Child> {
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

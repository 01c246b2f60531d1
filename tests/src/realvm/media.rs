//! The boot media: Debian's kernel, shim and grub, the initramfs and the disks, built by
//! `tests/realvm/build.sh`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use super::host::target_dir;
use super::Chain;

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

    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.images.join(name)
    }
}

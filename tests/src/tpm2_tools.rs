//! tpm2-tools as the independent client: runs `tpm2_*` commands against one TPM
//! (`TPM2TOOLS_TCTI` set, `TSS2_LOG=all+none` so the TSS stays quiet) in a working directory,
//! so tests can use relative file names (`ek.ctx`, `ek.pub`).
//!
//! There is no resource manager in front of swtpm: objects and sessions a command leaves
//! loaded (every `-c ctx` a command creates or loads) stay in the TPM's three slots until
//! flushed. Call [`Tpm2Tools::flush_all`] (or `flush_transient` / `flush_sessions`) after
//! each step that loads something, or later commands fail with `0x902` (out of object
//! memory) / `0x903` (out of session memory).
//!
//! ```no_run
//! # fn main() -> Result<(), mooring_tests::HarnessError> {
//! # let tpm = mooring_tests::swtpm::Swtpm::start(Default::default())?;
//! let tools = tpm.tools();
//! let random = tools.run("tpm2_getrandom", ["8"])?; // stdout bytes
//! let pcrs = tools.run_text("tpm2_pcrread", ["sha256:0,16"])?;
//! tools.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"])?;
//! tools.flush_transient()?;
//! # let _ = (random, pcrs);
//! # Ok(()) }
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::cmd::Invocation;
use crate::error::HarnessError;

/// tpm2-tools bound to one TPM (a TCTI string) and a working directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tpm2Tools {
    tcti: String,
    dir: PathBuf,
}

impl Tpm2Tools {
    /// Tools talking to `tcti` (e.g. `swtpm:host=127.0.0.1,port=2321`), run in `dir`.
    #[must_use]
    pub fn new(tcti: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self { tcti: tcti.into(), dir: dir.into() }
    }

    /// The TCTI string put in `TPM2TOOLS_TCTI`.
    #[must_use]
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// The working directory commands run in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name` inside [`Tpm2Tools::dir`].
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs `program args...` (e.g. `tpm2_nvread`) against the TPM; returns its stdout.
    ///
    /// # Errors
    /// The program could not be started, or exited unsuccessfully: the error holds the
    /// command line (with `TPM2TOOLS_TCTI=...`) and its stderr.
    pub fn run<I, S>(&self, program: &str, args: I) -> Result<Vec<u8>, HarnessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Invocation {
            program,
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            envs: vec![("TPM2TOOLS_TCTI", self.tcti.clone()), ("TSS2_LOG", "all+none".to_owned())],
            cwd: Some(&self.dir),
        }
        .run()
    }

    /// [`Tpm2Tools::run`], with stdout as text (invalid UTF-8 replaced).
    ///
    /// # Errors
    /// As [`Tpm2Tools::run`].
    pub fn run_text<I, S>(&self, program: &str, args: I) -> Result<String, HarnessError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run(program, args).map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    /// Flushes every transient object (`tpm2_flushcontext -t`).
    ///
    /// # Errors
    /// As [`Tpm2Tools::run`].
    pub fn flush_transient(&self) -> Result<(), HarnessError> {
        self.run("tpm2_flushcontext", ["-t"]).map(drop)
    }

    /// Flushes every loaded and saved session (`tpm2_flushcontext -l`, then `-s`).
    ///
    /// # Errors
    /// As [`Tpm2Tools::run`].
    pub fn flush_sessions(&self) -> Result<(), HarnessError> {
        self.run("tpm2_flushcontext", ["-l"])?;
        self.run("tpm2_flushcontext", ["-s"]).map(drop)
    }

    /// Flushes transient objects and sessions.
    ///
    /// # Errors
    /// As [`Tpm2Tools::run`].
    pub fn flush_all(&self) -> Result<(), HarnessError> {
        self.flush_transient()?;
        self.flush_sessions()
    }
}

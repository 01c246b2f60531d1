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

mod instance;
mod manufacture;

pub use instance::Swtpm;
pub use manufacture::{ek_cert_file, manufacture_state, EkCaFiles, SHARED_CA_DIR_ENV};

/// NV index of the platform certificate swtpm_setup writes (`--create-platform-cert`).
pub const PLATFORM_CERT_NV_INDEX: u32 = 0x01c0_8000;

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

//! Reading certificates from bytes, files and directories.
//!
//! Accepted inputs: one DER certificate; or PEM text (RFC 7468) with any number
//! of `CERTIFICATE` blocks and arbitrary text before, between and after them
//! (keylime's `Alibaba_Cloud_vTPM_EK.pem` starts with an `openssl x509 -text`
//! dump). `.cer`/`.crt`/`.der` files may hold either: the content decides.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::cert::{Certificate, CertificateError};
use crate::pem::{self, PemError};

/// Largest certificate file read.
pub const MAX_BUNDLE_FILE_LEN: u64 = 16 * 1024 * 1024;
/// Most certificates one input may hold.
pub const MAX_CERTIFICATES_PER_INPUT: usize = 10_000;
/// Deepest directory level [`load_dir`] descends to.
pub const MAX_DIR_DEPTH: usize = 8;
/// File name extensions [`load_dir`] reads (compared case-insensitively);
/// other files (READMEs, YAML indexes) are skipped.
pub const CERTIFICATE_FILE_EXTENSIONS: [&str; 4] = ["pem", "crt", "cer", "der"];

const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// Why a certificate file or directory could not be loaded. Every variant names the path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_BUNDLE_FILE_LEN`].
    #[error("{}: {size} bytes exceeds the maximum of {MAX_BUNDLE_FILE_LEN}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file's content is not certificates.
    #[error("{}: {source}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: CertificateError,
    },
    /// The directory holds no certificate file.
    #[error("{}: no certificate files (.pem, .crt, .cer, .der) found", path.display())]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// The directory tree is deeper than [`MAX_DIR_DEPTH`].
    #[error("{}: directory nesting deeper than {MAX_DIR_DEPTH}", path.display())]
    TooDeep {
        /// The directory.
        path: PathBuf,
    },
}

/// Whether [`load_dir`] descends into subdirectories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recursion {
    /// Only files directly in the directory.
    TopLevel,
    /// Subdirectories too, up to [`MAX_DIR_DEPTH`] levels.
    Recursive,
}

/// An ordered list of certificates read from one input, file or directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertBundle {
    certificates: Vec<Certificate>,
}

impl CertBundle {
    /// See [`parse_certificates`].
    ///
    /// # Errors
    /// As [`parse_certificates`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertificateError> {
        parse_certificates(bytes).map(|certificates| Self { certificates })
    }

    /// See [`load_file`].
    ///
    /// # Errors
    /// As [`load_file`].
    pub fn from_file(path: &Path) -> Result<Self, BundleError> {
        load_file(path).map(|certificates| Self { certificates })
    }

    /// See [`load_dir`].
    ///
    /// # Errors
    /// As [`load_dir`].
    pub fn from_dir(path: &Path, recursion: Recursion) -> Result<Self, BundleError> {
        load_dir(path, recursion).map(|certificates| Self { certificates })
    }

    /// The certificates, in input order.
    #[must_use]
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// Number of certificates.
    #[must_use]
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }
}

impl IntoIterator for CertBundle {
    type Item = Certificate;
    type IntoIter = std::vec::IntoIter<Certificate>;

    fn into_iter(self) -> Self::IntoIter {
        self.certificates.into_iter()
    }
}

/// Every certificate in `bytes` (DER, or PEM with any surrounding text), in order.
///
/// # Errors
/// [`CertificateError`] naming the PEM block at fault; [`CertificateError::NoCertificate`]
/// when the input holds neither.
pub fn parse_certificates(bytes: &[u8]) -> Result<Vec<Certificate>, CertificateError> {
    if looks_like_der(bytes) {
        return Ok(vec![Certificate::from_der(bytes)?]);
    }
    let blocks =
        pem::decode_all(bytes, CERTIFICATE_LABEL, MAX_CERTIFICATES_PER_INPUT).map_err(|e| match e {
            PemError::Label { block, found, .. } => CertificateError::PemLabel { block, label: found },
            PemError::Malformed { block, reason } => CertificateError::Pem { block, reason },
            other => {
                CertificateError::Pem { block: MAX_CERTIFICATES_PER_INPUT + 1, reason: other.to_string() }
            }
        })?;
    let mut out = Vec::with_capacity(blocks.len());
    for (i, der) in blocks.iter().enumerate() {
        let cert = Certificate::from_der(der)
            .map_err(|e| CertificateError::Pem { block: i + 1, reason: e.to_string() })?;
        out.push(cert);
    }
    if out.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    Ok(out)
}

/// Exactly one certificate: DER (with TPM NV `0xFF` padding allowed) or a PEM
/// text holding one `CERTIFICATE` block.
///
/// # Errors
/// [`CertificateError::NotOne`] for several PEM blocks; otherwise as [`parse_certificates`]
/// and [`Certificate::from_tpm_nv`].
pub fn parse_one_certificate(bytes: &[u8]) -> Result<Certificate, CertificateError> {
    if looks_like_der(bytes) {
        return Certificate::from_tpm_nv(bytes);
    }
    let mut certs = parse_certificates(bytes)?;
    match certs.len() {
        1 => certs.pop().ok_or(CertificateError::NoCertificate),
        count => Err(CertificateError::NotOne { count }),
    }
}

/// Every certificate in the file at `path`.
///
/// # Errors
/// [`BundleError`] naming the file.
pub fn load_file(path: &Path) -> Result<Vec<Certificate>, BundleError> {
    let io = |source| BundleError::Io { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_BUNDLE_FILE_LEN {
        return Err(BundleError::TooLarge { path: path.to_owned(), size });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    parse_certificates(&bytes).map_err(|source| BundleError::Certificate { path: path.to_owned(), source })
}

/// Every certificate in the certificate files of directory `path` (see
/// [`CERTIFICATE_FILE_EXTENSIONS`]), files in name order.
///
/// # Errors
/// [`BundleError`] naming the file or directory at fault; [`BundleError::Empty`] when
/// no certificate file is found.
pub fn load_dir(path: &Path, recursion: Recursion) -> Result<Vec<Certificate>, BundleError> {
    let mut out = Vec::new();
    walk(path, recursion, 0, &mut out)?;
    if out.is_empty() {
        return Err(BundleError::Empty { path: path.to_owned() });
    }
    Ok(out)
}

fn walk(
    dir: &Path,
    recursion: Recursion,
    depth: usize,
    out: &mut Vec<Certificate>,
) -> Result<(), BundleError> {
    if depth > MAX_DIR_DEPTH {
        return Err(BundleError::TooDeep { path: dir.to_owned() });
    }
    let io = |path: &Path, source| BundleError::Io { path: path.to_owned(), source };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        entries.push(entry.map_err(|e| io(dir, e))?.path());
    }
    entries.sort();
    for path in entries {
        let meta = std::fs::metadata(&path).map_err(|e| io(&path, e))?;
        if meta.is_dir() {
            if recursion == Recursion::Recursive {
                walk(&path, recursion, depth + 1, out)?;
            }
        } else if is_certificate_file(&path) {
            out.extend(load_file(&path)?);
        }
    }
    Ok(())
}

fn is_certificate_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| CERTIFICATE_FILE_EXTENSIONS.iter().any(|c| c.eq_ignore_ascii_case(e)))
}

/// DER when the input starts with a SEQUENCE with a plausible length byte (PEM
/// text never starts with byte 0x30 followed by a control byte or a long-form length).
fn looks_like_der(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30) && bytes.get(1).is_some_and(|b| *b >= 0x80 || !b.is_ascii_graphic())
}

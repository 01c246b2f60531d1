//! Public keys from files, in the forms TPM tools and cloud APIs write them.

use std::path::Path;

use mooring_attestation::crypto::PublicKey;
use mooring_attestation::tpm::public::Public;
use mooring_attestation::x509;

use super::read_file as read;
use super::Failure;

/// A TPM public area (its attributes can be checked), or a bare key (they cannot).
pub(crate) enum PublicFile {
    /// TPM2B_PUBLIC (`tpm2_createek -u`, `tpm2_createak -u`) or TPMT_PUBLIC (AWS EC2
    /// `get-instance-tpm-ek-pub --key-format tpmt`).
    Tpm(Public),
    /// A SubjectPublicKeyInfo: PEM (`openssl pkey -pubout`) or DER (EC2 `--key-format der`).
    Bare(PublicKey),
}

impl PublicFile {
    /// The key, whichever form it came in.
    pub(crate) fn key(&self) -> &PublicKey {
        match self {
            Self::Tpm(public) => public.key(),
            Self::Bare(key) => key,
        }
    }
}

/// Reads `what`'s public key from `path`. The forms cannot be mistaken for one another: a
/// DER SubjectPublicKeyInfo starts with a SEQUENCE tag (0x30), a TPM2B_PUBLIC with its
/// length (at most a few hundred), a TPMT_PUBLIC with an algorithm (RSA 0x0001, ECC 0x0023).
pub(crate) fn load(path: &Path, what: &str) -> Result<PublicFile, Failure> {
    let bytes = read(path)?;
    let rejected = |e: &dyn std::fmt::Display| Failure::Rejected(format!("{what} ({}): {e}", path.display()));
    if bytes.starts_with(b"-----BEGIN") {
        return x509::spki_public_key_pem(&bytes).map(PublicFile::Bare).map_err(|e| rejected(&e));
    }
    if bytes.first() == Some(&0x30) {
        return x509::spki_public_key(&bytes).map(PublicFile::Bare).map_err(|e| rejected(&e));
    }
    let prefixed = bytes.first_chunk::<2>().map(|s| usize::from(u16::from_be_bytes(*s)));
    let parsed = if prefixed == Some(bytes.len().saturating_sub(2)) {
        Public::from_tpm2b(&bytes)
    } else {
        Public::from_tpmt(&bytes)
    };
    parsed.map(PublicFile::Tpm).map_err(|e| rejected(&e))
}

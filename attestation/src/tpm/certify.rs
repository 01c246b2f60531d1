//! Verification of `TPM2_Certify` (TPM 2.0 Part 3, 18.2): the AK vouches that a key K
//! lives in the same TPM.

use serde::Serialize;
use thiserror::Error;

use crate::tpm::attest::{verify_signed, Ak, Attested, Signature, SignedAttestError};
use crate::tpm::public::{ObjectAttributes, Public};

/// Attributes of a key that cannot leave its TPM and was made there: `fixedTPM`,
/// `fixedParent`, `sensitiveDataOrigin`, plus `sign`.
pub const NON_EXPORTABLE_SIGNING_KEY: u32 = ObjectAttributes::FIXED_TPM
    | ObjectAttributes::FIXED_PARENT
    | ObjectAttributes::SENSITIVE_DATA_ORIGIN
    | ObjectAttributes::SIGN;

/// Why a certification was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertifyError {
    /// AK, framing, signature or magic.
    #[error(transparent)]
    Signed(#[from] SignedAttestError),
    /// A signed structure of another type.
    #[error("attestation type is {0:#06x}, not TPM_ST_ATTEST_CERTIFY (0x8017)")]
    NotACertify(u16),
    /// The certified Name is not the Name of the public area presented.
    #[error("certify names object {certified}, the key presented has Name {presented}")]
    NameMismatch {
        /// Name in the certification, hex.
        certified: String,
        /// Name of the presented public area, hex.
        presented: String,
    },
    /// `extraData` is not the qualifying data this verifier expects.
    #[error("certify qualifying data is {found}, expected {expected}")]
    QualifyingData {
        /// Expected, hex.
        expected: String,
        /// Found, hex.
        found: String,
    },
    /// The certified key could leave the TPM, or cannot sign.
    #[error("the certified key lacks {}", .missing.join(", "))]
    KeyAttributes {
        /// Attribute names that are not set.
        missing: Vec<&'static str>,
    },
}

/// A key K proven to live in the same TPM as the AK. Only [`verify_certify`] makes one.
#[derive(Debug, Clone, Serialize)]
pub struct CertifiedKey {
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    name: Vec<u8>,
    key: crate::crypto::PublicKey,
}

impl CertifiedKey {
    /// Name of K.
    #[must_use]
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The public key of K.
    #[must_use]
    pub fn key(&self) -> &crate::crypto::PublicKey {
        &self.key
    }
}

/// Verifies that `ak` (a TPM public area whose AK attributes are checked, or a key vouched
/// for by other evidence) certified `certified` (with `qualifying_data` when given: `None`
/// accepts any, for callers that bind the key to a challenge elsewhere), and that `certified`
/// has every attribute in `required_attributes` (use [`NON_EXPORTABLE_SIGNING_KEY`] for
/// credential keys).
///
/// # Errors
/// [`CertifyError`] naming the first check that failed.
pub fn verify_certify(
    ak: Ak<'_>,
    certified: &Public,
    attest: &[u8],
    signature: &Signature,
    qualifying_data: Option<&[u8]>,
    required_attributes: u32,
) -> Result<CertifiedKey, CertifyError> {
    let parsed = verify_signed(ak, attest, signature)?;
    let Attested::Certify { name, .. } = parsed.attested() else {
        return Err(CertifyError::NotACertify(parsed.kind()));
    };
    let presented = certified.name();
    if *name != presented {
        return Err(CertifyError::NameMismatch {
            certified: hex::encode(name),
            presented: hex::encode(presented),
        });
    }
    if let Some(qualifying_data) = qualifying_data.filter(|q| *q != parsed.extra_data()) {
        return Err(CertifyError::QualifyingData {
            expected: hex::encode(qualifying_data),
            found: hex::encode(parsed.extra_data()),
        });
    }
    let missing = certified.attributes().missing(required_attributes);
    if !missing.is_empty() {
        return Err(CertifyError::KeyAttributes { missing });
    }
    Ok(CertifiedKey { name: presented, key: certified.key().clone() })
}

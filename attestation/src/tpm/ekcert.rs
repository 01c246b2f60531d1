//! TPM endorsement-key certificates (TCG EK Credential Profile for TPM Family 2.0,
//! §3): the certificate chains to a manufacturer CA, names the TPM in its
//! subjectAltName (TCG directoryName attributes, §3.2.9), and carries the EK
//! public key, which must equal the EK public area the TPM presents.

use std::time::SystemTime;

use sha2::{Digest, Sha256};
use thiserror::Error;
use x509_parser::extensions::{GeneralName, SubjectAlternativeName};
use x509_parser::prelude::FromDer;

use crate::crypto::PublicKey;
use crate::x509::bundle::parse_one_certificate;
use crate::x509::{CertPathError, Certificate, CertificateError, KeyError, TrustStore, VerifiedChain};

/// `tcg-at-tpmManufacturer` (TCG EK Credential Profile §3.2.9).
pub const OID_TPM_MANUFACTURER: &str = "2.23.133.2.1";
/// `tcg-at-tpmModel`.
pub const OID_TPM_MODEL: &str = "2.23.133.2.2";
/// `tcg-at-tpmVersion`.
pub const OID_TPM_VERSION: &str = "2.23.133.2.3";
/// `tcg-kp-EKCertificate` extended key usage (§3.2.16).
pub const OID_EK_CERTIFICATE_EKU: &str = "2.23.133.8.1";

const SUBJECT_ALT_NAME: &str = "2.5.29.17";
const EXT_KEY_USAGE: &str = "2.5.29.37";

/// Why an EK certificate is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EkCertError {
    /// The bytes are not one certificate.
    #[error("EK certificate: {0}")]
    Decode(#[from] CertificateError),
    /// The certificate does not chain to a trusted manufacturer CA.
    #[error("EK certificate chain: {0}")]
    Chain(#[from] CertPathError),
    /// The certificate's key is not a usable EK key.
    #[error("EK certificate public key: {0}")]
    Key(#[from] KeyError),
    /// The certificate is a CA certificate.
    #[error("EK certificate {subject} is a CA certificate (basicConstraints cA TRUE); pass the TPM's EK certificate")]
    IsCa {
        /// The certificate.
        subject: String,
    },
    /// The subjectAltName cannot be read.
    #[error("EK certificate subjectAltName: {reason}")]
    MalformedSan {
        /// What was wrong.
        reason: String,
    },
    /// The certificate's key is not the EK presented.
    #[error(
        "EK certificate key differs from the EK public area presented \
         (certificate: {certificate}, presented: {presented})"
    )]
    KeyMismatch {
        /// The certificate's key.
        certificate: String,
        /// The key presented.
        presented: String,
    },
}

/// The TPM named in an EK certificate's subjectAltName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkSubjectAltName {
    manufacturer: String,
    model: Option<String>,
    version: Option<String>,
}

impl EkSubjectAltName {
    /// `tpmManufacturer` as written, e.g. `id:53544D20`.
    #[must_use]
    pub fn manufacturer(&self) -> &str {
        &self.manufacturer
    }

    /// The manufacturer's `TPM_PT_MANUFACTURER` value parsed from `id:XXXXXXXX`.
    #[must_use]
    pub fn manufacturer_id(&self) -> Option<u32> {
        let hex = self.manufacturer.strip_prefix("id:").or_else(|| self.manufacturer.strip_prefix("ID:"))?;
        if hex.len() != 8 {
            return None;
        }
        u32::from_str_radix(hex, 16).ok()
    }

    /// The manufacturer id as its ASCII vendor code (`STM`, `GOOG`, `IFX`), when printable.
    #[must_use]
    pub fn manufacturer_code(&self) -> Option<String> {
        let bytes = self.manufacturer_id()?.to_be_bytes();
        let code: String = bytes.iter().filter(|b| **b != 0).map(|b| char::from(*b)).collect();
        let code = code.trim().to_owned();
        (!code.is_empty() && code.chars().all(|c| c.is_ascii_graphic())).then_some(code)
    }

    /// `tpmModel`, e.g. `ST33HTPHAHB4`.
    #[must_use]
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// `tpmVersion` (firmware version), e.g. `id:00490004`.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

/// An EK certificate that chains to a trusted CA: the proof and its claims.
#[derive(Debug, Clone)]
pub struct VerifiedEk {
    chain: VerifiedChain,
    public_key: PublicKey,
    tpm: Option<EkSubjectAltName>,
    ek_eku: bool,
}

/// Verifies an EK certificate (DER as read from TPM NV, `0xFF` padding allowed,
/// or PEM with one certificate) against `store` at time `now`, with optional
/// extra `intermediates`.
///
/// # Errors
/// [`EkCertError`] when the bytes are not one certificate, the certificate is a
/// CA, its key or subjectAltName cannot be read, or it does not chain.
pub fn verify_ek_certificate(
    cert_der_or_pem: &[u8],
    intermediates: &[Certificate],
    store: &TrustStore,
    now: SystemTime,
) -> Result<VerifiedEk, EkCertError> {
    let cert = parse_one_certificate(cert_der_or_pem)?;
    if cert.is_ca() {
        return Err(EkCertError::IsCa { subject: cert.describe() });
    }
    let public_key = cert.public_key()?;
    let tpm = tpm_identity(&cert)?;
    let ek_eku = has_ek_eku(&cert);
    let chain = store.verify(&cert, intermediates, now)?;
    Ok(VerifiedEk { chain, public_key, tpm, ek_eku })
}

impl VerifiedEk {
    /// The EK certificate.
    #[must_use]
    pub fn certificate(&self) -> &Certificate {
        self.chain.leaf()
    }

    /// The verified path to the trust anchor.
    #[must_use]
    pub fn chain(&self) -> &VerifiedChain {
        &self.chain
    }

    /// The subject (usually empty for EK certificates).
    #[must_use]
    pub fn subject(&self) -> &str {
        self.certificate().subject()
    }

    /// The issuing CA's name.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.certificate().issuer()
    }

    /// Serial number content octets.
    #[must_use]
    pub fn serial(&self) -> &[u8] {
        self.certificate().serial()
    }

    /// notBefore, seconds since the Unix epoch.
    #[must_use]
    pub fn not_before_unix(&self) -> i64 {
        self.certificate().not_before_unix()
    }

    /// notAfter, seconds since the Unix epoch.
    #[must_use]
    pub fn not_after_unix(&self) -> i64 {
        self.certificate().not_after_unix()
    }

    /// The TPM manufacturer, model and version from the subjectAltName, if present.
    #[must_use]
    pub fn tpm(&self) -> Option<&EkSubjectAltName> {
        self.tpm.as_ref()
    }

    /// Whether extKeyUsage lists `tcg-kp-EKCertificate` (absent on some EK certificates).
    #[must_use]
    pub fn has_ek_certificate_eku(&self) -> bool {
        self.ek_eku
    }

    /// The certified EK public key.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Checks that the certificate certifies `presented` (the EK public area's key).
    ///
    /// # Errors
    /// [`EkCertError::KeyMismatch`] when the keys differ.
    pub fn matches_public_key(&self, presented: &PublicKey) -> Result<(), EkCertError> {
        if self.public_key == *presented {
            return Ok(());
        }
        Err(EkCertError::KeyMismatch {
            certificate: describe_key(&self.public_key),
            presented: describe_key(presented),
        })
    }
}

fn describe_key(key: &PublicKey) -> String {
    let digest = Sha256::digest(key.to_spki_der());
    format!("{} with SPKI SHA-256 {}", key.describe(), hex::encode(digest))
}

/// The TCG attributes in the subjectAltName's directoryName(s).
fn tpm_identity(cert: &Certificate) -> Result<Option<EkSubjectAltName>, EkCertError> {
    let Some(ext) = cert.extension(SUBJECT_ALT_NAME) else { return Ok(None) };
    let bad = |reason: String| EkCertError::MalformedSan { reason };
    let (rest, san) = SubjectAlternativeName::from_der(ext.value()).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the GeneralNames".into()));
    }
    let (mut manufacturer, mut model, mut version) = (None, None, None);
    for name in &san.general_names {
        let GeneralName::DirectoryName(dn) = name else { continue };
        for attribute in dn.iter_attributes() {
            let slot = match attribute.attr_type().to_id_string().as_str() {
                OID_TPM_MANUFACTURER => &mut manufacturer,
                OID_TPM_MODEL => &mut model,
                OID_TPM_VERSION => &mut version,
                _ => continue,
            };
            let value = attribute.attr_value();
            let text = crate::x509::decode_string(value.tag(), value.data)
                .ok_or_else(|| bad(format!("TPM attribute {} is not a string", attribute.attr_type())))?;
            if slot.replace(text).is_some() {
                return Err(bad(format!("TPM attribute {} appears twice", attribute.attr_type())));
            }
        }
    }
    match manufacturer {
        Some(manufacturer) => Ok(Some(EkSubjectAltName { manufacturer, model, version })),
        None if model.is_some() || version.is_some() => {
            Err(bad("TPM model/version without tpmManufacturer".into()))
        }
        None => Ok(None),
    }
}

fn has_ek_eku(cert: &Certificate) -> bool {
    let Some(ext) = cert.extension(EXT_KEY_USAGE) else { return false };
    x509_parser::extensions::ExtendedKeyUsage::from_der(ext.value())
        .is_ok_and(|(_, eku)| eku.other.iter().any(|o| o.to_id_string() == OID_EK_CERTIFICATE_EKU))
}

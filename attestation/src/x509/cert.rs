//! One parsed X.509 certificate (RFC 5280 §4.1) that owns its DER encoding.

use std::fmt;
use std::sync::OnceLock;

use aws_lc_rs::signature::{ParsedPublicKey, VerificationAlgorithm};
use sha2::{Digest, Sha256};
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::extensions::{BasicConstraints, Extension, Extensions};
use super::framing;
use super::name::Name;
use super::signature::{self, SignatureError};
use super::spki::{self, KeyError};
use crate::crypto::KeyKind;
use crate::crypto::{PublicKey, Scheme};

/// Why bytes are not a usable certificate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The outer DER framing is wrong.
    #[error("not a DER certificate: {reason}")]
    Framing {
        /// What was wrong.
        reason: &'static str,
    },
    /// The certificate is larger than accepted.
    #[error("certificate of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Maximum accepted.
        max: usize,
    },
    /// Bytes follow the certificate.
    #[error("{extra} bytes follow the DER certificate; pass exactly one certificate (TPM NV reads: use from_tpm_nv)")]
    TrailingData {
        /// How many bytes follow.
        extra: usize,
    },
    /// A TPM NV read has something other than `0xFF` fill after the certificate.
    #[error("byte {value:#04x} at offset {offset} after the certificate is not 0xFF NV padding")]
    BadPadding {
        /// Offset of the first non-`0xFF` byte.
        offset: usize,
        /// Its value.
        value: u8,
    },
    /// The DER does not parse as an X.509 certificate.
    #[error("malformed X.509 certificate: {reason}")]
    Malformed {
        /// The parser's message.
        reason: String,
    },
    /// An extension this crate relies on is malformed.
    #[error("certificate {subject}: malformed {extension} extension")]
    MalformedExtension {
        /// The certificate.
        subject: String,
        /// The extension name.
        extension: &'static str,
    },
    /// An extension appears twice (RFC 5280 §4.2).
    #[error("certificate {subject}: extension {oid} appears more than once")]
    DuplicateExtension {
        /// The certificate.
        subject: String,
        /// The extension OID.
        oid: String,
    },
    /// A PEM block is malformed.
    #[error("PEM block {block}: {reason}")]
    Pem {
        /// 1-based index of the block.
        block: usize,
        /// What was wrong.
        reason: String,
    },
    /// A PEM block is not a certificate.
    #[error("PEM block {block} is labelled {label:?}; only CERTIFICATE blocks are accepted")]
    PemLabel {
        /// 1-based index of the block.
        block: usize,
        /// The label found.
        label: String,
    },
    /// Neither DER nor PEM with a certificate.
    #[error("no certificate found: input is neither DER (starting 0x30) nor PEM with a CERTIFICATE block")]
    NoCertificate,
    /// More certificates than the caller expects.
    #[error("expected one certificate, found {count}")]
    NotOne {
        /// How many were found.
        count: usize,
    },
}

/// A parsed certificate. It owns its DER; the fields below are read from it once.
/// Cloning copies the bytes.
#[derive(Clone)]
pub struct Certificate {
    der: Box<[u8]>,
    fingerprint: [u8; 32],
    tbs: Box<[u8]>,
    scheme: Result<Scheme, SignatureError>,
    signature: Box<[u8]>,
    spki: Box<[u8]>,
    key_kind: Result<KeyKind, KeyError>,
    serial: Box<[u8]>,
    subject: Name,
    issuer: Name,
    not_before: i64,
    not_after: i64,
    extensions: Extensions,
    /// The key parsed for aws-lc-rs for the first scheme it verified (as an issuer).
    verifier: OnceLock<(Scheme, ParsedPublicKey)>,
}

impl Certificate {
    /// Parses exactly one DER certificate (no bytes may follow).
    ///
    /// # Errors
    /// [`CertificateError`] for bad framing, trailing bytes or a malformed certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        Self::parse(framing::exact(der)?)
    }

    /// Parses a certificate read from a TPM NV index: the DER certificate may be
    /// followed by `0xFF` fill, which is dropped. Any other trailing byte is an error.
    ///
    /// # Errors
    /// [`CertificateError::BadPadding`] for non-`0xFF` trailing bytes; otherwise as [`Certificate::from_der`].
    pub fn from_tpm_nv(bytes: &[u8]) -> Result<Self, CertificateError> {
        Self::parse(framing::trim_nv_padding(bytes)?)
    }

    fn parse(der: &[u8]) -> Result<Self, CertificateError> {
        let malformed = |e: &dyn fmt::Display| CertificateError::Malformed { reason: e.to_string() };
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| malformed(&e))?;
        if !rest.is_empty() {
            return Err(CertificateError::TrailingData { extra: rest.len() });
        }
        let tbs = &cert.tbs_certificate;
        let subject = Name::from_x509(tbs.subject());
        let issuer = Name::from_x509(tbs.issuer());
        let same_algorithm = framing::signature_algorithms(der, tbs.as_ref())
            .is_some_and(|(outer, inner)| outer == inner)
            && tbs.signature == cert.signature_algorithm;
        let scheme = if same_algorithm {
            signature::parse_algorithm(&cert.signature_algorithm)
        } else {
            Err(SignatureError::AlgorithmMismatch)
        };
        let scheme = match cert.signature_value.unused_bits {
            0 => scheme,
            _ => Err(SignatureError::MalformedValue),
        };
        let describe = || describe(&subject, &issuer, tbs.raw_serial());
        let extensions = Extensions::read(tbs.extensions(), describe)?;
        Ok(Self {
            der: der.into(),
            fingerprint: Sha256::digest(der).into(),
            tbs: tbs.as_ref().into(),
            scheme,
            signature: cert.signature_value.data.as_ref().into(),
            spki: tbs.subject_pki.raw.into(),
            key_kind: spki::key_kind(&tbs.subject_pki),
            serial: tbs.raw_serial().into(),
            subject,
            issuer,
            not_before: tbs.validity.not_before.timestamp(),
            not_after: tbs.validity.not_after.timestamp(),
            extensions,
            verifier: OnceLock::new(),
        })
    }

    /// The DER encoding, exactly as received (without NV padding).
    #[must_use]
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER encoding.
    #[must_use]
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// The subject as text (`C=US, O=..., CN=...`); empty for TCG EK certificates
    /// whose identity is in the subjectAltName.
    #[must_use]
    pub fn subject(&self) -> &str {
        self.subject.display()
    }

    /// The issuer as text.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.issuer.display()
    }

    /// The subject Name DER as received.
    #[must_use]
    pub fn subject_der(&self) -> &[u8] {
        self.subject.raw()
    }

    /// The issuer Name DER as received.
    #[must_use]
    pub fn issuer_der(&self) -> &[u8] {
        self.issuer.raw()
    }

    /// The serial number's INTEGER content octets (big-endian, as encoded).
    #[must_use]
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// notBefore, seconds since the Unix epoch.
    #[must_use]
    pub fn not_before_unix(&self) -> i64 {
        self.not_before
    }

    /// notAfter, seconds since the Unix epoch.
    #[must_use]
    pub fn not_after_unix(&self) -> i64 {
        self.not_after
    }

    /// Whether basicConstraints is present with cA TRUE.
    #[must_use]
    pub fn is_ca(&self) -> bool {
        self.extensions.basic_constraints().is_some_and(|bc| bc.ca)
    }

    /// Whether subject and issuer names match (self-issued, RFC 5280 §6.1).
    #[must_use]
    pub fn is_self_issued(&self) -> bool {
        self.subject.key() == self.issuer.key()
    }

    /// The DER SubjectPublicKeyInfo.
    #[must_use]
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The subject public key in neutral form.
    ///
    /// # Errors
    /// [`KeyError`] for keys other than RSA and EC P-256/P-384.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        spki::spki_public_key(&self.spki)
    }

    /// The signature scheme, or why it cannot be verified.
    ///
    /// # Errors
    /// [`SignatureError`] for unsupported algorithms or parameters.
    pub fn signature_scheme(&self) -> Result<Scheme, SignatureError> {
        self.scheme.clone()
    }

    /// The DER tbsCertificate, exactly as received.
    #[must_use]
    pub fn tbs_der(&self) -> &[u8] {
        &self.tbs
    }

    /// Every extension, in certificate order.
    #[must_use]
    pub fn extensions(&self) -> &[Extension] {
        self.extensions.all()
    }

    /// The extension with dotted OID `oid`.
    #[must_use]
    pub fn extension(&self, oid: &str) -> Option<&Extension> {
        self.extensions.all().iter().find(|e| e.oid() == oid)
    }

    /// A critical extension not in [`super::ACCEPTED_CRITICAL_EXTENSIONS`], if any.
    #[must_use]
    pub fn unhandled_critical_extension(&self) -> Option<&str> {
        self.extensions.unhandled_critical()
    }

    /// Checks this certificate's signature with `issuer`'s public key, over the
    /// tbsCertificate bytes as received. Names and validity are not checked.
    ///
    /// # Errors
    /// [`SignatureError`] when the algorithm is unsupported, does not fit the
    /// issuer's key, or the signature does not verify.
    pub fn verify_issued_by(&self, issuer: &Certificate) -> Result<(), SignatureError> {
        let scheme = self.scheme.clone()?;
        let kind = issuer.key_kind.clone()?;
        let alg = signature::verification_algorithm(scheme, kind)?;
        issuer.verify_with_key(scheme, alg, &self.tbs, &self.signature)
    }

    /// Checks a signature made by this certificate's own subject key over `message`
    /// (an SEV-SNP report signed by a VCEK), reusing the key parsed for aws-lc-rs.
    /// `signature` is in aws-lc-rs's form: DER `Ecdsa-Sig-Value` for ECDSA.
    pub(crate) fn verify_signed_by_subject(
        &self,
        scheme: Scheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let kind = self.key_kind.clone()?;
        let alg = signature::verification_algorithm(scheme, kind)?;
        self.verify_with_key(scheme, alg, message, signature)
    }

    fn verify_with_key(
        &self,
        scheme: Scheme,
        alg: &'static dyn VerificationAlgorithm,
        message: &[u8],
        sig: &[u8],
    ) -> Result<(), SignatureError> {
        if let Some((cached, key)) = self.verifier.get() {
            if *cached == scheme {
                return key.verify_sig(message, sig).map_err(|_| SignatureError::BadSignature);
            }
        }
        let key = ParsedPublicKey::new(alg, &self.spki[..])
            .map_err(|_| KeyError::Malformed { reason: "key rejected by aws-lc-rs" })?;
        let result = key.verify_sig(message, sig).map_err(|_| SignatureError::BadSignature);
        // The first scheme an issuer verifies keeps its parsed key; a race only re-parses.
        let _ = self.verifier.set((scheme, key));
        result
    }

    /// A short identification for messages: the subject, or for an empty
    /// subject the serial number and issuer.
    #[must_use]
    pub fn describe(&self) -> String {
        describe(&self.subject, &self.issuer, &self.serial)
    }

    /// The subject name in the normalised form names are matched by (RFC 5280 §7.1).
    pub(crate) fn subject_key(&self) -> &[u8] {
        self.subject.key()
    }

    /// The issuer name in the normalised form names are matched by.
    pub(crate) fn issuer_key(&self) -> &[u8] {
        self.issuer.key()
    }

    pub(super) fn basic_constraints(&self) -> Option<BasicConstraints> {
        self.extensions.basic_constraints()
    }

    /// Whether keyUsage allows keyCertSign; `None` when keyUsage is absent.
    pub(super) fn may_sign_certificates(&self) -> Option<bool> {
        self.extensions.may_sign_certificates()
    }

    pub(super) fn subject_key_id(&self) -> Option<&[u8]> {
        self.extensions.subject_key_id()
    }

    pub(super) fn authority_key_id(&self) -> Option<&[u8]> {
        self.extensions.authority_key_id()
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject.display())
            .field("issuer", &self.issuer.display())
            .field("serial", &hex::encode(&self.serial))
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

fn describe(subject: &Name, issuer: &Name, serial: &[u8]) -> String {
    if subject.is_empty() {
        format!("(empty subject, serial {} from {})", hex::encode(serial), issuer.display())
    } else {
        format!("\"{}\"", subject.display())
    }
}

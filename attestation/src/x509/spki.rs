//! SubjectPublicKeyInfo (RFC 5280 §4.1.2.7): RSA keys (RFC 8017 §A.1.1,
//! RFC 3279 §2.3.1) and EC keys on named curves (RFC 5480 §2).

use thiserror::Error;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::crypto::{CryptoError, KeyKind, PublicKey, SigningCurve};
use crate::tpm::alg::EccCurve;

/// Why a SubjectPublicKeyInfo could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The DER does not parse as a SubjectPublicKeyInfo.
    #[error("malformed SubjectPublicKeyInfo: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The key algorithm is not RSA or EC.
    #[error("public key algorithm {oid} is not supported (only rsaEncryption and id-ecPublicKey)")]
    UnsupportedAlgorithm {
        /// The algorithm OID.
        oid: String,
    },
    /// The PEM text does not hold exactly one `PUBLIC KEY` block.
    #[error("PEM public key: {reason}")]
    Pem {
        /// What was wrong.
        reason: String,
    },
    /// The EC key is on a curve this use does not support.
    #[error("EC curve {curve} is not supported here (only NIST P-256 and P-384)")]
    UnsupportedCurve {
        /// The curve OID or name.
        curve: String,
    },
    /// The EC point is compressed or has the wrong size for its curve.
    #[error("EC point of {len} bytes is not an uncompressed point (04 || x || y, {expected} bytes)")]
    BadPoint {
        /// Length found.
        len: usize,
        /// Length the curve requires.
        expected: usize,
    },
    /// The RSA public exponent does not fit in 32 bits.
    #[error("RSA public exponent is longer than 4 bytes")]
    ExponentTooLarge,
    /// The key is below the minimum size accepted for signatures.
    #[error("RSA-{bits} key is too small; at least RSA-2048 is required")]
    RsaTooSmall {
        /// Modulus size in bits.
        bits: usize,
    },
    /// The key components are not a usable key.
    #[error("invalid key: {0}")]
    Invalid(#[from] CryptoError),
}

const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// Smallest RSA modulus accepted for certificate signatures.
const MIN_RSA_BITS: usize = 2048;

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const P521: &str = "1.3.132.0.35";

/// The neutral [`PublicKey`] of a DER SubjectPublicKeyInfo: RSA (any size, the
/// modulus without leading zeros) or EC on P-256/P-384 (uncompressed point).
///
/// # Errors
/// [`KeyError`] for malformed DER, other algorithms or curves, and compressed points.
pub fn spki_public_key(spki_der: &[u8]) -> Result<PublicKey, KeyError> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|_| KeyError::Malformed { reason: "not a DER SubjectPublicKeyInfo" })?;
    if !rest.is_empty() {
        return Err(KeyError::Malformed { reason: "trailing bytes after the SubjectPublicKeyInfo" });
    }
    public_key(&spki)
}

/// [`spki_public_key`] of the one `-----BEGIN PUBLIC KEY-----` block in `pem`
/// (text around the block is ignored), as `openssl pkey -pubout` writes.
///
/// # Errors
/// [`KeyError::Pem`] unless there is exactly one well-formed `PUBLIC KEY` block;
/// otherwise as [`spki_public_key`].
pub fn spki_public_key_pem(pem: &[u8]) -> Result<PublicKey, KeyError> {
    let der =
        crate::pem::decode_one(pem, PUBLIC_KEY_LABEL).map_err(|e| KeyError::Pem { reason: e.to_string() })?;
    spki_public_key(&der)
}

fn public_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, KeyError> {
    let bits = key_bits(spki)?;
    match spki.algorithm.algorithm.to_id_string().as_str() {
        RSA_ENCRYPTION => {
            let (modulus, exponent) = rsa_components(bits)?;
            Ok(PublicKey::rsa(modulus, exponent)?)
        }
        EC_PUBLIC_KEY => {
            let curve = match named_curve(spki)?.as_str() {
                P256 => EccCurve::NistP256,
                P384 => EccCurve::NistP384,
                other => return Err(KeyError::UnsupportedCurve { curve: other.to_owned() }),
            };
            let (x, y) = split_point(bits, curve.coordinate_size())?;
            Ok(PublicKey::ecc(curve, x, y)?)
        }
        other => Err(KeyError::UnsupportedAlgorithm { oid: other.to_owned() }),
    }
}

/// The key type of a certificate's SubjectPublicKeyInfo, for verifying what it signed.
pub(super) fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyKind, KeyError> {
    let bits = key_bits(spki)?;
    match spki.algorithm.algorithm.to_id_string().as_str() {
        RSA_ENCRYPTION | RSASSA_PSS => {
            let (modulus, _) = rsa_components(bits)?;
            let start = modulus.iter().position(|b| *b != 0).unwrap_or(modulus.len());
            let significant = modulus.get(start..).unwrap_or_default();
            let leading = significant.first().map_or(8, |b| b.leading_zeros());
            let size = (significant.len() * 8).saturating_sub(usize::try_from(leading).unwrap_or(8));
            if size < MIN_RSA_BITS {
                return Err(KeyError::RsaTooSmall { bits: size });
            }
            Ok(KeyKind::Rsa)
        }
        EC_PUBLIC_KEY => {
            let (curve, size) = match named_curve(spki)?.as_str() {
                P256 => (SigningCurve::P256, 32),
                P384 => (SigningCurve::P384, 48),
                P521 => (SigningCurve::P521, 66),
                other => return Err(KeyError::UnsupportedCurve { curve: other.to_owned() }),
            };
            split_point(bits, size)?;
            Ok(KeyKind::Ec(curve))
        }
        other => Err(KeyError::UnsupportedAlgorithm { oid: other.to_owned() }),
    }
}

fn key_bits<'a>(spki: &'a SubjectPublicKeyInfo<'_>) -> Result<&'a [u8], KeyError> {
    if spki.subject_public_key.unused_bits != 0 {
        return Err(KeyError::Malformed { reason: "subjectPublicKey BIT STRING has unused bits" });
    }
    Ok(&spki.subject_public_key.data)
}

fn rsa_components(bits: &[u8]) -> Result<(&[u8], u32), KeyError> {
    let (rest, key) =
        RSAPublicKey::from_der(bits).map_err(|_| KeyError::Malformed { reason: "not a DER RSAPublicKey" })?;
    if !rest.is_empty() {
        return Err(KeyError::Malformed { reason: "trailing bytes after the RSAPublicKey" });
    }
    let start = key.exponent.iter().position(|b| *b != 0).unwrap_or(key.exponent.len());
    let exponent = key.exponent.get(start..).unwrap_or_default();
    if exponent.len() > 4 {
        return Err(KeyError::ExponentTooLarge);
    }
    let exponent = exponent.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    Ok((key.modulus, exponent))
}

fn named_curve(spki: &SubjectPublicKeyInfo<'_>) -> Result<String, KeyError> {
    let params = spki
        .algorithm
        .parameters
        .as_ref()
        .ok_or(KeyError::Malformed { reason: "id-ecPublicKey without curve parameters" })?;
    let oid =
        params.as_oid().map_err(|_| KeyError::UnsupportedCurve { curve: "explicit parameters".into() })?;
    Ok(oid.to_id_string())
}

fn split_point(point: &[u8], size: usize) -> Result<(&[u8], &[u8]), KeyError> {
    let expected = 1 + 2 * size;
    match point.split_first() {
        Some((0x04, coordinates)) if point.len() == expected => Ok(coordinates.split_at(size)),
        _ => Err(KeyError::BadPoint { len: point.len(), expected }),
    }
}

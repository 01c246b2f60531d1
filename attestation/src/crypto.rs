//! Public keys and signature checks on aws-lc-rs, the crate's one crypto backend.
//!
//! Keys come from TPM public areas or certificates in one neutral form, so the
//! comparison "the EK certificate's key is this EK" is plain equality.

use aws_lc_rs::signature::{self as lc, UnparsedPublicKey, VerificationAlgorithm};
use serde::Serialize;
use thiserror::Error;

use crate::der;
use crate::tpm::alg::{EccCurve, HashAlg};

/// Errors from signature checks and key handling.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The signature does not verify with the key.
    #[error("signature does not verify with the {key} key")]
    BadSignature {
        /// Short description of the key ("RSA-2048", "ECC P-256").
        key: String,
    },
    /// The scheme and hash are not supported with this key.
    #[error("{scheme} with {hash} is not supported for {key} keys")]
    Unsupported {
        /// The signature scheme.
        scheme: &'static str,
        /// The hash algorithm.
        hash: HashAlg,
        /// The key description.
        key: String,
    },
    /// The signature's scheme does not fit the key type.
    #[error("a {scheme} signature cannot come from a {key} key")]
    SchemeKeyMismatch {
        /// The signature scheme.
        scheme: &'static str,
        /// The key description.
        key: String,
    },
    /// The key material is unusable.
    #[error("invalid public key: {0}")]
    BadKey(String),
}

/// A public key in a neutral form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PublicKey {
    /// RSA: big-endian modulus without leading zero bytes, and the public exponent.
    Rsa {
        /// Modulus, big-endian, no leading zeros.
        #[serde(serialize_with = "crate::serde_hex::bytes")]
        modulus: Vec<u8>,
        /// Public exponent.
        exponent: u32,
    },
    /// ECC: the curve and the affine coordinates, each exactly the curve's coordinate size.
    Ecc {
        /// The curve.
        curve: EccCurve,
        /// X coordinate, big-endian, fixed size.
        #[serde(serialize_with = "crate::serde_hex::bytes")]
        x: Vec<u8>,
        /// Y coordinate, big-endian, fixed size.
        #[serde(serialize_with = "crate::serde_hex::bytes")]
        y: Vec<u8>,
    },
}

/// A signature scheme with its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", content = "hash", rename_all = "snake_case")]
pub enum Scheme {
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1(HashAlg),
    /// RSASSA-PSS with salt length equal to the hash length.
    RsaPss(HashAlg),
    /// ECDSA.
    Ecdsa(HashAlg),
}

impl Scheme {
    /// Short name of the scheme.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::RsaPkcs1(_) => "RSASSA-PKCS1-v1_5",
            Self::RsaPss(_) => "RSASSA-PSS",
            Self::Ecdsa(_) => "ECDSA",
        }
    }

    /// The hash algorithm.
    #[must_use]
    pub fn hash(self) -> HashAlg {
        match self {
            Self::RsaPkcs1(h) | Self::RsaPss(h) | Self::Ecdsa(h) => h,
        }
    }
}

/// Signature bytes as they travel: one RSA block, or ECDSA's `r` and `s` integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureValue<'a> {
    /// RSA signature block.
    Rsa(&'a [u8]),
    /// ECDSA `r` and `s`, big-endian unsigned.
    Ecdsa {
        /// `r`.
        r: &'a [u8],
        /// `s`.
        s: &'a [u8],
    },
}

impl PublicKey {
    /// Builds an RSA key, normalising the modulus (leading zeros dropped).
    ///
    /// # Errors
    /// [`CryptoError::BadKey`] for an empty modulus or exponent below 3.
    pub fn rsa(modulus: &[u8], exponent: u32) -> Result<Self, CryptoError> {
        let start = modulus.iter().position(|b| *b != 0).unwrap_or(modulus.len());
        let modulus = modulus.get(start..).unwrap_or_default().to_vec();
        if modulus.is_empty() || exponent < 3 || exponent % 2 == 0 {
            return Err(CryptoError::BadKey("RSA modulus empty or exponent invalid".into()));
        }
        Ok(Self::Rsa { modulus, exponent })
    }

    /// Builds an ECC key, left-padding coordinates to the curve's size.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`] when a coordinate is longer than the curve allows.
    pub fn ecc(curve: EccCurve, x: &[u8], y: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self::Ecc { curve, x: fixed(x, curve.coordinate_size())?, y: fixed(y, curve.coordinate_size())? })
    }

    /// Short human description ("RSA-2048", "ECC P-384").
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Rsa { modulus, .. } => format!("RSA-{}", modulus.len() * 8),
            Self::Ecc { curve: EccCurve::NistP256, .. } => "ECC P-256".into(),
            Self::Ecc { curve: EccCurve::NistP384, .. } => "ECC P-384".into(),
        }
    }

    /// Uncompressed SEC1 point `04 || x || y` (ECC keys only).
    #[must_use]
    pub fn sec1_uncompressed(&self) -> Option<Vec<u8>> {
        match self {
            Self::Ecc { x, y, .. } => Some([&[0x04][..], x, y].concat()),
            Self::Rsa { .. } => None,
        }
    }

    /// DER `SubjectPublicKeyInfo` of the key.
    #[must_use]
    pub fn to_spki_der(&self) -> Vec<u8> {
        match self {
            Self::Rsa { modulus, exponent } => {
                let rsa_key = rsa_public_key_der(modulus, *exponent);
                der::sequence(&[
                    der::sequence(&[der::oid(OID_RSA_ENCRYPTION), vec![0x05, 0x00]]),
                    der::bit_string(&rsa_key),
                ])
            }
            Self::Ecc { curve, .. } => {
                let curve_oid = match curve {
                    EccCurve::NistP256 => OID_P256,
                    EccCurve::NistP384 => OID_P384,
                };
                let point = self.sec1_uncompressed().unwrap_or_default();
                der::sequence(&[
                    der::sequence(&[der::oid(OID_EC_PUBLIC_KEY), der::oid(curve_oid)]),
                    der::bit_string(&point),
                ])
            }
        }
    }

    /// The cheapest encoding aws-lc-rs parses for verification: PKCS#1 `RSAPublicKey`
    /// for RSA, the uncompressed SEC1 point for ECC (cheaper than a full SPKI).
    fn verification_key_bytes(&self) -> Vec<u8> {
        match self {
            Self::Rsa { modulus, exponent } => self::rsa_public_key_der(modulus, *exponent),
            Self::Ecc { .. } => self.sec1_uncompressed().unwrap_or_default(),
        }
    }

    /// The key type, which picks the verification algorithm.
    #[must_use]
    pub(crate) fn kind(&self) -> KeyKind {
        match self {
            Self::Rsa { .. } => KeyKind::Rsa,
            Self::Ecc { curve: EccCurve::NistP256, .. } => KeyKind::Ec(SigningCurve::P256),
            Self::Ecc { curve: EccCurve::NistP384, .. } => KeyKind::Ec(SigningCurve::P384),
        }
    }

    /// Checks `signature` over `message` (hashed here with the scheme's hash).
    ///
    /// # Errors
    /// [`CryptoError::BadSignature`] when it does not verify; other variants when the
    /// scheme does not fit the key or is not supported.
    pub fn verify(
        &self,
        scheme: Scheme,
        message: &[u8],
        signature: &SignatureValue<'_>,
    ) -> Result<(), CryptoError> {
        let sig = match (self, signature) {
            (Self::Rsa { .. }, SignatureValue::Rsa(sig)) if !matches!(scheme, Scheme::Ecdsa(_)) => {
                sig.to_vec()
            }
            (Self::Ecc { .. }, SignatureValue::Ecdsa { r, s }) if matches!(scheme, Scheme::Ecdsa(_)) => {
                der::ecdsa_signature(r, s)
            }
            _ => return Err(CryptoError::SchemeKeyMismatch { scheme: scheme.name(), key: self.describe() }),
        };
        let alg = verification_algorithm(scheme, self.kind()).ok_or_else(|| CryptoError::Unsupported {
            scheme: scheme.name(),
            hash: scheme.hash(),
            key: self.describe(),
        })?;
        UnparsedPublicKey::new(alg, self.verification_key_bytes())
            .verify(message, &sig)
            .map_err(|_| CryptoError::BadSignature { key: self.describe() })
    }
}

/// Curves a signing key may use (P-521 appears only among CA certificates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigningCurve {
    P256,
    P384,
    P521,
}

/// Key type of a signer, which picks the verification algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    Ec(SigningCurve),
}

/// The one table from (scheme, key type) to the aws-lc-rs algorithm, for TPM structures
/// and certificates alike: RSA keys of 2048 bits and more, RSA-PSS with salt length equal
/// to the hash length. `None` when the pair is not supported.
pub(crate) fn verification_algorithm(
    scheme: Scheme,
    key: KeyKind,
) -> Option<&'static dyn VerificationAlgorithm> {
    use HashAlg::{Sha1, Sha256, Sha384, Sha512};
    use SigningCurve::{P256, P384, P521};
    Some(match (scheme, key) {
        (Scheme::RsaPkcs1(Sha1), KeyKind::Rsa) => &lc::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (Scheme::RsaPkcs1(Sha256), KeyKind::Rsa) => &lc::RSA_PKCS1_2048_8192_SHA256,
        (Scheme::RsaPkcs1(Sha384), KeyKind::Rsa) => &lc::RSA_PKCS1_2048_8192_SHA384,
        (Scheme::RsaPkcs1(Sha512), KeyKind::Rsa) => &lc::RSA_PKCS1_2048_8192_SHA512,
        (Scheme::RsaPss(Sha256), KeyKind::Rsa) => &lc::RSA_PSS_2048_8192_SHA256,
        (Scheme::RsaPss(Sha384), KeyKind::Rsa) => &lc::RSA_PSS_2048_8192_SHA384,
        (Scheme::RsaPss(Sha512), KeyKind::Rsa) => &lc::RSA_PSS_2048_8192_SHA512,
        (Scheme::Ecdsa(Sha1), KeyKind::Ec(P256)) => &lc::ECDSA_P256_SHA1_ASN1,
        (Scheme::Ecdsa(Sha256), KeyKind::Ec(P256)) => &lc::ECDSA_P256_SHA256_ASN1,
        (Scheme::Ecdsa(Sha384), KeyKind::Ec(P256)) => &lc::ECDSA_P256_SHA384_ASN1,
        (Scheme::Ecdsa(Sha512), KeyKind::Ec(P256)) => &lc::ECDSA_P256_SHA512_ASN1,
        (Scheme::Ecdsa(Sha256), KeyKind::Ec(P384)) => &lc::ECDSA_P384_SHA256_ASN1,
        (Scheme::Ecdsa(Sha384), KeyKind::Ec(P384)) => &lc::ECDSA_P384_SHA384_ASN1,
        (Scheme::Ecdsa(Sha512), KeyKind::Ec(P384)) => &lc::ECDSA_P384_SHA512_ASN1,
        (Scheme::Ecdsa(Sha256), KeyKind::Ec(P521)) => &lc::ECDSA_P521_SHA256_ASN1,
        (Scheme::Ecdsa(Sha384), KeyKind::Ec(P521)) => &lc::ECDSA_P521_SHA384_ASN1,
        (Scheme::Ecdsa(Sha512), KeyKind::Ec(P521)) => &lc::ECDSA_P521_SHA512_ASN1,
        _ => return None,
    })
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key_der(modulus: &[u8], exponent: u32) -> Vec<u8> {
    der::sequence(&[der::unsigned_integer(modulus), der::unsigned_integer(&exponent.to_be_bytes())])
}

fn fixed(coordinate: &[u8], size: usize) -> Result<Vec<u8>, CryptoError> {
    let start = coordinate.iter().position(|b| *b != 0).unwrap_or(coordinate.len());
    let trimmed = coordinate.get(start..).unwrap_or_default();
    if trimmed.len() > size {
        return Err(CryptoError::BadKey(format!(
            "coordinate of {} bytes, curve allows {size}",
            trimmed.len()
        )));
    }
    let mut out = vec![0u8; size - trimmed.len()];
    out.extend_from_slice(trimmed);
    Ok(out)
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    #[test]
    fn ecdsa_verifies_and_rejects_flipped_bits() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let key = PublicKey::ecc(EccCurve::NistP256, &point[1..33], &point[33..]).unwrap();
        let sig = pair.sign(&rng, b"hello").unwrap();
        let (r, s) = sig.as_ref().split_at(32);
        let value = SignatureValue::Ecdsa { r, s };
        key.verify(Scheme::Ecdsa(HashAlg::Sha256), b"hello", &value).unwrap();
        assert!(matches!(
            key.verify(Scheme::Ecdsa(HashAlg::Sha256), b"hellp", &value),
            Err(CryptoError::BadSignature { .. })
        ));
        assert!(matches!(
            key.verify(Scheme::RsaPkcs1(HashAlg::Sha256), b"hello", &value),
            Err(CryptoError::SchemeKeyMismatch { .. })
        ));
        let spki = key.to_spki_der();
        assert_eq!(spki.len(), 91, "P-256 SPKI is 91 bytes");
    }

    #[test]
    fn rsa_normalises_modulus() {
        let a = PublicKey::rsa(&[0, 0, 0xc1, 2, 3], 65537).unwrap();
        let b = PublicKey::rsa(&[0xc1, 2, 3], 65537).unwrap();
        assert_eq!(a, b);
        assert!(PublicKey::rsa(&[1, 2], 2).is_err());
    }
}

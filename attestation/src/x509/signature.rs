//! Certificate signature algorithms: RSASSA-PKCS1-v1_5 with SHA-1/256/384/512
//! (RFC 4055 §5), RSASSA-PSS with SHA-256/384/512 (RFC 4055 §3.1), ECDSA with
//! SHA-256/384/512 on P-256/P-384/P-521 (RFC 5758 §3.2), checked with aws-lc-rs.

use aws_lc_rs::signature::VerificationAlgorithm;
use thiserror::Error;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::AlgorithmIdentifier;

use super::spki::KeyError;
use crate::crypto::{self, KeyKind, Scheme, SigningCurve};
use crate::tpm::alg::HashAlg;

/// Why a certificate signature could not be checked or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature algorithm OID is not one this module verifies.
    #[error("signature algorithm {oid} is not supported (RSA PKCS#1 v1.5, RSA-PSS or ECDSA with SHA-2)")]
    UnsupportedAlgorithm {
        /// The algorithm OID.
        oid: String,
    },
    /// The algorithm parameters are malformed or not supported.
    #[error("signature algorithm parameters: {reason}")]
    BadParameters {
        /// What was wrong.
        reason: String,
    },
    /// The TBS `signature` field differs from the outer `signatureAlgorithm`.
    #[error("tbsCertificate.signature differs from signatureAlgorithm (RFC 5280 §4.1.1.2)")]
    AlgorithmMismatch,
    /// The signature BIT STRING has unused bits.
    #[error("signatureValue BIT STRING has unused bits")]
    MalformedValue,
    /// The issuer's key cannot make this kind of signature.
    #[error("{scheme} signature cannot be made by the issuer's {key} key")]
    KeyMismatch {
        /// The signature scheme.
        scheme: &'static str,
        /// The issuer key type.
        key: &'static str,
    },
    /// The issuer's key is unusable.
    #[error("issuer key: {0}")]
    IssuerKey(#[from] KeyError),
    /// The signature does not verify with the issuer's key.
    #[error("signature does not verify with the issuer's public key")]
    BadSignature,
}

const SHA1_RSA: &str = "1.2.840.113549.1.1.5";
const SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const SHA384_RSA: &str = "1.2.840.113549.1.1.12";
const SHA512_RSA: &str = "1.2.840.113549.1.1.13";
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const MGF1: &str = "1.2.840.113549.1.1.8";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
const SHA1: &str = "1.3.14.3.2.26";
const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const SHA384: &str = "2.16.840.1.101.3.4.2.2";
const SHA512: &str = "2.16.840.1.101.3.4.2.3";

/// The scheme an AlgorithmIdentifier names. RSA-PSS is accepted only with MGF1
/// over the same hash, a salt as long as the hash and trailer field 1 — the only
/// parameters aws-lc-rs verifies with (AMD uses SHA-384, MGF1-SHA-384, salt 48).
pub(super) fn parse_algorithm(alg: &AlgorithmIdentifier<'_>) -> Result<Scheme, SignatureError> {
    let oid = alg.algorithm.to_id_string();
    let scheme = match oid.as_str() {
        SHA1_RSA => Scheme::RsaPkcs1(HashAlg::Sha1),
        SHA256_RSA => Scheme::RsaPkcs1(HashAlg::Sha256),
        SHA384_RSA => Scheme::RsaPkcs1(HashAlg::Sha384),
        SHA512_RSA => Scheme::RsaPkcs1(HashAlg::Sha512),
        ECDSA_SHA256 => Scheme::Ecdsa(HashAlg::Sha256),
        ECDSA_SHA384 => Scheme::Ecdsa(HashAlg::Sha384),
        ECDSA_SHA512 => Scheme::Ecdsa(HashAlg::Sha512),
        RSASSA_PSS => return pss_scheme(alg),
        _ => return Err(SignatureError::UnsupportedAlgorithm { oid }),
    };
    // RFC 4055 §5: NULL parameters for PKCS#1 v1.5; RFC 5758 §3.2: absent for
    // ECDSA. Absent or NULL is accepted for both, as OpenSSL does.
    match &alg.parameters {
        None => Ok(scheme),
        Some(p) if p.tag() == x509_parser::asn1_rs::Tag::Null && p.data.is_empty() => Ok(scheme),
        Some(_) => Err(SignatureError::BadParameters { reason: format!("{oid} takes no parameters") }),
    }
}

fn pss_scheme(alg: &AlgorithmIdentifier<'_>) -> Result<Scheme, SignatureError> {
    let bad = |reason: String| SignatureError::BadParameters { reason };
    let params = alg.parameters.as_ref().ok_or_else(|| bad("RSASSA-PSS without parameters".into()))?;
    let params = RsaSsaPssParams::try_from(params).map_err(|e| bad(format!("RSASSA-PSS-params: {e}")))?;
    let hash = hash_by_oid(&params.hash_algorithm_oid().to_id_string())
        .ok_or_else(|| bad(format!("RSA-PSS hash {} is not supported", params.hash_algorithm_oid())))?;
    if hash == HashAlg::Sha1 {
        return Err(bad("RSA-PSS with SHA-1 is not supported".into()));
    }
    let mgf = params.mask_gen_algorithm().map_err(|e| bad(format!("RSA-PSS mask generation: {e}")))?;
    if mgf.mgf.to_id_string() != MGF1 {
        return Err(bad(format!("RSA-PSS mask generation {} is not MGF1", mgf.mgf)));
    }
    if hash_by_oid(&mgf.hash.to_id_string()) != Some(hash) {
        return Err(bad(format!("RSA-PSS MGF1 hash {} differs from the message hash {hash}", mgf.hash)));
    }
    let salt = params.salt_length();
    if usize::try_from(salt).ok() != Some(hash.size()) {
        return Err(bad(format!(
            "RSA-PSS salt length {salt} is not the {hash} length {} (the only length verified)",
            hash.size()
        )));
    }
    if params.trailer_field() != 1 {
        return Err(bad(format!("RSA-PSS trailer field {} is not 1", params.trailer_field())));
    }
    Ok(Scheme::RsaPss(hash))
}

fn hash_by_oid(oid: &str) -> Option<HashAlg> {
    match oid {
        SHA1 => Some(HashAlg::Sha1),
        SHA256 => Some(HashAlg::Sha256),
        SHA384 => Some(HashAlg::Sha384),
        SHA512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// The aws-lc-rs algorithm verifying `scheme` signatures made by a `key` key, from the
/// crate's one table ([`crate::crypto::verification_algorithm`]).
pub(super) fn verification_algorithm(
    scheme: Scheme,
    key: KeyKind,
) -> Result<&'static dyn VerificationAlgorithm, SignatureError> {
    crypto::verification_algorithm(scheme, key).ok_or_else(|| {
        let key = match key {
            KeyKind::Rsa => "RSA",
            KeyKind::Ec(SigningCurve::P256) => "EC P-256",
            KeyKind::Ec(SigningCurve::P384) => "EC P-384",
            KeyKind::Ec(SigningCurve::P521) => "EC P-521",
        };
        SignatureError::KeyMismatch { scheme: scheme.name(), key }
    })
}

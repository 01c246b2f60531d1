//! Key derivation as the TPM does it (TPM 2.0 Part 1, 11.4.10): `KDFa` (SP 800-108
//! counter mode with HMAC) and `KDFe` (SP 800-56A concatenation KDF), plus the HMAC and
//! AES-CFB helpers that credential and duplication blobs use.

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use thiserror::Error;

use crate::tpm::alg::HashAlg;

/// Errors deriving keys or encrypting.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KdfError {
    /// HMAC is not available for this hash.
    #[error("HMAC with {0} is not supported")]
    UnsupportedHmac(HashAlg),
    /// Only AES-128 and AES-256 in CFB mode are supported.
    #[error("symmetric key of {0} bits is not supported (AES-128 or AES-256 CFB only)")]
    UnsupportedSymmetric(u16),
    /// The cipher refused the key.
    #[error("symmetric encryption failed")]
    Cipher,
}

fn hmac_alg(hash: HashAlg) -> Result<hmac::Algorithm, KdfError> {
    Ok(match hash {
        HashAlg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => hmac::HMAC_SHA256,
        HashAlg::Sha384 => hmac::HMAC_SHA384,
        HashAlg::Sha512 => hmac::HMAC_SHA512,
        other => return Err(KdfError::UnsupportedHmac(other)),
    })
}

/// `HMAC_hash(key, parts...)`.
///
/// # Errors
/// [`KdfError::UnsupportedHmac`] for SM3.
pub fn hmac(hash: HashAlg, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, KdfError> {
    let key = hmac::Key::new(hmac_alg(hash)?, key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    Ok(ctx.sign().as_ref().to_vec())
}

/// `KDFa(hash, key, label, contextU, contextV, bits)`; `label` without its terminating
/// zero (it is added here, as the specification requires).
///
/// # Errors
/// [`KdfError::UnsupportedHmac`] for SM3.
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, KdfError> {
    let hmac_key = hmac::Key::new(hmac_alg(hash)?, key);
    let bytes = usize::try_from(bits.div_ceil(8)).unwrap_or(0);
    let mut out = Vec::with_capacity(bytes + hash.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut ctx = hmac::Context::with_key(&hmac_key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(bytes);
    Ok(out)
}

/// `KDFe(hash, Z, label, partyUInfo, partyVInfo, bits)`; `label` without its zero.
#[must_use]
pub fn kdfe(hash: HashAlg, z: &[u8], label: &str, party_u: &[u8], party_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = usize::try_from(bits.div_ceil(8)).unwrap_or(0);
    let mut out = Vec::with_capacity(bytes + hash.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        out.extend(hash.digest(&[&counter.to_be_bytes(), z, label.as_bytes(), &[0], party_u, party_v]));
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// AES-CFB encryption with a zero IV, as TPM credential and duplication blobs use.
///
/// # Errors
/// [`KdfError::UnsupportedSymmetric`] for key sizes other than 128 and 256 bits.
pub fn aes_cfb_encrypt(key_bits: u16, key: &[u8], data: &mut [u8]) -> Result<(), KdfError> {
    let alg = match key_bits {
        128 => &AES_128,
        256 => &AES_256,
        other => return Err(KdfError::UnsupportedSymmetric(other)),
    };
    let key = UnboundCipherKey::new(alg, key).map_err(|_| KdfError::Cipher)?;
    let key = EncryptingKey::cfb128(key).map_err(|_| KdfError::Cipher)?;
    key.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from([0u8; 16])))
        .map_err(|_| KdfError::Cipher)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_truncates_and_chains_blocks() {
        let long = kdfa(HashAlg::Sha256, b"k", "STORAGE", b"u", b"v", 512).unwrap();
        assert_eq!(long.len(), 64);
        let short = kdfa(HashAlg::Sha256, b"k", "STORAGE", b"u", b"v", 128).unwrap();
        assert_eq!(short.len(), 16);
        // bits is part of the input: a shorter request is not a prefix of a longer one.
        assert_ne!(short[..], long[..16]);
        assert_ne!(kdfa(HashAlg::Sha256, b"k", "INTEGRITY", b"u", b"v", 128).unwrap(), short);
    }

    #[test]
    fn kdfe_matches_a_hand_computed_block() {
        let out = kdfe(HashAlg::Sha256, b"z", "IDENTITY", b"u", b"v", 256);
        let expected = HashAlg::Sha256.digest(&[&1u32.to_be_bytes(), b"z", b"IDENTITY\0", b"u", b"v"]);
        assert_eq!(out, expected);
    }

    #[test]
    fn cfb_rejects_unsupported_sizes() {
        let mut data = [0u8; 4];
        assert_eq!(aes_cfb_encrypt(192, &[0; 24], &mut data), Err(KdfError::UnsupportedSymmetric(192)));
        aes_cfb_encrypt(128, &[0; 16], &mut data).unwrap();
        assert_ne!(data, [0u8; 4]);
    }
}

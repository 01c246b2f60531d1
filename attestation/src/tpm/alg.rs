//! Algorithm identifiers (TPM 2.0 Part 2, Table 9 `TPM_ALG_ID`; Table 10 `TPM_ECC_CURVE`)
//! and the hash functions they name.

use std::fmt;

use serde::Serialize;
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use sm3::Sm3;

/// `TPM_ALG_ID` values this crate understands.
pub mod id {
    pub const RSA: u16 = 0x0001;
    pub const SHA1: u16 = 0x0004;
    pub const HMAC: u16 = 0x0005;
    pub const AES: u16 = 0x0006;
    pub const KEYEDHASH: u16 = 0x0008;
    pub const XOR: u16 = 0x000A;
    pub const SHA256: u16 = 0x000B;
    pub const SHA384: u16 = 0x000C;
    pub const SHA512: u16 = 0x000D;
    pub const NULL: u16 = 0x0010;
    pub const SM3_256: u16 = 0x0012;
    pub const SM4: u16 = 0x0013;
    pub const RSASSA: u16 = 0x0014;
    pub const RSAES: u16 = 0x0015;
    pub const RSAPSS: u16 = 0x0016;
    pub const OAEP: u16 = 0x0017;
    pub const ECDSA: u16 = 0x0018;
    pub const ECDH: u16 = 0x0019;
    pub const ECDAA: u16 = 0x001A;
    pub const SM2: u16 = 0x001B;
    pub const ECSCHNORR: u16 = 0x001C;
    pub const ECMQV: u16 = 0x001D;
    pub const KDF1_SP800_56A: u16 = 0x0020;
    pub const KDF2: u16 = 0x0021;
    pub const KDF1_SP800_108: u16 = 0x0022;
    pub const ECC: u16 = 0x0023;
    pub const SYMCIPHER: u16 = 0x0025;
    pub const CAMELLIA: u16 = 0x0026;
    pub const CTR: u16 = 0x0040;
    pub const OFB: u16 = 0x0041;
    pub const CBC: u16 = 0x0042;
    pub const CFB: u16 = 0x0043;
    pub const ECB: u16 = 0x0044;
}

/// A hash algorithm used for PCR banks, Names and signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HashAlg {
    /// SHA-1 (`TPM_ALG_SHA1`).
    Sha1,
    /// SHA-256 (`TPM_ALG_SHA256`).
    Sha256,
    /// SHA-384 (`TPM_ALG_SHA384`).
    Sha384,
    /// SHA-512 (`TPM_ALG_SHA512`).
    Sha512,
    /// SM3-256 (`TPM_ALG_SM3_256`).
    Sm3_256,
}

impl HashAlg {
    /// Every hash algorithm this crate knows, in `TPM_ALG_ID` order.
    pub const ALL: [HashAlg; 5] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512, Self::Sm3_256];

    /// The algorithm for a `TPM_ALG_ID`, if it is a hash this crate knows.
    #[must_use]
    pub fn from_tpm(alg: u16) -> Option<Self> {
        match alg {
            id::SHA1 => Some(Self::Sha1),
            id::SHA256 => Some(Self::Sha256),
            id::SHA384 => Some(Self::Sha384),
            id::SHA512 => Some(Self::Sha512),
            id::SM3_256 => Some(Self::Sm3_256),
            _ => None,
        }
    }

    /// The `TPM_ALG_ID` of this algorithm.
    #[must_use]
    pub fn tpm_id(self) -> u16 {
        match self {
            Self::Sha1 => id::SHA1,
            Self::Sha256 => id::SHA256,
            Self::Sha384 => id::SHA384,
            Self::Sha512 => id::SHA512,
            Self::Sm3_256 => id::SM3_256,
        }
    }

    /// Digest size in bytes.
    #[must_use]
    pub fn size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 | Self::Sm3_256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The name used on command lines and in JSON (`sha256`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
            Self::Sm3_256 => "sm3_256",
        }
    }

    /// Parses the name [`HashAlg::name`] returns.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Hashes the concatenation of `parts`.
    #[must_use]
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut hasher = D::new();
            for part in parts {
                hasher.update(part);
            }
            hasher.finalize().to_vec()
        }
        match self {
            Self::Sha1 => run::<Sha1>(parts),
            Self::Sha256 => run::<Sha256>(parts),
            Self::Sha384 => run::<Sha384>(parts),
            Self::Sha512 => run::<Sha512>(parts),
            Self::Sm3_256 => run::<Sm3>(parts),
        }
    }

    /// `PCR_Extend`: the new value `H(old || digest)`.
    #[must_use]
    pub fn extend(self, old: &[u8], digest: &[u8]) -> Vec<u8> {
        self.digest(&[old, digest])
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Elliptic curves (`TPM_ECC_CURVE`) supported for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EccCurve {
    /// NIST P-256 (`TPM_ECC_NIST_P256`).
    NistP256,
    /// NIST P-384 (`TPM_ECC_NIST_P384`).
    NistP384,
}

impl EccCurve {
    /// The curve for a `TPM_ECC_CURVE` value, if supported.
    #[must_use]
    pub fn from_tpm(curve: u16) -> Option<Self> {
        match curve {
            0x0003 => Some(Self::NistP256),
            0x0004 => Some(Self::NistP384),
            _ => None,
        }
    }

    /// The `TPM_ECC_CURVE` value.
    #[must_use]
    pub fn tpm_id(self) -> u16 {
        match self {
            Self::NistP256 => 0x0003,
            Self::NistP384 => 0x0004,
        }
    }

    /// Size of one coordinate in bytes.
    #[must_use]
    pub fn coordinate_size(self) -> usize {
        match self {
            Self::NistP256 => 32,
            Self::NistP384 => 48,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_match_digests() {
        for alg in HashAlg::ALL {
            assert_eq!(HashAlg::from_name(alg.name()), Some(alg));
            assert_eq!(HashAlg::from_tpm(alg.tpm_id()), Some(alg));
            assert_eq!(alg.digest(&[b"x"]).len(), alg.size());
        }
        assert_eq!(HashAlg::from_tpm(0x0099), None);
    }

    #[test]
    fn digest_concatenates_parts() {
        assert_eq!(HashAlg::Sha256.digest(&[b"ab", b"c"]), HashAlg::Sha256.digest(&[b"abc"]));
        assert_eq!(
            hex::encode(HashAlg::Sha256.digest(&[b"abc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

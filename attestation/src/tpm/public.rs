//! Public areas: `TPM2B_PUBLIC` / `TPMT_PUBLIC` (TPM 2.0 Part 2, Tables 225 and 226)
//! for RSA and ECC keys, their attributes (`TPMA_OBJECT`, Table 31) and Names.

use serde::Serialize;
use thiserror::Error;

use crate::codec::{CodecError, Reader, TpmWrite};
use crate::crypto::{CryptoError, PublicKey, Scheme};
use crate::tpm::alg::{id, EccCurve, HashAlg};
use crate::tpm::limits::{MAX_DIGEST, MAX_ECC_KEY_BYTES, MAX_PUBLIC, MAX_RSA_KEY_BYTES};

/// Errors parsing a public area.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublicError {
    /// Framing problem.
    #[error("public area: {0}")]
    Codec(#[from] CodecError),
    /// An algorithm this verifier does not accept here.
    #[error("public area: {field} has unsupported algorithm {alg:#06x}")]
    UnsupportedAlgorithm {
        /// The field.
        field: &'static str,
        /// The algorithm id found.
        alg: u16,
    },
    /// The RSA/ECC key values are unusable.
    #[error("public area: {0}")]
    Key(#[from] CryptoError),
}

/// `TPMA_OBJECT` bits (Part 2, Table 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ObjectAttributes(u32);

impl ObjectAttributes {
    /// `fixedTPM`.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// `stClear`.
    pub const ST_CLEAR: u32 = 1 << 2;
    /// `fixedParent`.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// `sensitiveDataOrigin`.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// `userWithAuth`.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// `adminWithPolicy`.
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// `noDA`.
    pub const NO_DA: u32 = 1 << 10;
    /// `encryptedDuplication`.
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    /// `restricted`.
    pub const RESTRICTED: u32 = 1 << 16;
    /// `decrypt`.
    pub const DECRYPT: u32 = 1 << 17;
    /// `sign` / `encrypt`.
    pub const SIGN: u32 = 1 << 18;

    /// Wraps raw bits.
    #[must_use]
    pub fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw bits.
    #[must_use]
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit in `mask` is set.
    #[must_use]
    pub fn has(self, mask: u32) -> bool {
        self.0 & mask == mask
    }

    /// Names of the bits in `mask` that are not set.
    #[must_use]
    pub fn missing(self, mask: u32) -> Vec<&'static str> {
        const NAMES: [(u32, &str); 11] = [
            (ObjectAttributes::FIXED_TPM, "fixedTPM"),
            (ObjectAttributes::ST_CLEAR, "stClear"),
            (ObjectAttributes::FIXED_PARENT, "fixedParent"),
            (ObjectAttributes::SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
            (ObjectAttributes::USER_WITH_AUTH, "userWithAuth"),
            (ObjectAttributes::ADMIN_WITH_POLICY, "adminWithPolicy"),
            (ObjectAttributes::NO_DA, "noDA"),
            (ObjectAttributes::ENCRYPTED_DUPLICATION, "encryptedDuplication"),
            (ObjectAttributes::RESTRICTED, "restricted"),
            (ObjectAttributes::DECRYPT, "decrypt"),
            (ObjectAttributes::SIGN, "sign"),
        ];
        NAMES.iter().filter(|(bit, _)| mask & bit != 0 && self.0 & bit == 0).map(|(_, n)| *n).collect()
    }
}

/// The symmetric algorithm of a storage key (`TPMT_SYM_DEF_OBJECT`, Table 144).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SymmetricDef {
    /// Algorithm (`TPM_ALG_AES`, ...), or `TPM_ALG_NULL` (then the other fields are 0).
    pub algorithm: u16,
    /// Key size in bits.
    pub key_bits: u16,
    /// Block mode (`TPM_ALG_CFB` for storage keys).
    pub mode: u16,
}

/// A parsed public area. Holds the exact bytes of the `TPMT_PUBLIC` it came from, which
/// its Name is computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    raw: Vec<u8>,
    name_alg: HashAlg,
    attributes: ObjectAttributes,
    auth_policy: Vec<u8>,
    symmetric: SymmetricDef,
    scheme: Option<Scheme>,
    key: PublicKey,
}

impl Public {
    /// Parses a `TPM2B_PUBLIC` (size-prefixed), as `tpm2_createak -u` writes it.
    ///
    /// # Errors
    /// Any framing or algorithm problem, naming the field.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, PublicError> {
        let mut r = Reader::new(bytes);
        let inner = r.tpm2b(MAX_PUBLIC, "TPM2B_PUBLIC.size")?;
        r.expect_end("TPM2B_PUBLIC")?;
        Self::from_tpmt(inner)
    }

    /// Parses a bare `TPMT_PUBLIC`.
    ///
    /// # Errors
    /// Any framing or algorithm problem, naming the field.
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, PublicError> {
        let mut r = Reader::new(bytes);
        let public = Self::read(&mut r)?;
        r.expect_end("TPMT_PUBLIC")?;
        Ok(public)
    }

    /// Parses a `TPMT_PUBLIC` from the reader, keeping its bytes.
    ///
    /// # Errors
    /// Any framing or algorithm problem, naming the field.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, PublicError> {
        let start = r.clone();
        let before = r.remaining();
        let key_type = r.u16_be("TPMT_PUBLIC.type")?;
        let name_alg = read_hash(r, "TPMT_PUBLIC.nameAlg")?;
        let attributes = ObjectAttributes(r.u32_be("TPMT_PUBLIC.objectAttributes")?);
        let auth_policy = r.tpm2b(MAX_DIGEST, "TPMT_PUBLIC.authPolicy")?.to_vec();
        let (symmetric, scheme, key) = match key_type {
            id::RSA => {
                let symmetric = read_symmetric(r, "TPMS_RSA_PARMS.symmetric")?;
                let scheme = read_rsa_scheme(r)?;
                let key_bits = r.u16_be("TPMS_RSA_PARMS.keyBits")?;
                let exponent = match r.u32_be("TPMS_RSA_PARMS.exponent")? {
                    0 => 65537,
                    e => e,
                };
                let modulus = r.tpm2b(MAX_RSA_KEY_BYTES, "TPMT_PUBLIC.unique.rsa")?;
                if modulus.len() * 8 != usize::from(key_bits) {
                    return Err(CodecError::BadValue {
                        field: "TPMT_PUBLIC.unique.rsa (size disagrees with keyBits)",
                        value: u64::try_from(modulus.len()).unwrap_or(u64::MAX),
                    }
                    .into());
                }
                (symmetric, scheme, PublicKey::rsa(modulus, exponent)?)
            }
            id::ECC => {
                let symmetric = read_symmetric(r, "TPMS_ECC_PARMS.symmetric")?;
                let scheme = read_ecc_scheme(r)?;
                let curve_id = r.u16_be("TPMS_ECC_PARMS.curveID")?;
                let curve = EccCurve::from_tpm(curve_id).ok_or(PublicError::UnsupportedAlgorithm {
                    field: "TPMS_ECC_PARMS.curveID",
                    alg: curve_id,
                })?;
                let kdf = r.u16_be("TPMS_ECC_PARMS.kdf.scheme")?;
                if kdf != id::NULL {
                    return Err(PublicError::UnsupportedAlgorithm { field: "TPMS_ECC_PARMS.kdf", alg: kdf });
                }
                let x = r.tpm2b(MAX_ECC_KEY_BYTES, "TPMT_PUBLIC.unique.ecc.x")?;
                let y = r.tpm2b(MAX_ECC_KEY_BYTES, "TPMT_PUBLIC.unique.ecc.y")?;
                (symmetric, scheme, PublicKey::ecc(curve, x, y)?)
            }
            other => {
                return Err(PublicError::UnsupportedAlgorithm { field: "TPMT_PUBLIC.type", alg: other });
            }
        };
        let used = before - r.remaining();
        let raw = start.clone().take(used, "TPMT_PUBLIC")?.to_vec();
        Ok(Self { raw, name_alg, attributes, auth_policy, symmetric, scheme, key })
    }

    /// The exact `TPMT_PUBLIC` bytes.
    #[must_use]
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The area as a `TPM2B_PUBLIC` (size-prefixed), as a client sends it and
    /// [`Public::from_tpm2b`] reads it.
    #[must_use]
    pub fn to_tpm2b(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + 2);
        out.put_tpm2b(&self.raw);
        out
    }

    /// The object's Name: `nameAlg || H_nameAlg(TPMT_PUBLIC)` (Part 1, 16).
    #[must_use]
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.tpm_id().to_be_bytes().to_vec();
        name.extend(self.name_alg.digest(&[&self.raw]));
        name
    }

    /// The hash algorithm of the Name.
    #[must_use]
    pub fn name_alg(&self) -> HashAlg {
        self.name_alg
    }

    /// Object attributes.
    #[must_use]
    pub fn attributes(&self) -> ObjectAttributes {
        self.attributes
    }

    /// The authorization policy digest (empty when none).
    #[must_use]
    pub fn auth_policy(&self) -> &[u8] {
        &self.auth_policy
    }

    /// The symmetric definition (storage keys such as the EK use AES-128-CFB).
    #[must_use]
    pub fn symmetric(&self) -> SymmetricDef {
        self.symmetric
    }

    /// The key's signing scheme, if the key fixes one.
    #[must_use]
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// The public key.
    #[must_use]
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
}

fn read_hash(r: &mut Reader<'_>, field: &'static str) -> Result<HashAlg, PublicError> {
    let alg = r.u16_be(field)?;
    HashAlg::from_tpm(alg).ok_or(PublicError::UnsupportedAlgorithm { field, alg })
}

fn read_symmetric(r: &mut Reader<'_>, field: &'static str) -> Result<SymmetricDef, PublicError> {
    let algorithm = r.u16_be(field)?;
    if algorithm == id::NULL {
        return Ok(SymmetricDef { algorithm, key_bits: 0, mode: 0 });
    }
    if algorithm != id::AES && algorithm != id::SM4 && algorithm != id::CAMELLIA {
        return Err(PublicError::UnsupportedAlgorithm { field, alg: algorithm });
    }
    let key_bits = r.u16_be("TPMT_SYM_DEF_OBJECT.keyBits")?;
    let mode = r.u16_be("TPMT_SYM_DEF_OBJECT.mode")?;
    Ok(SymmetricDef { algorithm, key_bits, mode })
}

fn read_rsa_scheme(r: &mut Reader<'_>) -> Result<Option<Scheme>, PublicError> {
    let field = "TPMT_RSA_SCHEME.scheme";
    let scheme = r.u16_be(field)?;
    Ok(match scheme {
        id::NULL => None,
        id::RSASSA => Some(Scheme::RsaPkcs1(read_hash(r, "TPMT_RSA_SCHEME.details.hashAlg")?)),
        id::RSAPSS => Some(Scheme::RsaPss(read_hash(r, "TPMT_RSA_SCHEME.details.hashAlg")?)),
        id::RSAES => None,
        id::OAEP => {
            read_hash(r, "TPMT_RSA_SCHEME.details.hashAlg")?;
            None
        }
        other => return Err(PublicError::UnsupportedAlgorithm { field, alg: other }),
    })
}

fn read_ecc_scheme(r: &mut Reader<'_>) -> Result<Option<Scheme>, PublicError> {
    let field = "TPMT_ECC_SCHEME.scheme";
    let scheme = r.u16_be(field)?;
    Ok(match scheme {
        id::NULL => None,
        id::ECDSA => Some(Scheme::Ecdsa(read_hash(r, "TPMT_ECC_SCHEME.details.hashAlg")?)),
        id::ECDH => {
            read_hash(r, "TPMT_ECC_SCHEME.details.hashAlg")?;
            None
        }
        other => return Err(PublicError::UnsupportedAlgorithm { field, alg: other }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keylime(file: &str) -> Vec<u8> {
        mooring_testdata::testdata(&format!("tpm/quotes/sim-keylime/{file}"))
    }

    #[test]
    fn keylime_ak_name_matches_the_name_file() {
        let ak = Public::from_tpm2b(&keylime("ak.pub")).unwrap();
        assert_eq!(ak.name(), keylime("ak.name"));
        assert!(ak.attributes().has(ObjectAttributes::RESTRICTED | ObjectAttributes::SIGN));
        assert_eq!(ak.scheme(), Some(Scheme::RsaPkcs1(HashAlg::Sha256)));
    }

    #[test]
    fn to_tpm2b_gives_back_the_bytes_read() {
        let bytes = keylime("ak.pub");
        assert_eq!(Public::from_tpm2b(&bytes).unwrap().to_tpm2b(), bytes);
    }

    #[test]
    fn keylime_ek_is_an_rsa_storage_key() {
        let ek = Public::from_tpm2b(&keylime("ek.pub")).unwrap();
        assert!(ek.attributes().has(ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT));
        assert_eq!(ek.symmetric(), SymmetricDef { algorithm: id::AES, key_bits: 128, mode: id::CFB });
        assert_eq!(ek.key().describe(), "RSA-2048");
    }

    #[test]
    fn trailing_and_truncated_bytes_are_refused() {
        let mut bytes = keylime("ak.pub");
        let tpmt = bytes[2..].to_vec();
        bytes.push(0);
        assert_eq!(
            Public::from_tpm2b(&bytes),
            Err(PublicError::Codec(CodecError::TrailingBytes { field: "TPM2B_PUBLIC", extra: 1 }))
        );
        let mut long = tpmt.clone();
        long.push(0);
        assert!(matches!(
            Public::from_tpmt(&long),
            Err(PublicError::Codec(CodecError::TrailingBytes { field: "TPMT_PUBLIC", .. }))
        ));
        assert!(matches!(
            Public::from_tpmt(&tpmt[..tpmt.len() - 1]),
            Err(PublicError::Codec(CodecError::Truncated { field: "TPMT_PUBLIC.unique.rsa", .. }))
        ));
    }

    #[test]
    fn unknown_algorithms_name_the_field() {
        let mut tpmt = keylime("ak.pub")[2..].to_vec();
        tpmt[0] = 0x00;
        tpmt[1] = 0x99;
        assert_eq!(
            Public::from_tpmt(&tpmt),
            Err(PublicError::UnsupportedAlgorithm { field: "TPMT_PUBLIC.type", alg: 0x99 })
        );
        let mut tpmt = keylime("ak.pub")[2..].to_vec();
        tpmt[3] = 0x99;
        assert_eq!(
            Public::from_tpmt(&tpmt),
            Err(PublicError::UnsupportedAlgorithm { field: "TPMT_PUBLIC.nameAlg", alg: 0x99 })
        );
    }

    /// A P-256 ECDSA signing key's `TPMT_PUBLIC` with the given curve and kdf fields.
    fn ecc_tpmt(curve: u16, kdf: u16) -> Vec<u8> {
        let mut t = Vec::new();
        for v in [id::ECC, id::SHA256] {
            t.extend_from_slice(&v.to_be_bytes());
        }
        t.extend_from_slice(&0x0005_0072u32.to_be_bytes());
        for v in [0u16, id::NULL, id::ECDSA, id::SHA256, curve, kdf, 32] {
            t.extend_from_slice(&v.to_be_bytes());
        }
        t.extend_from_slice(&[1; 32]);
        t.extend_from_slice(&32u16.to_be_bytes());
        t.extend_from_slice(&[2; 32]);
        t
    }

    #[test]
    fn ecc_curve_and_kdf_are_checked() {
        let ok = Public::from_tpmt(&ecc_tpmt(0x0003, id::NULL)).unwrap();
        assert_eq!(ok.key().describe(), "ECC P-256");
        assert_eq!(
            Public::from_tpmt(&ecc_tpmt(0x0005, id::NULL)),
            Err(PublicError::UnsupportedAlgorithm { field: "TPMS_ECC_PARMS.curveID", alg: 0x0005 })
        );
        assert!(matches!(
            Public::from_tpmt(&ecc_tpmt(0x0003, id::KDF1_SP800_108)),
            Err(PublicError::UnsupportedAlgorithm { field: "TPMS_ECC_PARMS.kdf", .. })
        ));
    }

    #[test]
    fn rsa_modulus_must_match_key_bits_and_symmetric_must_be_known() {
        let tpmt = keylime("ek.pub")[2..].to_vec();
        // TPMT_PUBLIC: type, nameAlg, attributes, authPolicy (2 + 32), symmetric
        // {alg, keyBits, mode} at 42..48, scheme at 48..50, keyBits at 50..52.
        let mut bits = tpmt.clone();
        assert_eq!(bits[50..52], [0x08, 0x00]);
        bits[50] = 0x04;
        assert!(matches!(
            Public::from_tpmt(&bits),
            Err(PublicError::Codec(CodecError::BadValue { field, .. })) if field.contains("keyBits")
        ));
        let mut sym = tpmt;
        sym[43] = 0x99;
        assert_eq!(
            Public::from_tpmt(&sym),
            Err(PublicError::UnsupportedAlgorithm { field: "TPMS_RSA_PARMS.symmetric", alg: 0x0099 })
        );
    }

    #[test]
    fn gce_ak_parses_as_tpmt() {
        let ak = mooring_testdata::testdata("tpm/quotes/gce-cos85-vtpm/nonce9009/ak_pub.tpmt_public.bin");
        let ak = Public::from_tpmt(&ak).unwrap();
        assert_eq!(ak.attributes().bits(), 0x0005_0072);
        assert_eq!(hex::encode(&ak.name()[..6]), "000bf175bdb5");
    }
}

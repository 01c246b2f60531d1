//! `TPM2_MakeCredential` in software (TPM 2.0 Part 1, 24 "Credential Protection";
//! Part 3, 12.6), so the verifier can challenge a TPM without having one.
//!
//! Only the TPM holding the EK's private key, and holding an object with the given Name,
//! can recover the secret with `TPM2_ActivateCredential`: that proves the AK and the EK
//! share one TPM.

use aws_lc_rs::agreement::{self, EphemeralPrivateKey};
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::rsa::{
    OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
    OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
};
use thiserror::Error;

use crate::codec::TpmWrite;
use crate::crypto::PublicKey;
use crate::tpm::alg::{id, EccCurve, HashAlg};
use crate::tpm::kdf::{self, KdfError};
use crate::tpm::public::{ObjectAttributes, Public};

/// Magic number tpm2-tools writes at the start of its credential files.
const TPM2_TOOLS_CREDENTIAL_MAGIC: u32 = 0xBADC_C0DE;
/// tpm2-tools credential file format version.
const TPM2_TOOLS_CREDENTIAL_VERSION: u32 = 1;

/// Why a credential could not be made for this EK.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The EK is not a restricted decryption (storage) key.
    #[error("the EK is not a restricted decryption key: missing {}", .missing.join(", "))]
    NotAStorageKey {
        /// Attribute names that are not set.
        missing: Vec<&'static str>,
    },
    /// The EK's symmetric algorithm is not AES in CFB mode.
    #[error("the EK's symmetric definition {alg:#06x}/{mode:#06x} is not AES-CFB")]
    Symmetric {
        /// Algorithm id.
        alg: u16,
        /// Mode id.
        mode: u16,
    },
    /// The secret is longer than the EK's Name digest.
    #[error("credential secret of {len} bytes exceeds the EK name digest size {max}")]
    SecretTooLong {
        /// Length given.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// Key derivation or encryption failed.
    #[error(transparent)]
    Kdf(#[from] KdfError),
    /// The EK public key was rejected by the crypto library.
    #[error("EK public key unusable: {0}")]
    Key(&'static str),
}

/// The output of MakeCredential: what the TPM's `ActivateCredential` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialChallenge {
    id_object: Vec<u8>,
    encrypted_secret: Vec<u8>,
}

impl CredentialChallenge {
    /// `TPM2B_ID_OBJECT`, marshaled with its size.
    #[must_use]
    pub fn id_object(&self) -> &[u8] {
        &self.id_object
    }

    /// `TPM2B_ENCRYPTED_SECRET`, marshaled with its size.
    #[must_use]
    pub fn encrypted_secret(&self) -> &[u8] {
        &self.encrypted_secret
    }

    /// The file `tpm2_makecredential -o` writes and `tpm2_activatecredential -i` reads:
    /// magic `0xBADCC0DE`, version 1, then the two structures.
    #[must_use]
    pub fn to_tpm2_tools_file(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.id_object.len() + self.encrypted_secret.len());
        out.put_u32(TPM2_TOOLS_CREDENTIAL_MAGIC);
        out.put_u32(TPM2_TOOLS_CREDENTIAL_VERSION);
        out.extend_from_slice(&self.id_object);
        out.extend_from_slice(&self.encrypted_secret);
        out
    }
}

/// A seed protected to the EK: the plain seed (kept by the verifier side only long enough
/// to derive keys) and the `TPM2B_ENCRYPTED_SECRET` carrying it to the TPM.
pub(crate) struct ProtectedSeed {
    pub(crate) seed: Vec<u8>,
    pub(crate) encrypted: Vec<u8>,
}

/// Checks that `ek` is a restricted AES-CFB storage key and returns its symmetric key size.
pub(crate) fn storage_key_bits(ek: &Public) -> Result<u16, CredentialError> {
    let missing = ek.attributes().missing(ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT);
    if !missing.is_empty() {
        return Err(CredentialError::NotAStorageKey { missing });
    }
    let sym = ek.symmetric();
    if sym.algorithm != id::AES || sym.mode != id::CFB {
        return Err(CredentialError::Symmetric { alg: sym.algorithm, mode: sym.mode });
    }
    Ok(sym.key_bits)
}

/// Generates a seed and protects it to `storage_key` with `label` (TPM 2.0 Part 1, 11.4.10:
/// RSA-OAEP with the label, or ECDH with an ephemeral key and `KDFe`).
pub(crate) fn protect_seed(
    storage_key: &Public,
    label: &str,
    rng: &dyn SecureRandom,
) -> Result<ProtectedSeed, CredentialError> {
    let name_alg = storage_key.name_alg();
    match storage_key.key() {
        PublicKey::Rsa { .. } => {
            let mut seed = vec![0u8; name_alg.size()];
            rng.fill(&mut seed).map_err(|_| CredentialError::Key("random generator failed"))?;
            let oaep = match name_alg {
                HashAlg::Sha1 => &OAEP_SHA1_MGF1SHA1,
                HashAlg::Sha256 => &OAEP_SHA256_MGF1SHA256,
                HashAlg::Sha384 => &OAEP_SHA384_MGF1SHA384,
                HashAlg::Sha512 => &OAEP_SHA512_MGF1SHA512,
                _ => return Err(CredentialError::Key("OAEP with this name algorithm is not supported")),
            };
            let key = PublicEncryptingKey::from_der(&storage_key.key().to_spki_der())
                .map_err(|_| CredentialError::Key("RSA key rejected"))?;
            let key =
                OaepPublicEncryptingKey::new(key).map_err(|_| CredentialError::Key("RSA key rejected"))?;
            let mut label_bytes = label.as_bytes().to_vec();
            label_bytes.push(0);
            let mut ciphertext = vec![0u8; key.ciphertext_size()];
            let written = key
                .encrypt(oaep, &seed, &mut ciphertext, Some(&label_bytes))
                .map_err(|_| CredentialError::Key("RSA-OAEP encryption failed"))?
                .len();
            ciphertext.truncate(written);
            let mut encrypted = Vec::with_capacity(ciphertext.len() + 2);
            encrypted.put_tpm2b(&ciphertext);
            Ok(ProtectedSeed { seed, encrypted })
        }
        PublicKey::Ecc { curve, x, .. } => {
            let alg = match curve {
                EccCurve::NistP256 => &agreement::ECDH_P256,
                EccCurve::NistP384 => &agreement::ECDH_P384,
            };
            let ephemeral = EphemeralPrivateKey::generate(alg, rng)
                .map_err(|_| CredentialError::Key("ECDH key generation"))?;
            let ephemeral_point = ephemeral.compute_public_key().map_err(|_| CredentialError::Key("ECDH"))?;
            let size = curve.coordinate_size();
            let point = ephemeral_point.as_ref();
            let eph_x = point.get(1..=size).ok_or(CredentialError::Key("ECDH point"))?;
            let eph_y = point.get(1 + size..).ok_or(CredentialError::Key("ECDH point"))?;
            let peer_point = storage_key.key().sec1_uncompressed().unwrap_or_default();
            let peer = agreement::UnparsedPublicKey::new(alg, peer_point);
            let z =
                agreement::agree_ephemeral(ephemeral, peer, CredentialError::Key("ECDH agreement"), |z| {
                    Ok(z.to_vec())
                })?;
            let bits = u32::try_from(name_alg.size() * 8).unwrap_or(0);
            let seed = kdf::kdfe(name_alg, &z, label, eph_x, x, bits);
            let mut point_bytes = Vec::with_capacity(4 + 2 * size);
            point_bytes.put_tpm2b(eph_x);
            point_bytes.put_tpm2b(eph_y);
            let mut encrypted = Vec::with_capacity(point_bytes.len() + 2);
            encrypted.put_tpm2b(&point_bytes);
            Ok(ProtectedSeed { seed, encrypted })
        }
    }
}

/// `MakeCredential(ek, objectName, secret)`: protects `secret` so that only the TPM
/// holding `ek` and an object named `object_name` (the AK) can recover it.
///
/// # Errors
/// [`CredentialError`] when the EK is not a usable storage key or the secret is too long.
pub fn make_credential(
    ek: &Public,
    object_name: &[u8],
    secret: &[u8],
    rng: &dyn SecureRandom,
) -> Result<CredentialChallenge, CredentialError> {
    let key_bits = storage_key_bits(ek)?;
    let name_alg = ek.name_alg();
    if secret.len() > name_alg.size() {
        return Err(CredentialError::SecretTooLong { len: secret.len(), max: name_alg.size() });
    }
    let ProtectedSeed { seed, encrypted } = protect_seed(ek, "IDENTITY", rng)?;
    let sym_key = kdf::kdfa(name_alg, &seed, "STORAGE", object_name, &[], u32::from(key_bits))?;
    let mut enc_identity = Vec::with_capacity(secret.len() + 2);
    enc_identity.put_tpm2b(secret);
    kdf::aes_cfb_encrypt(key_bits, &sym_key, &mut enc_identity)?;
    let hmac_bits = u32::try_from(name_alg.size() * 8).unwrap_or(0);
    let hmac_key = kdf::kdfa(name_alg, &seed, "INTEGRITY", &[], &[], hmac_bits)?;
    let integrity = kdf::hmac(name_alg, &hmac_key, &[&enc_identity, object_name])?;
    let mut inner = Vec::with_capacity(2 + integrity.len() + enc_identity.len());
    inner.put_tpm2b(&integrity);
    inner.extend_from_slice(&enc_identity);
    let mut id_object = Vec::with_capacity(inner.len() + 2);
    id_object.put_tpm2b(&inner);
    Ok(CredentialChallenge { id_object, encrypted_secret: encrypted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    fn ek() -> Public {
        Public::from_tpm2b(&mooring_testdata::testdata("tpm/quotes/sim-keylime/ek.pub")).unwrap()
    }

    #[test]
    fn rsa_credential_has_tpm2_tools_framing() {
        let name = [0u8; 34];
        let challenge = make_credential(&ek(), &name, &[7; 32], &SystemRandom::new()).unwrap();
        // TPM2B_ENCRYPTED_SECRET: size 256 then the OAEP block.
        assert_eq!(&challenge.encrypted_secret()[..2], &[1, 0]);
        assert_eq!(challenge.encrypted_secret().len(), 258);
        // TPM2B_ID_OBJECT: size, TPM2B hmac (2 + 32), encrypted TPM2B secret (2 + 32).
        assert_eq!(challenge.id_object().len(), 2 + 34 + 34);
        let file = challenge.to_tpm2_tools_file();
        assert_eq!(&file[..8], &[0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    }

    #[test]
    fn refuses_an_ek_whose_symmetric_mode_is_not_cfb() {
        let mut tpmt = mooring_testdata::testdata("tpm/quotes/sim-keylime/ek.pub")[2..].to_vec();
        // TPMT_PUBLIC: type, nameAlg, attributes (8 bytes), authPolicy (2 + 32), then
        // symmetric {algorithm, keyBits, mode}: mode at 46..48.
        assert_eq!(tpmt[46..48], [0x00, 0x43]);
        tpmt[47] = 0x42;
        let ek = Public::from_tpmt(&tpmt).unwrap();
        assert_eq!(
            make_credential(&ek, &[0; 34], &[1; 16], &SystemRandom::new()),
            Err(CredentialError::Symmetric { alg: id::AES, mode: id::CBC })
        );
    }

    #[test]
    fn refuses_long_secrets_and_non_storage_keys() {
        let rng = SystemRandom::new();
        assert_eq!(
            make_credential(&ek(), &[0; 34], &[0; 33], &rng),
            Err(CredentialError::SecretTooLong { len: 33, max: 32 })
        );
        let ak = Public::from_tpm2b(&mooring_testdata::testdata("tpm/quotes/sim-keylime/ak.pub")).unwrap();
        assert!(matches!(
            make_credential(&ak, &[0; 34], &[0; 16], &rng),
            Err(CredentialError::NotAStorageKey { .. })
        ));
    }
}

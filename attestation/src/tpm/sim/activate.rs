//! A software endorsement key (feature `sim`): an ECC P-256 EK whose public area has the
//! shape of the TCG default EK template L-2 (TCG EK Credential Profile 2.0, B.3.4), and
//! `TPM2_ActivateCredential` (TPM 2.0 Part 3, 12.5; Part 1, 24) computed with its private
//! key: the inverse of [`crate::tpm::credential::make_credential`]. The load generator uses
//! it to answer the broker's challenge the way a real TPM would, without one.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::cipher::{DecryptingKey, DecryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;
use thiserror::Error;

use crate::codec::{CodecError, Reader, TpmWrite};
use crate::crypto::PublicKey;
use crate::tpm::alg::id;
use crate::tpm::credential::storage_key_bits;
use crate::tpm::kdf::{self, KdfError};
use crate::tpm::limits::{MAX_DIGEST, MAX_ECC_KEY_BYTES};
use crate::tpm::public::{ObjectAttributes, Public, PublicError};

use super::SoftObject;

/// Attributes of the default EK templates: `fixedTPM`, `fixedParent`,
/// `sensitiveDataOrigin`, `adminWithPolicy`, `restricted`, `decrypt` (0x000300B2).
pub const EK_ATTRIBUTES: u32 = ObjectAttributes::FIXED_TPM
    | ObjectAttributes::FIXED_PARENT
    | ObjectAttributes::SENSITIVE_DATA_ORIGIN
    | ObjectAttributes::ADMIN_WITH_POLICY
    | ObjectAttributes::RESTRICTED
    | ObjectAttributes::DECRYPT;

/// `authPolicy` of the default EK templates: `PolicySecret(TPM_RH_ENDORSEMENT)`.
pub const EK_AUTH_POLICY: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd,
    0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// `TPM_ECC_NIST_P256`.
const TPM_ECC_NIST_P256: u16 = 0x0003;
/// P-256 coordinate size.
const P256_COORDINATE: usize = 32;
/// Largest `TPM2B_ID_OBJECT` / `TPM2B_ENCRYPTED_SECRET` this EK accepts.
const MAX_BLOB: usize = 512;

/// Why a software EK could not be made or could not activate a credential.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ActivateError {
    /// A structure is malformed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The public area could not be built.
    #[error(transparent)]
    Public(#[from] PublicError),
    /// Key derivation or the cipher failed.
    #[error(transparent)]
    Kdf(#[from] KdfError),
    /// The EK is not a usable storage key.
    #[error(transparent)]
    Credential(#[from] crate::tpm::credential::CredentialError),
    /// The crypto library refused an operation.
    #[error("EK crypto failed: {0}")]
    Crypto(&'static str),
    /// The credential's HMAC does not verify: it was made for another EK or object Name
    /// (`TPM_RC_INTEGRITY` on a real TPM).
    #[error("credential integrity check failed: made for another EK or another object Name")]
    Integrity,
}

/// An ECC P-256 endorsement key held in software.
pub type SoftEk = SoftObject<PrivateKey>;

impl SoftEk {
    /// A fresh EK.
    ///
    /// # Errors
    /// [`ActivateError::Crypto`] when key generation fails.
    pub fn generate() -> Result<Self, ActivateError> {
        let private =
            PrivateKey::generate(&ECDH_P256).map_err(|_| ActivateError::Crypto("EK key generation"))?;
        let point = private.compute_public_key().map_err(|_| ActivateError::Crypto("EK public key"))?;
        let coordinates = point.as_ref().get(1..).ok_or(ActivateError::Crypto("EK public point"))?;
        let (x, y) = coordinates.split_at(P256_COORDINATE.min(coordinates.len()));
        let public = Public::from_tpmt(&ek_tpmt(x, y))?;
        Ok(Self { private, public })
    }

    /// The EK public key as SubjectPublicKeyInfo (DER), for its certificate.
    #[must_use]
    pub fn spki_der(&self) -> Vec<u8> {
        self.public.key().to_spki_der()
    }

    /// `TPM2_ActivateCredential`: recovers the secret from `id_object`
    /// (`TPM2B_ID_OBJECT`) and `encrypted_secret` (`TPM2B_ENCRYPTED_SECRET`) made for this
    /// EK and the object named `object_name`.
    ///
    /// # Errors
    /// [`ActivateError`] when a structure is malformed or the integrity check fails.
    pub fn activate_credential(
        &self,
        object_name: &[u8],
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, ActivateError> {
        let key_bits = storage_key_bits(&self.public)?;
        let name_alg = self.public.name_alg();
        let seed = self.recover_seed(encrypted_secret)?;

        let mut r = Reader::new(id_object);
        let mut inner = Reader::new(r.tpm2b(MAX_BLOB, "TPM2B_ID_OBJECT")?);
        r.expect_end("TPM2B_ID_OBJECT")?;
        let integrity = inner.tpm2b(MAX_DIGEST, "TPM2B_ID_OBJECT.integrityHMAC")?;
        let enc_identity = inner.rest();

        let hmac_bits = u32::try_from(name_alg.size() * 8).unwrap_or(0);
        let hmac_key = kdf::kdfa(name_alg, &seed, "INTEGRITY", &[], &[], hmac_bits)?;
        let expected = kdf::hmac(name_alg, &hmac_key, &[enc_identity, object_name])?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected, integrity)
            .map_err(|_| ActivateError::Integrity)?;

        let sym_key = kdf::kdfa(name_alg, &seed, "STORAGE", object_name, &[], u32::from(key_bits))?;
        let mut identity = enc_identity.to_vec();
        aes_cfb_decrypt(key_bits, &sym_key, &mut identity)?;
        let mut r = Reader::new(&identity);
        let secret = r.tpm2b(MAX_DIGEST, "encIdentity")?.to_vec();
        r.expect_end("encIdentity")?;
        Ok(secret)
    }

    /// ECDH with the ephemeral point in `encrypted_secret`, then `KDFe` (Part 1, C.6.4).
    fn recover_seed(&self, encrypted_secret: &[u8]) -> Result<Vec<u8>, ActivateError> {
        let mut r = Reader::new(encrypted_secret);
        let mut point = Reader::new(r.tpm2b(MAX_BLOB, "TPM2B_ENCRYPTED_SECRET")?);
        r.expect_end("TPM2B_ENCRYPTED_SECRET")?;
        let eph_x = point.tpm2b(MAX_ECC_KEY_BYTES, "TPMS_ECC_POINT.x")?;
        let eph_y = point.tpm2b(MAX_ECC_KEY_BYTES, "TPMS_ECC_POINT.y")?;
        point.expect_end("TPMS_ECC_POINT")?;
        let mut peer = Vec::with_capacity(1 + eph_x.len() + eph_y.len());
        peer.push(0x04);
        peer.extend_from_slice(eph_x);
        peer.extend_from_slice(eph_y);
        let z = agreement::agree(
            &self.private,
            UnparsedPublicKey::new(&ECDH_P256, &peer),
            ActivateError::Crypto("ECDH with the ephemeral point"),
            |z| Ok(z.to_vec()),
        )?;
        let PublicKey::Ecc { x: ek_x, .. } = self.public.key() else {
            return Err(ActivateError::Crypto("EK is not an ECC key"));
        };
        let name_alg = self.public.name_alg();
        let bits = u32::try_from(name_alg.size() * 8).unwrap_or(0);
        Ok(kdf::kdfe(name_alg, &z, "IDENTITY", eph_x, ek_x, bits))
    }
}

/// The `TPMT_PUBLIC` of a P-256 EK with the default template's shape and point `(x, y)`.
#[must_use]
pub fn ek_tpmt(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u16(id::ECC);
    out.put_u16(id::SHA256);
    out.put_u32(EK_ATTRIBUTES);
    out.put_tpm2b(&EK_AUTH_POLICY);
    out.put_u16(id::AES);
    out.put_u16(128);
    out.put_u16(id::CFB);
    out.put_u16(id::NULL); // scheme
    out.put_u16(TPM_ECC_NIST_P256);
    out.put_u16(id::NULL); // kdf
    out.put_tpm2b(x);
    out.put_tpm2b(y);
    out
}

/// AES-CFB decryption with a zero IV (the inverse of [`kdf::aes_cfb_encrypt`]).
fn aes_cfb_decrypt(key_bits: u16, key: &[u8], data: &mut [u8]) -> Result<(), KdfError> {
    let alg = match key_bits {
        128 => &AES_128,
        256 => &AES_256,
        other => return Err(KdfError::UnsupportedSymmetric(other)),
    };
    let key = UnboundCipherKey::new(alg, key).map_err(|_| KdfError::Cipher)?;
    let key = DecryptingKey::cfb128(key).map_err(|_| KdfError::Cipher)?;
    key.decrypt(data, DecryptionContext::Iv128(FixedLength::from([0u8; 16])))
        .map_err(|_| KdfError::Cipher)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::credential::make_credential;
    use aws_lc_rs::rand::SystemRandom;

    #[test]
    fn activation_recovers_what_make_credential_protected() {
        let ek = SoftEk::generate().unwrap();
        let reparsed = Public::from_tpm2b(&ek.tpm2b_public()).unwrap();
        assert_eq!(&reparsed, ek.public());
        let name = crate::tpm::sim::SoftKey::new(crate::tpm::sim::AK_ATTRIBUTES).public().name();
        let secret = [0x5au8; 32];
        let challenge = make_credential(&reparsed, &name, &secret, &SystemRandom::new()).unwrap();
        let recovered =
            ek.activate_credential(&name, challenge.id_object(), challenge.encrypted_secret()).unwrap();
        assert_eq!(recovered, secret);
    }

    #[test]
    fn activation_refuses_another_name_or_another_ek() {
        let ek = SoftEk::generate().unwrap();
        let name = [0u8, 0x0b, 1, 2, 3];
        let challenge = make_credential(ek.public(), &name, &[1; 16], &SystemRandom::new()).unwrap();
        let other_name = [0u8, 0x0b, 1, 2, 4];
        assert_eq!(
            ek.activate_credential(&other_name, challenge.id_object(), challenge.encrypted_secret()),
            Err(ActivateError::Integrity)
        );
        let other_ek = SoftEk::generate().unwrap();
        assert_eq!(
            other_ek.activate_credential(&name, challenge.id_object(), challenge.encrypted_secret()),
            Err(ActivateError::Integrity)
        );
    }

    #[test]
    fn truncated_blobs_are_refused_not_panicked_on() {
        let ek = SoftEk::generate().unwrap();
        let challenge = make_credential(ek.public(), &[0, 0x0b], &[1; 16], &SystemRandom::new()).unwrap();
        for cut in 0..challenge.encrypted_secret().len() {
            assert!(ek
                .activate_credential(&[0, 0x0b], challenge.id_object(), &challenge.encrypted_secret()[..cut])
                .is_err());
        }
        for cut in 0..challenge.id_object().len() {
            assert!(ek
                .activate_credential(&[0, 0x0b], &challenge.id_object()[..cut], challenge.encrypted_secret())
                .is_err());
        }
    }
}

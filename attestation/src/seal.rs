//! Sealed secrets for SEV-SNP guests: HPKE (RFC 9180) in base mode, single shot, to the
//! X25519 key the guest committed to in `REPORT_DATA`.
//!
//! Suite (RFC 9180, 7): KEM `DHKEM(X25519, HKDF-SHA256)` (0x0020), KDF `HKDF-SHA256`
//! (0x0001), AEAD `ChaCha20Poly1305` (0x0003), the suite of RFC 9180 Appendix A.2. HPKE
//! itself is rustls's implementation on aws-lc-rs
//! (`rustls::crypto::aws_lc_rs::hpke::DH_KEM_X25519_HKDF_SHA256_CHACHA20_POLY1305`); this
//! module holds the keys, the wire form and the limits, and the Appendix A.2.1 test vector
//! checks the suite end to end. rustls draws the ephemeral key from AWS-LC's generator:
//! its HPKE API takes no random source.
//!
//! `info` binds the ciphertext to its purpose and `aad` to its context: a box sealed with
//! one `info` / `aad` does not open with another. The recipient's private key never leaves
//! the guest, so the box opens only there.

use std::fmt;

use aws_lc_rs::agreement::{PrivateKey, X25519};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rustls::crypto::aws_lc_rs::hpke::DH_KEM_X25519_HKDF_SHA256_CHACHA20_POLY1305 as SUITE;
use rustls::crypto::hpke::{EncapsulatedSecret, Hpke as _, HpkePrivateKey, HpkePublicKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `kem_id` of `DHKEM(X25519, HKDF-SHA256)` (RFC 9180, 7.1).
pub const KEM_ID: u16 = 0x0020;
/// `kdf_id` of `HKDF-SHA256` (RFC 9180, 7.2).
pub const KDF_ID: u16 = 0x0001;
/// `aead_id` of `ChaCha20Poly1305` (RFC 9180, 7.3).
pub const AEAD_ID: u16 = 0x0003;

/// `Npk` / `Nenc`: an X25519 public key, and the encapsulated key, are 32 bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// `Nsk`: an X25519 private key is 32 bytes.
pub const PRIVATE_KEY_LEN: usize = 32;
/// `Nt`: the Poly1305 tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// Largest plaintext sealed or opened here: secrets are keys and tokens, not files.
pub const MAX_PLAINTEXT: usize = 64 * 1024;

/// Why a box could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The recipient's public key is not a raw 32-byte X25519 key.
    #[error("recipient public key is {len} bytes, an X25519 key is {PUBLIC_KEY_LEN}")]
    PublicKeyLength {
        /// Length given.
        len: usize,
    },
    /// The private key is not a raw 32-byte X25519 key.
    #[error("private key is {len} bytes, an X25519 key is {PRIVATE_KEY_LEN}")]
    PrivateKeyLength {
        /// Length given.
        len: usize,
    },
    /// The encapsulated key is not 32 bytes.
    #[error("encapsulated key is {len} bytes, DHKEM(X25519) uses {PUBLIC_KEY_LEN}")]
    EncapsulatedKeyLength {
        /// Length given.
        len: usize,
    },
    /// Sealing failed: the X25519 agreement with the recipient's key gave the all-zero
    /// output of a small-order point (RFC 9180, 7.1.4), or the crypto library failed.
    #[error("sealing failed: the recipient key is invalid or of small order")]
    Agreement,
    /// The plaintext is above [`MAX_PLAINTEXT`].
    #[error("plaintext of {len} bytes exceeds the {max}-byte limit")]
    PlaintextTooLarge {
        /// Length given.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The ciphertext is too short to hold a tag, or longer than any sealed plaintext.
    #[error("ciphertext of {len} bytes is not between {TAG_LEN} and {} bytes", MAX_PLAINTEXT + TAG_LEN)]
    CiphertextLength {
        /// Length given.
        len: usize,
    },
    /// The box does not open: wrong key, `info` or `aad`, a modified box, or a small-order
    /// encapsulated key.
    #[error("the box does not open with this key, info and aad (wrong recipient or modified)")]
    Open,
    /// The random generator or the key generator failed.
    #[error("{0} failed")]
    Crypto(&'static str),
}

/// The recipient's X25519 key pair, generated and kept in the guest; its public half goes
/// into `REPORT_DATA` and to the broker.
pub struct SealingKeyPair {
    private: HpkePrivateKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl fmt::Debug for SealingKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKeyPair").field("public", &hex::encode(self.public)).finish_non_exhaustive()
    }
}

impl SealingKeyPair {
    /// A new key pair from AWS-LC's random generator.
    ///
    /// # Errors
    /// [`SealError::Crypto`] when key generation fails.
    pub fn generate() -> Result<Self, SealError> {
        let (public, private) = SUITE.generate_key_pair().map_err(|_| SealError::Crypto("key generation"))?;
        let public = public.0.try_into().map_err(|_| SealError::Crypto("key generation"))?;
        Ok(Self { private, public })
    }

    /// The key pair for a raw 32-byte X25519 private key (RFC 7748, 5).
    ///
    /// # Errors
    /// [`SealError::PrivateKeyLength`] for any other length.
    pub fn from_private_key_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let wrong_length = || SealError::PrivateKeyLength { len: bytes.len() };
        if bytes.len() != PRIVATE_KEY_LEN {
            return Err(wrong_length());
        }
        let private = PrivateKey::from_private_key(&X25519, bytes).map_err(|_| wrong_length())?;
        let public = private.compute_public_key().map_err(|_| SealError::Crypto("public key computation"))?;
        let public = public.as_ref().try_into().map_err(|_| SealError::Crypto("public key computation"))?;
        Ok(Self { private: HpkePrivateKey::from(bytes.to_vec()), public })
    }

    /// The raw X25519 public key (`pkRm`), 32 bytes.
    #[must_use]
    pub fn public_key_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The raw X25519 private key (`skRm`), 32 bytes, for storing it in the guest.
    ///
    /// # Errors
    /// [`SealError::Crypto`] when the key is not 32 bytes (it always is).
    pub fn private_key_bytes(&self) -> Result<[u8; PRIVATE_KEY_LEN], SealError> {
        self.private.secret_bytes().try_into().map_err(|_| SealError::Crypto("private key export"))
    }
}

/// An HPKE ciphertext: the encapsulated key `enc` and the AEAD ciphertext (with its tag).
///
/// Serializes as `{"enc": base64, "ciphertext": base64}` (standard alphabet, padded,
/// RFC 4648, 4); deserializing checks the lengths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SealedBoxJson", into = "SealedBoxJson")]
pub struct SealedBox {
    enc: [u8; PUBLIC_KEY_LEN],
    ciphertext: Vec<u8>,
}

impl SealedBox {
    /// A box from its two parts, as received.
    ///
    /// # Errors
    /// [`SealError::EncapsulatedKeyLength`] or [`SealError::CiphertextLength`].
    pub fn from_parts(enc: &[u8], ciphertext: Vec<u8>) -> Result<Self, SealError> {
        let enc: [u8; PUBLIC_KEY_LEN] =
            enc.try_into().map_err(|_| SealError::EncapsulatedKeyLength { len: enc.len() })?;
        if ciphertext.len() < TAG_LEN || ciphertext.len() > MAX_PLAINTEXT + TAG_LEN {
            return Err(SealError::CiphertextLength { len: ciphertext.len() });
        }
        Ok(Self { enc, ciphertext })
    }

    /// The encapsulated key (`enc`, the ephemeral X25519 public key).
    #[must_use]
    pub fn enc(&self) -> &[u8] {
        &self.enc
    }

    /// The AEAD ciphertext, tag included.
    #[must_use]
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedBoxJson {
    enc: String,
    ciphertext: String,
}

impl From<SealedBox> for SealedBoxJson {
    fn from(sealed: SealedBox) -> Self {
        Self { enc: STANDARD.encode(sealed.enc), ciphertext: STANDARD.encode(&sealed.ciphertext) }
    }
}

impl TryFrom<SealedBoxJson> for SealedBox {
    type Error = String;

    fn try_from(json: SealedBoxJson) -> Result<Self, String> {
        let enc = STANDARD.decode(json.enc.as_bytes()).map_err(|e| format!("enc: invalid base64: {e}"))?;
        let ciphertext = STANDARD
            .decode(json.ciphertext.as_bytes())
            .map_err(|e| format!("ciphertext: invalid base64: {e}"))?;
        Self::from_parts(&enc, ciphertext).map_err(|e| e.to_string())
    }
}

/// `SealBase(pkR, info, aad, pt)` (RFC 9180, 6.1): encrypts `plaintext` to the holder of
/// the X25519 key `recipient_public_key`, with a fresh ephemeral key.
///
/// # Errors
/// [`SealError`] for a malformed or small-order recipient key, or an oversized plaintext.
pub fn seal_to(
    recipient_public_key: &[u8],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<SealedBox, SealError> {
    if recipient_public_key.len() != PUBLIC_KEY_LEN {
        return Err(SealError::PublicKeyLength { len: recipient_public_key.len() });
    }
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(SealError::PlaintextTooLarge { len: plaintext.len(), max: MAX_PLAINTEXT });
    }
    let recipient = HpkePublicKey(recipient_public_key.to_vec());
    let (enc, ciphertext) = SUITE.seal(info, aad, plaintext, &recipient).map_err(|_| SealError::Agreement)?;
    SealedBox::from_parts(&enc.0, ciphertext)
}

/// `OpenBase(enc, skR, info, aad, ct)` (RFC 9180, 6.1).
///
/// # Errors
/// [`SealError::Open`] when the box was not sealed to this key with this `info` and `aad`,
/// was modified, or carries a small-order `enc`.
pub fn open(
    recipient: &SealingKeyPair,
    sealed: &SealedBox,
    info: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, SealError> {
    let enc = EncapsulatedSecret(sealed.enc.to_vec());
    SUITE.open(&enc, info, aad, &sealed.ciphertext, &recipient.private).map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    /// RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305,
    /// base mode.
    mod rfc9180_a_2_1 {
        pub(super) const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
        pub(super) const SK_EM: &str = "f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600";
        pub(super) const PK_EM: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
        pub(super) const SK_RM: &str = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
        pub(super) const PK_RM: &str = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
        pub(super) const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
        /// Sequence 0: aad "Count-0", nonce = base_nonce.
        pub(super) const AAD_0: &str = "436f756e742d30";
        pub(super) const CT_0: &str =
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28";
        /// Sequence 1: aad "Count-1", nonce = base_nonce xor 1.
        pub(super) const AAD_1: &str = "436f756e742d31";
        pub(super) const CT_1: &str =
            "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e85285337cc95ba5f59992dc98c";
    }

    /// The suite is the one the wire format names, and the vector's ciphertexts open: the
    /// recipient's decapsulation, the key schedule (key and base nonce from `info`) and the
    /// nonce sequence are RFC 9180's. (rustls seals with a random ephemeral key, so the
    /// vector's sealing side is checked by rustls's own tests of the same vectors.)
    #[test]
    fn rfc9180_a_2_1_keys_and_encryptions() {
        use rfc9180_a_2_1::*;
        let suite = SUITE.suite();
        assert_eq!(
            (u16::from(suite.kem), u16::from(suite.sym.kdf_id), u16::from(suite.sym.aead_id)),
            (KEM_ID, KDF_ID, AEAD_ID)
        );
        let recipient = SealingKeyPair::from_private_key_bytes(&h(SK_RM)).unwrap();
        assert_eq!(recipient.public_key_bytes().to_vec(), h(PK_RM));
        assert_eq!(recipient.private_key_bytes().unwrap().to_vec(), h(SK_RM));
        let ephemeral = SealingKeyPair::from_private_key_bytes(&h(SK_EM)).unwrap();
        assert_eq!(ephemeral.public_key_bytes().to_vec(), h(PK_EM));

        let sealed = SealedBox::from_parts(&h(PK_EM), h(CT_0)).unwrap();
        assert_eq!(open(&recipient, &sealed, &h(INFO), &h(AAD_0)).unwrap(), h(PT));
        let enc = EncapsulatedSecret(h(PK_EM));
        let mut context = SUITE.setup_opener(&enc, &h(INFO), &recipient.private).unwrap();
        assert_eq!(context.open(&h(AAD_0), &h(CT_0)).unwrap(), h(PT));
        assert_eq!(context.open(&h(AAD_1), &h(CT_1)).unwrap(), h(PT));

        let again = seal_to(recipient.public_key_bytes(), &h(INFO), &h(AAD_0), &h(PT)).unwrap();
        assert_eq!(open(&recipient, &again, &h(INFO), &h(AAD_0)).unwrap(), h(PT));
    }

    #[test]
    fn rfc9180_ciphertext_opens_only_with_its_key_info_and_aad() {
        use rfc9180_a_2_1::*;
        let recipient = SealingKeyPair::from_private_key_bytes(&h(SK_RM)).unwrap();
        let sealed = SealedBox::from_parts(&h(PK_EM), h(CT_0)).unwrap();
        let (info, aad) = (h(INFO), h(AAD_0));
        assert_eq!(open(&recipient, &sealed, &info, &aad).unwrap(), h(PT));
        assert_eq!(open(&recipient, &sealed, b"other info", &aad), Err(SealError::Open));
        assert_eq!(open(&recipient, &sealed, &info, b"Count-1"), Err(SealError::Open));
        let stranger = SealingKeyPair::generate().unwrap();
        assert_eq!(open(&stranger, &sealed, &info, &aad), Err(SealError::Open));
        for i in [0, 20, h(CT_0).len() - 1] {
            let mut ct = h(CT_0);
            ct[i] ^= 0x01;
            let flipped = SealedBox::from_parts(&h(PK_EM), ct).unwrap();
            assert_eq!(open(&recipient, &flipped, &info, &aad), Err(SealError::Open), "byte {i}");
        }
        let mut enc = h(PK_EM);
        enc[3] ^= 0x01;
        let other_enc = SealedBox::from_parts(&enc, h(CT_0)).unwrap();
        assert_eq!(open(&recipient, &other_enc, &info, &aad), Err(SealError::Open));
    }

    #[test]
    fn generated_keys_round_trip_through_json() {
        let recipient = SealingKeyPair::generate().unwrap();
        let sealed = seal_to(recipient.public_key_bytes(), b"mooring", b"vm-1", b"payment key").unwrap();
        assert_eq!(sealed.ciphertext().len(), b"payment key".len() + TAG_LEN);
        let json = serde_json::to_string(&sealed).unwrap();
        let back: SealedBox = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sealed);
        let restored =
            SealingKeyPair::from_private_key_bytes(&recipient.private_key_bytes().unwrap()).unwrap();
        assert_eq!(open(&restored, &back, b"mooring", b"vm-1").unwrap(), b"payment key");
        assert!(!format!("{recipient:?}").contains(&hex::encode(recipient.private_key_bytes().unwrap())));

        // Each seal uses a fresh ephemeral key.
        let again = seal_to(recipient.public_key_bytes(), b"mooring", b"vm-1", b"payment key").unwrap();
        assert_ne!(again.enc(), sealed.enc());
    }

    #[test]
    fn malformed_inputs_are_refused_with_a_reason() {
        assert_eq!(seal_to(&[9; 31], b"", b"", b"x"), Err(SealError::PublicKeyLength { len: 31 }));
        // The all-zero point has small order: the agreement output would be zero.
        assert_eq!(seal_to(&[0; 32], b"", b"", b"x"), Err(SealError::Agreement));
        let big = vec![0; MAX_PLAINTEXT + 1];
        let key = SealingKeyPair::generate().unwrap();
        assert!(matches!(
            seal_to(key.public_key_bytes(), b"", b"", &big),
            Err(SealError::PlaintextTooLarge { .. })
        ));
        assert_eq!(
            SealingKeyPair::from_private_key_bytes(&[1; 16]).unwrap_err(),
            SealError::PrivateKeyLength { len: 16 }
        );
        assert_eq!(
            SealedBox::from_parts(&[1; 33], vec![0; 16]),
            Err(SealError::EncapsulatedKeyLength { len: 33 })
        );
        assert_eq!(
            SealedBox::from_parts(&[1; 32], vec![0; 15]),
            Err(SealError::CiphertextLength { len: 15 })
        );
        for bad in [
            r#"{"enc":"not base64!","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA=="}"#,
            r#"{"enc":"AAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA=="}"#,
            r#"{"enc":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","ciphertext":"AA==","x":1}"#,
        ] {
            assert!(serde_json::from_str::<SealedBox>(bad).is_err(), "{bad}");
        }
    }
}

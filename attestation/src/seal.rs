//! Sealed secrets for SEV-SNP guests: HPKE (RFC 9180) in base mode, single shot, to the
//! X25519 key the guest committed to in `REPORT_DATA`.
//!
//! Suite (RFC 9180, 7): KEM `DHKEM(X25519, HKDF-SHA256)` (0x0020), KDF `HKDF-SHA256`
//! (0x0001), AEAD `ChaCha20Poly1305` (0x0003), the suite of RFC 9180 Appendix A.2. Built on
//! aws-lc-rs primitives (X25519 agreement, HMAC-SHA256, ChaCha20-Poly1305), like the rest of
//! this crate; the Appendix A.2.1 test vector checks every step.
//!
//! `info` binds the ciphertext to its purpose and `aad` to its context: a box sealed with
//! one `info` / `aad` does not open with another. The recipient's private key never leaves
//! the guest, so the box opens only there.

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SecureRandom;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
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

/// `Nsecret` / `Nh`: the KEM shared secret and HKDF-SHA256 output size.
const N_SECRET: usize = 32;
/// `Nk`: ChaCha20Poly1305 key size.
const N_K: usize = 32;
/// `Nn`: ChaCha20Poly1305 nonce size.
const N_N: usize = 12;
/// `mode_base` (RFC 9180, 5).
const MODE_BASE: u8 = 0x00;
/// Version label of every labeled KDF call (RFC 9180, 4).
const VERSION_LABEL: &[u8] = b"HPKE-v1";
/// `suite_id` of the KEM's labeled calls: `"KEM" || I2OSP(kem_id, 2)` (RFC 9180, 4.1).
const KEM_SUITE_ID: [u8; 5] = [b'K', b'E', b'M', 0x00, 0x20];
/// `suite_id` of the key schedule: `"HPKE" || kem_id || kdf_id || aead_id` (RFC 9180, 5.1).
const HPKE_SUITE_ID: [u8; 10] = [b'H', b'P', b'K', b'E', 0x00, 0x20, 0x00, 0x01, 0x00, 0x03];

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
    /// The agreement failed or gave the all-zero output of a small-order point
    /// (RFC 9180, 7.1.4).
    #[error("X25519 agreement failed: the public key is invalid or of small order")]
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
    /// Authentication failed: wrong key, `info` or `aad`, or a modified box.
    #[error("the box does not open with this key, info and aad (wrong recipient or modified)")]
    Open,
    /// The random generator or the key generator failed.
    #[error("{0} failed")]
    Crypto(&'static str),
}

/// The recipient's X25519 key pair, generated and kept in the guest; its public half goes
/// into `REPORT_DATA` and to the broker.
pub struct SealingKeyPair {
    private: PrivateKey,
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
        let private = PrivateKey::generate(&X25519).map_err(|_| SealError::Crypto("key generation"))?;
        Self::from_private(private)
    }

    /// The key pair for a raw 32-byte X25519 private key (RFC 7748, 5).
    ///
    /// # Errors
    /// [`SealError::PrivateKeyLength`] for any other length.
    pub fn from_private_key_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != PRIVATE_KEY_LEN {
            return Err(SealError::PrivateKeyLength { len: bytes.len() });
        }
        let private = PrivateKey::from_private_key(&X25519, bytes)
            .map_err(|_| SealError::PrivateKeyLength { len: bytes.len() })?;
        Self::from_private(private)
    }

    fn from_private(private: PrivateKey) -> Result<Self, SealError> {
        let public = private.compute_public_key().map_err(|_| SealError::Crypto("public key computation"))?;
        let public: [u8; PUBLIC_KEY_LEN] =
            public.as_ref().try_into().map_err(|_| SealError::Crypto("public key computation"))?;
        Ok(Self { private, public })
    }

    /// The raw X25519 public key (`pkRm`), 32 bytes.
    #[must_use]
    pub fn public_key_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The raw X25519 private key (`skRm`), 32 bytes, for storing it in the guest.
    ///
    /// # Errors
    /// [`SealError::Crypto`] when the crypto library cannot export it.
    pub fn private_key_bytes(&self) -> Result<[u8; PRIVATE_KEY_LEN], SealError> {
        let bytes: Curve25519SeedBin<'static> =
            self.private.as_be_bytes().map_err(|_| SealError::Crypto("private key export"))?;
        bytes.as_ref().try_into().map_err(|_| SealError::Crypto("private key export"))
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
/// the X25519 key `recipient_public_key` with a fresh ephemeral key from `rng`.
///
/// # Errors
/// [`SealError`] for a malformed or small-order recipient key, an oversized plaintext, or a
/// failing random generator.
pub fn seal_to(
    recipient_public_key: &[u8],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &dyn SecureRandom,
) -> Result<SealedBox, SealError> {
    let mut ephemeral = [0u8; PRIVATE_KEY_LEN];
    rng.fill(&mut ephemeral).map_err(|_| SealError::Crypto("random generator"))?;
    seal_with_ephemeral(&ephemeral, recipient_public_key, info, aad, plaintext)
}

/// `OpenBase(enc, skR, info, aad, ct)` (RFC 9180, 6.1).
///
/// # Errors
/// [`SealError::Open`] when the box was not sealed to this key with this `info` and `aad`,
/// or was modified; [`SealError::Agreement`] for a small-order `enc`.
pub fn open(
    recipient: &SealingKeyPair,
    sealed: &SealedBox,
    info: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, SealError> {
    let dh = agree(&recipient.private, &sealed.enc)?;
    let shared_secret = extract_and_expand(&dh, &sealed.enc, &recipient.public);
    let (key, nonce) = key_schedule(&shared_secret, info);
    let key = aead_key(&key)?;
    let mut in_out = sealed.ciphertext.clone();
    let plaintext = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
        .map_err(|_| SealError::Open)?;
    Ok(plaintext.to_vec())
}

/// `Encap` with the given ephemeral private key, then the key schedule and one `Seal` with
/// sequence number 0 (the base nonce).
fn seal_with_ephemeral(
    ephemeral: &[u8],
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
    let ephemeral = SealingKeyPair::from_private_key_bytes(ephemeral)?;
    let dh = agree(&ephemeral.private, recipient_public_key)?;
    let shared_secret = extract_and_expand(&dh, &ephemeral.public, recipient_public_key);
    let (key, nonce) = key_schedule(&shared_secret, info);
    let ciphertext = aead_seal(&key, nonce, aad, plaintext)?;
    Ok(SealedBox { enc: ephemeral.public, ciphertext })
}

/// `DH(sk, pk)`, refusing the all-zero output (RFC 9180, 7.1.4).
fn agree(private: &PrivateKey, public: &[u8]) -> Result<Vec<u8>, SealError> {
    let peer = UnparsedPublicKey::new(&X25519, public);
    let dh = agreement::agree(private, peer, SealError::Agreement, |z| Ok(z.to_vec()))?;
    if dh.iter().fold(0u8, |acc, b| acc | b) == 0 {
        return Err(SealError::Agreement);
    }
    Ok(dh)
}

/// `ExtractAndExpand(dh, kem_context)` with `kem_context = enc || pkRm` (RFC 9180, 4.1).
fn extract_and_expand(dh: &[u8], enc: &[u8], recipient_public: &[u8]) -> [u8; N_SECRET] {
    let eae_prk = labeled_extract(&KEM_SUITE_ID, b"", b"eae_prk", dh);
    let mut shared_secret = [0u8; N_SECRET];
    labeled_expand(&KEM_SUITE_ID, &eae_prk, b"shared_secret", &[enc, recipient_public], &mut shared_secret);
    shared_secret
}

/// `KeySchedule(mode_base, shared_secret, info, psk = "", psk_id = "")` (RFC 9180, 5.1):
/// the AEAD key and base nonce.
fn key_schedule(shared_secret: &[u8], info: &[u8]) -> ([u8; N_K], [u8; N_N]) {
    let psk_id_hash = labeled_extract(&HPKE_SUITE_ID, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(&HPKE_SUITE_ID, b"", b"info_hash", info);
    let context: [&[u8]; 3] = [&[MODE_BASE], &psk_id_hash, &info_hash];
    let secret = labeled_extract(&HPKE_SUITE_ID, shared_secret, b"secret", b"");
    let mut key = [0u8; N_K];
    labeled_expand(&HPKE_SUITE_ID, &secret, b"key", &context, &mut key);
    let mut nonce = [0u8; N_N];
    labeled_expand(&HPKE_SUITE_ID, &secret, b"base_nonce", &context, &mut nonce);
    (key, nonce)
}

/// `LabeledExtract(salt, label, ikm) = HKDF-Extract(salt, "HPKE-v1" || suite_id || label || ikm)`.
fn labeled_extract(suite_id: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> [u8; N_SECRET] {
    // HKDF-Extract (RFC 5869, 2.2) is HMAC keyed with the salt; an empty salt and HashLen
    // zero bytes are the same HMAC key.
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mut ctx = hmac::Context::with_key(&key);
    for part in [VERSION_LABEL, suite_id, label, ikm] {
        ctx.update(part);
    }
    let mut prk = [0u8; N_SECRET];
    prk.copy_from_slice(ctx.sign().as_ref());
    prk
}

/// `LabeledExpand(prk, label, info, L)` into `out` (`L = out.len()`, at most one SHA-256
/// block here): HKDF-Expand (RFC 5869, 2.3) with
/// `I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info`.
fn labeled_expand(suite_id: &[u8], prk: &[u8], label: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let length = u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes();
    let key = hmac::Key::new(hmac::HMAC_SHA256, prk);
    let mut previous: Vec<u8> = Vec::new();
    for (counter, chunk) in (1u8..=255).zip(out.chunks_mut(N_SECRET)) {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&previous);
        for part in [&length[..], VERSION_LABEL, suite_id, label] {
            ctx.update(part);
        }
        for part in info {
            ctx.update(part);
        }
        ctx.update(&[counter]);
        let block = ctx.sign();
        let block = block.as_ref();
        chunk.copy_from_slice(block.get(..chunk.len()).unwrap_or(block));
        previous = block.to_vec();
    }
}

fn aead_key(key: &[u8]) -> Result<LessSafeKey, SealError> {
    let key = UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| SealError::Crypto("AEAD key setup"))?;
    Ok(LessSafeKey::new(key))
}

fn aead_seal(key: &[u8], nonce: [u8; N_N], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let key = aead_key(key)?;
    let mut in_out = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
        .map_err(|_| SealError::Crypto("AEAD encryption"))?;
    Ok(in_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

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
        pub(super) const SHARED_SECRET: &str =
            "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7";
        pub(super) const KEY: &str = "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91";
        pub(super) const BASE_NONCE: &str = "5c4d98150661b848853b547f";
        pub(super) const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
        /// Sequence 0: aad "Count-0", nonce = base_nonce.
        pub(super) const AAD_0: &str = "436f756e742d30";
        pub(super) const CT_0: &str =
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28";
        /// Sequence 1: aad "Count-1", nonce = base_nonce xor 1.
        pub(super) const AAD_1: &str = "436f756e742d31";
        pub(super) const NONCE_1: &str = "5c4d98150661b848853b547e";
        pub(super) const CT_1: &str =
            "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e85285337cc95ba5f59992dc98c";
    }

    #[test]
    fn rfc9180_a_2_1_key_schedule_and_encryptions() {
        use rfc9180_a_2_1::*;
        let recipient = SealingKeyPair::from_private_key_bytes(&h(SK_RM)).unwrap();
        assert_eq!(recipient.public_key_bytes().to_vec(), h(PK_RM));
        assert_eq!(recipient.private_key_bytes().unwrap().to_vec(), h(SK_RM));
        let ephemeral = SealingKeyPair::from_private_key_bytes(&h(SK_EM)).unwrap();
        assert_eq!(ephemeral.public_key_bytes().to_vec(), h(PK_EM));

        let dh = agree(&ephemeral.private, &h(PK_RM)).unwrap();
        let shared_secret = extract_and_expand(&dh, &h(PK_EM), &h(PK_RM));
        assert_eq!(shared_secret.to_vec(), h(SHARED_SECRET));
        let (key, nonce) = key_schedule(&shared_secret, &h(INFO));
        assert_eq!(key.to_vec(), h(KEY));
        assert_eq!(nonce.to_vec(), h(BASE_NONCE));
        let nonce_1: [u8; N_N] = h(NONCE_1).try_into().unwrap();
        assert_eq!(aead_seal(&key, nonce_1, &h(AAD_1), &h(PT)).unwrap(), h(CT_1));

        let sealed = seal_with_ephemeral(&h(SK_EM), &h(PK_RM), &h(INFO), &h(AAD_0), &h(PT)).unwrap();
        assert_eq!(sealed.enc().to_vec(), h(PK_EM));
        assert_eq!(sealed.ciphertext().to_vec(), h(CT_0));
        assert_eq!(open(&recipient, &sealed, &h(INFO), &h(AAD_0)).unwrap(), h(PT));
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
        let sealed =
            seal_to(recipient.public_key_bytes(), b"mooring", b"vm-1", b"payment key", &SystemRandom::new())
                .unwrap();
        assert_eq!(sealed.ciphertext().len(), b"payment key".len() + TAG_LEN);
        let json = serde_json::to_string(&sealed).unwrap();
        let back: SealedBox = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sealed);
        let restored =
            SealingKeyPair::from_private_key_bytes(&recipient.private_key_bytes().unwrap()).unwrap();
        assert_eq!(open(&restored, &back, b"mooring", b"vm-1").unwrap(), b"payment key");
        assert!(!format!("{recipient:?}").contains(&hex::encode(recipient.private_key_bytes().unwrap())));

        // Each seal uses a fresh ephemeral key.
        let again =
            seal_to(recipient.public_key_bytes(), b"mooring", b"vm-1", b"payment key", &SystemRandom::new())
                .unwrap();
        assert_ne!(again.enc(), sealed.enc());
    }

    #[test]
    fn malformed_inputs_are_refused_with_a_reason() {
        let rng = SystemRandom::new();
        assert_eq!(seal_to(&[9; 31], b"", b"", b"x", &rng), Err(SealError::PublicKeyLength { len: 31 }));
        // The all-zero point has small order: the agreement output would be zero.
        assert_eq!(seal_to(&[0; 32], b"", b"", b"x", &rng), Err(SealError::Agreement));
        let big = vec![0; MAX_PLAINTEXT + 1];
        let key = SealingKeyPair::generate().unwrap();
        assert!(matches!(
            seal_to(key.public_key_bytes(), b"", b"", &big, &rng),
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

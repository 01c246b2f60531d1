//! Software-built TPM structures signed by software keys (feature `sim`), for tests and
//! the load generator: they let a test change exactly one field of a correctly signed
//! quote or certification. Nothing here is trusted by a verifier: an AK made here has no
//! EK behind it and cannot pass credential activation.

pub mod activate;
pub mod eventlog;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::codec::TpmWrite;
use crate::tpm::alg::id;
use crate::tpm::attest::{TPM_GENERATED_VALUE, TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_QUOTE};
use crate::tpm::pcr::PcrSelection;
use crate::tpm::public::{ObjectAttributes, Public};

/// The attributes `tpm2_createak` gives an AK.
pub const AK_ATTRIBUTES: u32 = ObjectAttributes::FIXED_TPM
    | ObjectAttributes::FIXED_PARENT
    | ObjectAttributes::SENSITIVE_DATA_ORIGIN
    | ObjectAttributes::USER_WITH_AUTH
    | ObjectAttributes::RESTRICTED
    | ObjectAttributes::SIGN;

/// A TPM object whose private half `K` is held in software, with its public area.
pub struct SoftObject<K> {
    private: K,
    public: Public,
}

/// Shows the public key only.
impl<K> std::fmt::Debug for SoftObject<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftObject").field("public", &self.public.key().describe()).finish_non_exhaustive()
    }
}

impl<K> SoftObject<K> {
    /// The public area.
    #[must_use]
    pub fn public(&self) -> &Public {
        &self.public
    }

    /// The public area as a `TPM2B_PUBLIC` (what `tpm2_create -u` writes, and what a VM
    /// sends the broker).
    #[must_use]
    pub fn tpm2b_public(&self) -> Vec<u8> {
        self.public.to_tpm2b()
    }
}

/// An ECDSA P-256 / SHA-256 signing key with a TPM public area around it.
pub type SoftKey = SoftObject<EcdsaKeyPair>;

impl SoftKey {
    /// A fresh key whose public area carries `attributes`.
    ///
    /// # Panics
    /// Only if the system random generator fails (test support code).
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new(attributes: u32) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
        let point = pair.public_key().as_ref();
        let (x, y) = point.get(1..).unwrap_or_default().split_at(32);
        let public = Public::from_tpmt(&ecc_tpmt(attributes, x, y)).expect("well-formed public area");
        Self { private: pair, public }
    }

    /// Signs `message` and returns the `TPMT_SIGNATURE` bytes (ECDSA, SHA-256).
    ///
    /// # Panics
    /// Only if signing fails (test support code).
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig = self.private.sign(&SystemRandom::new(), message).expect("sign");
        let (r, s) = sig.as_ref().split_at(32);
        let mut out = Vec::new();
        out.put_u16(id::ECDSA);
        out.put_u16(id::SHA256);
        out.put_tpm2b(r);
        out.put_tpm2b(s);
        out
    }
}

/// A `TPMT_PUBLIC` for an ECC P-256 ECDSA-SHA256 key with `attributes`.
#[must_use]
pub fn ecc_tpmt(attributes: u32, x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u16(id::ECC);
    out.put_u16(id::SHA256);
    out.put_u32(attributes);
    out.put_tpm2b(&[]);
    out.put_u16(id::NULL); // symmetric
    out.put_u16(id::ECDSA);
    out.put_u16(id::SHA256);
    out.put_u16(0x0003); // TPM_ECC_NIST_P256
    out.put_u16(id::NULL); // kdf
    out.put_tpm2b(x);
    out.put_tpm2b(y);
    out
}

/// Fields of a `TPMS_ATTEST` to build; every field can be set to a wrong value.
#[derive(Debug, Clone)]
pub struct AttestFields {
    /// `magic`.
    pub magic: u32,
    /// `type`.
    pub kind: u16,
    /// `qualifiedSigner`.
    pub qualified_signer: Vec<u8>,
    /// `extraData`.
    pub extra_data: Vec<u8>,
    /// `clockInfo.clock`.
    pub clock: u64,
    /// `firmwareVersion`.
    pub firmware_version: u64,
}

impl AttestFields {
    /// A well-formed header of type `kind` with `extra_data`.
    #[must_use]
    pub fn new(kind: u16, extra_data: &[u8]) -> Self {
        Self {
            magic: TPM_GENERATED_VALUE,
            kind,
            qualified_signer: vec![0, 0x0b],
            extra_data: extra_data.to_vec(),
            clock: 1000,
            firmware_version: 0x2019_1023_0016_3636,
        }
    }

    fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u32(self.magic);
        out.put_u16(self.kind);
        out.put_tpm2b(&self.qualified_signer);
        out.put_tpm2b(&self.extra_data);
        out.extend_from_slice(&self.clock.to_be_bytes());
        out.put_u32(1); // resetCount
        out.put_u32(0); // restartCount
        out.push(1); // safe
        out.extend_from_slice(&self.firmware_version.to_be_bytes());
        out
    }

    /// A quote body over `selection` with `pcr_digest`.
    #[must_use]
    pub fn quote(&self, selection: &PcrSelection, pcr_digest: &[u8]) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(&selection.to_bytes());
        out.put_tpm2b(pcr_digest);
        out
    }

    /// A certify body for the object `name`.
    #[must_use]
    pub fn certify(&self, name: &[u8]) -> Vec<u8> {
        let mut out = self.header();
        out.put_tpm2b(name);
        out.put_tpm2b(name);
        out
    }
}

/// A quote header (`TPM_ST_ATTEST_QUOTE`) with `extra_data`.
#[must_use]
pub fn quote_fields(extra_data: &[u8]) -> AttestFields {
    AttestFields::new(TPM_ST_ATTEST_QUOTE, extra_data)
}

/// A certify header (`TPM_ST_ATTEST_CERTIFY`) with `extra_data`.
#[must_use]
pub fn certify_fields(extra_data: &[u8]) -> AttestFields {
    AttestFields::new(TPM_ST_ATTEST_CERTIFY, extra_data)
}

//! Pure verification of VM attestation evidence: TPM 2.0 quotes, certifications,
//! EK certificates and measured-boot event logs, and AMD SEV-SNP attestation reports.
//!
//! No network, no TPM, no async, no unsafe code: bytes in, typed claims or a typed
//! error out. Every signature is checked over the exact bytes received.
#![forbid(unsafe_code)]

pub mod codec;
pub mod crypto;
pub mod der;
pub mod pem;
pub mod protocol;
pub mod seal;
pub mod snp;
pub mod svid;
pub mod tpm;
pub mod validity;
pub mod x509;

/// Hex encoding of byte fields in serialized claims (the one helper for all of them).
mod serde_hex {
    pub(crate) fn bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    #[allow(clippy::ref_option)] // serde's serialize_with passes `&Option<T>`
    pub(crate) fn option<S: serde::Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_some(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }
}

//! Pure verification of VM attestation evidence: TPM 2.0 quotes, certifications,
//! EK certificates and measured-boot event logs, and AMD SEV-SNP attestation reports.
//!
//! No network, no TPM, no async, no unsafe code: bytes in, typed claims or a typed
//! error out. Every signature is checked over the exact bytes received.
#![forbid(unsafe_code)]

pub mod codec;
pub mod tpm;

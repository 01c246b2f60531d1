//! TPM 2.0 evidence: structures (TPM 2.0 Library Part 2), verification of quotes and
//! certifications, EK certificates, software MakeCredential and the TCG event log.

/// Buffer sizes of TPM2B types (TPM 2.0 Part 2), shared by every parser here.
pub mod limits {
    /// `TPM2B_DIGEST`: `sizeof(TPMU_HA)`, a SHA-512 digest.
    pub const MAX_DIGEST: usize = 64;
    /// `TPM2B_NAME`: `sizeof(TPMU_NAME)`, an algorithm id plus a SHA-512 digest.
    pub const MAX_NAME: usize = 66;
    /// `TPM2B_DATA`: `sizeof(TPMT_HA)`.
    pub const MAX_DATA: usize = 66;
    /// `TPM2B_PUBLIC_KEY_RSA`: `MAX_RSA_KEY_BYTES` for RSA-4096 (keys and signatures).
    pub const MAX_RSA_KEY_BYTES: usize = 512;
    /// `TPM2B_ECC_PARAMETER`: `MAX_ECC_KEY_BYTES` for P-521 (coordinates and signatures).
    pub const MAX_ECC_KEY_BYTES: usize = 66;
    /// `TPM2B_PUBLIC`: a `TPMT_PUBLIC` with the largest key and policy.
    pub const MAX_PUBLIC: usize = 1024;
}

pub mod alg;
pub mod appraisal;
pub mod attest;
pub mod certify;
pub mod credential;
pub mod duplicate;
pub mod ekcert;
pub mod eventlog;
pub mod kdf;
pub mod pcr;
pub mod public;
pub mod quote;
pub mod session_policy;
#[cfg(feature = "sim")]
pub mod sim;

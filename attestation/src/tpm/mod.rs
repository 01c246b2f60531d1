//! TPM 2.0 evidence: structures (TPM 2.0 Library Part 2), verification of quotes and
//! certifications, EK certificates, software MakeCredential and the TCG event log.

pub mod alg;
pub mod pcr;
pub mod attest;
pub mod certify;
pub mod public;
pub mod quote;
pub mod credential;
pub mod kdf;
pub mod eventlog;
pub mod ekcert;
#[cfg(feature = "sim")]
pub mod sim;

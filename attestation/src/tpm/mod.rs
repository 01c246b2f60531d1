//! TPM 2.0 evidence: structures (TPM 2.0 Library Part 2), verification of quotes and
//! certifications, EK certificates, software MakeCredential and the TCG event log.

pub mod alg;
pub mod attest;
pub mod certify;
pub mod credential;
pub mod ekcert;
pub mod eventlog;
pub mod kdf;
pub mod pcr;
pub mod public;
pub mod quote;
#[cfg(feature = "sim")]
pub mod sim;

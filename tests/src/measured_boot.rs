//! A swtpm measured as the firmware that wrote a real event log measured its machine: the
//! log's SHA-256 digests extended into the TPM's PCRs, and the policy lines pinning what
//! they leave there. For test bodies: these panic on what they cannot do.
#![allow(clippy::unwrap_used)]

use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::eventlog::EventLog;

use crate::tpm2_tools::Tpm2Tools;

/// Extends every SHA-256 digest `log` records for the PCRs in `pcrs`, in order, into the
/// TPM `tools` reaches.
///
/// # Panics
/// When the log does not parse, has no SHA-256 digest for such an event, or the TPM
/// refuses.
pub fn measure(tools: &Tpm2Tools, log: &[u8], pcrs: &[u8]) {
    let parsed = EventLog::parse(log).unwrap();
    let extends: Vec<String> = parsed
        .events()
        .iter()
        .filter(|e| e.is_extended() && pcrs.iter().any(|&p| u32::from(p) == e.pcr()))
        .map(|e| format!("{}:sha256={}", e.pcr(), hex::encode(e.digest(HashAlg::Sha256).unwrap())))
        .collect();
    assert!(!extends.is_empty(), "the log measures none of PCRs {pcrs:?}");
    tools.run("tpm2_pcrextend", &extends).unwrap();
}

/// The lines of a `[class.tpm.pcr_values]` table pinning `pcrs` to what measuring `log`
/// leaves in them.
///
/// # Panics
/// When the log does not parse or leaves nothing in one of `pcrs`.
pub fn pcr_values(log: &[u8], pcrs: &[u8]) -> String {
    let replayed = EventLog::parse(log).unwrap().replay();
    pcrs.iter()
        .map(|&i| format!("{i} = [\"{}\"]\n", hex::encode(replayed.get(HashAlg::Sha256, i).unwrap())))
        .collect()
}

//! Certificate chains from `../shared/testdata`: real TPM EK/AK certificates (STMicro,
//! GCE vTPM) and AMD SEV-SNP ARK/ASK/ASVK/VCEK chains verify at a pinned time, and
//! each fails alone when the root is unknown, a CA has expired, a bit of a signature
//! or of a signed TBS flips, or the NV padding is not 0xFF.
//!
//! The modules: STMicro EKs (`stmicro`, with the unknown-root and bit-flip cases), expired CAs
//! (`expired_cas`), GCE vTPM EK/AK certificates (`gce`), whole CA bundles (`bundles`), AMD
//! SEV-SNP chains (`amd`).

// Helpers outside `#[test]` functions: a missing or unparsable vector should panic.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod amd;
mod bundles;
mod expired_cas;
mod gce;
mod stmicro;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mooring_attestation::x509::bundle::parse_certificates;
use mooring_attestation::x509::{Certificate, TrustStore};
use mooring_testdata::{testdata, testdata_dir};

/// 2026-05-28: every real leaf here is valid.
const T_2026: u64 = 1_780_000_000;
/// 2030-01-01.
const T_2030: u64 = 1_893_456_000;
/// 2038-02-17: after STM TPM ECC Root CA 01 and the GlobalSign TPM ECC root expired (2038-01-19).
const T_2038: u64 = 2_150_000_000;

const KEYLIME: &str = "tpm/ek-ca/keylime-tpm_cert_store";
const ST_RSA_EK: &str = "tpm/ek-certs/stmicro/st33htph_rsa_ek.der";
const ST_RSA_EK_NV: &str = "tpm/ek-certs/stmicro/st33htph_rsa_ek_nv_padded.der";
const ST_ECC_EK: &str = "tpm/ek-certs/stmicro/st33htph_ecc_ek.der";
const GS_ECC_ROOT: &str =
    "tpm/ek-ca/tpm-key_attestation-roots/STMicro/GlobalSign_Trusted_Platform_Module_ECC_Root_CA.crt";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn path(rel: &str) -> PathBuf {
    testdata_dir().join(rel)
}

fn cert(rel: &str) -> Certificate {
    let mut certs = parse_certificates(&testdata(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(certs.len(), 1, "{rel}");
    certs.remove(0)
}

fn keylime(name: &str) -> Certificate {
    cert(&format!("{KEYLIME}/{name}"))
}

fn subjects(chain: &mooring_attestation::x509::VerifiedChain) -> Vec<String> {
    chain.certificates().map(|c| c.subject().to_owned()).collect()
}

/// GlobalSign TPM root as anchor, STM EK root as a store intermediate; the EK's
/// issuing CA (STM_RSA_05I) comes with each call.
fn st_rsa_store() -> TrustStore {
    TrustStore::builder()
        .anchors([keylime("GS_TPM_RT.pem")])
        .intermediates([keylime("STM_RSA_RT.pem")])
        .build()
}

fn flip(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= 0x01;
    out
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn store_and_proofs_are_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<TrustStore>();
    shareable::<mooring_attestation::x509::VerifiedChain>();
    shareable::<mooring_attestation::tpm::ekcert::VerifiedEk>();
}

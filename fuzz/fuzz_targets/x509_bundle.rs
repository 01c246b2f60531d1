#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::x509::CertBundle;

fuzz_target!(|data: &[u8]| {
    let _ = CertBundle::from_bytes(data);
});

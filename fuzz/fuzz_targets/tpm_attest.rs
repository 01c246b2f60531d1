#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::tpm::attest::Attest;

fuzz_target!(|data: &[u8]| {
    let _ = Attest::parse(data);
});

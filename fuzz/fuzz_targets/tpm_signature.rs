#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::tpm::attest::Signature;

fuzz_target!(|data: &[u8]| {
    let _ = Signature::parse(data);
});

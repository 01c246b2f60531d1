#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::snp::Report;

fuzz_target!(|data: &[u8]| {
    let _ = Report::parse(data);
});

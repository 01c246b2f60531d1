#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::snp::azure::HclReport;

fuzz_target!(|data: &[u8]| {
    let _ = HclReport::parse(data);
});

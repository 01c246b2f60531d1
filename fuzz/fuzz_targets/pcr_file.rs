#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::codec::Reader;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};

fuzz_target!(|data: &[u8]| {
    let selection = PcrSelection::read(&mut Reader::new(data)).unwrap_or_default();
    let _ = PcrValues::from_tpm2_tools(data, &selection);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PcrValues::from_json(text);
    }
});

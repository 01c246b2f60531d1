#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::snp::CertTable;

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = CertTable::parse(data) {
        for entry in table.entries() {
            let _ = mooring_attestation::x509::Certificate::from_der(entry.bytes());
        }
    }
});

//! The broker's policy file: TOML, then every class compiled (names, SPIFFE ID templates,
//! networks, PCR selections and values, measured-boot rules, SEV-SNP rules). Bytes that
//! are not UTF-8 are refused before parsing, as `Policy::load` does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        mooring_broker::fuzz::policy_file(text);
    }
});

#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::tpm::public::Public;

fuzz_target!(|data: &[u8]| {
    if let Ok(public) = Public::from_tpm2b(data) {
        let _ = public.name();
    }
    let _ = Public::from_tpmt(data);
});

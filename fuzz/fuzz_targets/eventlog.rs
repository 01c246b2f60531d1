#![no_main]
use libfuzzer_sys::fuzz_target;
use mooring_attestation::tpm::eventlog::EventLog;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::parse(data) {
        let _ = log.replay();
        for bank in log.banks() {
            let _ = log.summary(*bank);
        }
    }
});

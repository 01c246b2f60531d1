//! Random and truncated inputs never panic any parser; they give an error or a value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mooring_attestation::codec::Reader;
use mooring_attestation::tpm::attest::{Attest, Signature};
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::public::Public;
use mooring_attestation::x509::CertBundle;
use mooring_testdata::testdata;
use proptest::prelude::*;

fn all_parsers(data: &[u8]) {
    let _ = Public::from_tpm2b(data).map(|p| p.name());
    let _ = Public::from_tpmt(data);
    let _ = Attest::parse(data);
    let _ = Signature::parse(data);
    let selection = PcrSelection::read(&mut Reader::new(data)).unwrap_or_default();
    let _ = PcrValues::from_tpm2_tools(data, &selection);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PcrValues::from_json(text);
    }
    if let Ok(log) = EventLog::parse(data) {
        let _ = log.replay();
        for bank in log.banks() {
            let _ = log.summary(*bank);
        }
    }
    let _ = CertBundle::from_bytes(data);
}

/// Real inputs of every kind, to truncate and mutate.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            "tpm/quotes/sim-keylime/ak.pub",
            "tpm/quotes/sim-keylime/quote.out",
            "tpm/quotes/sim-keylime/quotesig.out",
            "tpm/quotes/sim-keylime/quotepcr.out",
            "tpm/quotes/gce-windows-vtpm/ak_CreateAttestation.bin",
            "tpm/quotes/gce-cos85-vtpm/nonce9009/ak_pub.tpmt_public.bin",
            "tpm/quotes/gce-cos85-vtpm/nonce9009/binary_bios_measurements",
            "tpm/eventlogs/go-tpm-tools/debian-10.bin",
            "tpm/ek-certs/stmicro/st33htph_rsa_ek_nv_padded.der",
        ]
        .iter()
        .map(|path| testdata(path))
        .collect()
    })
}

#[test]
fn every_truncation_of_real_inputs_is_handled() {
    for seed in seeds() {
        // Every length of the small structures; about 600 evenly spread ones of big logs.
        let stride = (seed.len() / 600).max(1);
        for len in (0..seed.len()).step_by(stride) {
            all_parsers(&seed[..len]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_parsers(&data);
    }

    #[test]
    fn mutated_real_inputs_never_panic(seed in 0usize..9, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut data = seeds()[seed].clone();
        for (at, byte) in flips {
            if !data.is_empty() {
                let i = at % data.len();
                data[i] ^= byte;
            }
        }
        all_parsers(&data);
    }
}

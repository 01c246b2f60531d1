//! Hot paths of TPM attestation: quote verification (RSA and ECC AKs), event-log
//! replay, and software MakeCredential to RSA-2048 and ECC EKs.
//!
//! `cargo bench -p mooring-attestation --bench tpm`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aws_lc_rs::rand::SystemRandom;
use criterion::{criterion_group, criterion_main, Criterion};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::{Ak, Attest, Attested, Signature};
use mooring_attestation::tpm::credential::make_credential;
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::public::Public;
use mooring_attestation::tpm::quote::{verify_quote, QuoteExpectation};
use mooring_attestation::tpm::sim::{self, SoftKey};
use mooring_testdata::testdata;

fn quote_rsa(c: &mut Criterion) {
    let base = "tpm/quotes/gce-cos85-vtpm/nonce9009";
    let ak = Public::from_tpmt(&testdata(&format!("{base}/ak_pub.tpmt_public.bin"))).unwrap();
    let attest = testdata(&format!("{base}/quote_sha256.attest.bin"));
    let sig_bytes = testdata(&format!("{base}/quote_sha256.sig.tpmt_signature.bin"));
    let pcrs =
        PcrValues::from_json(&String::from_utf8(testdata(&format!("{base}/pcrs.json"))).unwrap()).unwrap();
    let selection = match Attest::parse(&attest).unwrap().attested() {
        Attested::Quote { selection, .. } => selection.clone(),
        _ => unreachable!(),
    };
    c.bench_function("quote_verify_rsa2048_24pcrs", |b| {
        b.iter(|| {
            let signature = Signature::parse(&sig_bytes).unwrap();
            let expected = QuoteExpectation { qualifying_data: &[0x90, 0x09], selection: &selection };
            verify_quote(Ak::Tpm(&ak), &attest, &signature, &pcrs, &expected).unwrap()
        })
    });
}

fn quote_ecc(c: &mut Criterion) {
    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    let selection = PcrSelection::single(HashAlg::Sha256, &(0..10).collect::<Vec<u8>>()).unwrap();
    let mut pcrs = PcrValues::new();
    for i in 0..10 {
        pcrs.insert(HashAlg::Sha256, i, vec![i; 32]).unwrap();
    }
    let attest =
        sim::quote_fields(&[5; 32]).quote(&selection, &pcrs.digest(&selection, HashAlg::Sha256).unwrap());
    let sig_bytes = ak.sign(&attest);
    c.bench_function("quote_verify_p256_10pcrs", |b| {
        b.iter(|| {
            let signature = Signature::parse(&sig_bytes).unwrap();
            let expected = QuoteExpectation { qualifying_data: &[5; 32], selection: &selection };
            verify_quote(Ak::Tpm(ak.public()), &attest, &signature, &pcrs, &expected).unwrap()
        })
    });
}

fn event_log(c: &mut Criterion) {
    let log = testdata("tpm/eventlogs/go-tpm-tools/ubuntu-2404-amd-sevsnp.bin");
    c.bench_function("eventlog_parse_replay_ubuntu2404_117events", |b| {
        b.iter(|| EventLog::parse(&log).unwrap().replay())
    });
}

fn credential(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let ek = Public::from_tpm2b(&testdata("tpm/quotes/sim-keylime/ek.pub")).unwrap();
    let name = [0u8; 34];
    c.bench_function("make_credential_rsa2048", |b| {
        b.iter(|| make_credential(&ek, &name, &[1; 32], &rng).unwrap())
    });
}

criterion_group!(benches, quote_rsa, quote_ecc, event_log, credential);
criterion_main!(benches);

//! SEV-SNP report verification with the VCEK chain cached (the steady state: one ECDSA
//! P-384 check per report) and uncached (certificate parse plus the RSA-4096 PSS
//! checks VCEK ← ASK ← ARK), the report parser alone, and Azure evidence end to end.
//!
//! `cargo bench -p mooring-attestation --bench snp`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, Criterion};
use mooring_attestation::crypto::Scheme;
use mooring_attestation::snp::azure::{verify_azure_cvm, AzureCvmEvidence};
use mooring_attestation::snp::{Report, SnpCertSource, SnpVerifier};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::Signature;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::quote::QuoteExpectation;
use mooring_testdata::testdata;

/// 2026-01-01, inside the VCEKs' validity.
const NOW: i64 = 1_767_225_600;

fn report_verification(c: &mut Criterion) {
    let report = testdata("snp/genoa/oak-containers/report.bin");
    let vcek = testdata("snp/genoa/oak-containers/vcek.der");
    let verifier = SnpVerifier::new().unwrap();
    verifier.verify(&report, SnpCertSource::Certificates(&vcek), NOW).unwrap();
    c.bench_function("snp_verify_genoa_chain_cached", |b| {
        b.iter(|| verifier.verify(&report, SnpCertSource::Certificates(&vcek), NOW).unwrap())
    });
    c.bench_function("snp_verify_genoa_chain_uncached", |b| {
        b.iter(|| {
            verifier.clear_cache();
            verifier.verify(&report, SnpCertSource::Certificates(&vcek), NOW).unwrap()
        })
    });
    c.bench_function("snp_report_parse", |b| b.iter(|| Report::parse(&report).unwrap()));
}

fn azure(c: &mut Criterion) {
    let base = "snp/azure-cvm-vtpm/milan-v2";
    let hcl = testdata(&format!("{base}/hcl_report.bin"));
    let vcek = testdata(&format!("{base}/vcek.pem"));
    let quote = testdata(&format!("{base}/tpm_quote_attest.bin"));
    let signature = Signature::raw_rsa(
        Scheme::RsaPkcs1(HashAlg::Sha256),
        &testdata(&format!("{base}/tpm_quote_sig_rsassa_sha256.bin")),
    );
    let values: serde_json::Value =
        serde_json::from_slice(&testdata(&format!("{base}/pcrs_sha256.json"))).unwrap();
    let pcrs = PcrValues::from_json(&serde_json::json!({ "sha256": values }).to_string()).unwrap();
    let selection = PcrSelection::single(HashAlg::Sha256, &(0..24).collect::<Vec<u8>>()).unwrap();
    let nonce = hex::decode(
        "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef",
    )
    .unwrap();
    let verifier = SnpVerifier::new().unwrap();
    let evidence = AzureCvmEvidence {
        hcl_report: &hcl,
        certs: SnpCertSource::Certificates(&vcek),
        quote: &quote,
        signature: &signature,
        pcrs: &pcrs,
    };
    let expected = QuoteExpectation { qualifying_data: &nonce, selection: &selection };
    c.bench_function("azure_cvm_verify_chain_cached", |b| {
        b.iter(|| verify_azure_cvm(&evidence, &verifier, &expected, NOW).unwrap())
    });
}

criterion_group!(benches, report_verification, azure);
criterion_main!(benches);

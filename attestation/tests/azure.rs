//! Azure confidential-VM evidence end to end (the two unpacked vectors in
//! `snp/azure-cvm-vtpm/`): HCL report → SNP report → runtime-claims hash → AK → quote →
//! PCRs; tampering with the runtime claims, the quote, the signature or a PCR fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::LazyLock;

use mooring_attestation::crypto::Scheme;
use mooring_attestation::snp::azure::{
    verify_azure_cvm, AzureCvmEvidence, AzureError, HclReport, VerifiedAzureCvm,
};
use mooring_attestation::snp::{SnpCertSource, SnpError, SnpVerifier};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::Signature;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::quote::{QuoteError, QuoteExpectation};
use mooring_testdata::testdata;

/// 2026-01-01.
const T_2026: i64 = 1_767_225_600;

static VERIFIER: LazyLock<SnpVerifier> = LazyLock::new(|| SnpVerifier::new().unwrap());

struct Vector {
    hcl: Vec<u8>,
    vcek: Vec<u8>,
    quote: Vec<u8>,
    signature: Signature,
    pcrs: PcrValues,
    nonce: Vec<u8>,
    dir: &'static str,
}

fn vector(dir: &'static str, nonce: &str) -> Vector {
    let base = format!("snp/azure-cvm-vtpm/{dir}");
    let pcr_json: serde_json::Value =
        serde_json::from_slice(&testdata(&format!("{base}/pcrs_sha256.json"))).unwrap();
    let pcrs = PcrValues::from_json(&serde_json::json!({ "sha256": pcr_json }).to_string()).unwrap();
    Vector {
        hcl: testdata(&format!("{base}/hcl_report.bin")),
        vcek: testdata(&format!("{base}/vcek.pem")),
        quote: testdata(&format!("{base}/tpm_quote_attest.bin")),
        signature: Signature::raw_rsa(
            Scheme::RsaPkcs1(HashAlg::Sha256),
            &testdata(&format!("{base}/tpm_quote_sig_rsassa_sha256.bin")),
        ),
        pcrs,
        nonce: hex::decode(nonce).unwrap(),
        dir,
    }
}

fn vectors() -> [Vector; 2] {
    [
        vector(
            "genoa",
            "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f",
        ),
        vector(
            "milan-v2",
            "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef",
        ),
    ]
}

fn all_sha256() -> PcrSelection {
    PcrSelection::single(HashAlg::Sha256, &(0..24).collect::<Vec<u8>>()).unwrap()
}

impl Vector {
    fn verify_with(
        &self,
        hcl: &[u8],
        quote: &[u8],
        signature: &Signature,
        pcrs: &PcrValues,
    ) -> Result<VerifiedAzureCvm, AzureError> {
        let evidence = AzureCvmEvidence {
            hcl_report: hcl,
            certs: SnpCertSource::Certificates(&self.vcek),
            quote,
            signature,
            pcrs,
        };
        let selection = all_sha256();
        let expected = QuoteExpectation { qualifying_data: &self.nonce, selection: &selection };
        verify_azure_cvm(&evidence, &VERIFIER, &expected, T_2026)
    }

    fn verify(&self) -> Result<VerifiedAzureCvm, AzureError> {
        self.verify_with(&self.hcl, &self.quote, &self.signature, &self.pcrs)
    }

    /// Offset of the runtime claims JSON in the HCL report.
    fn claims_offset(&self) -> usize {
        0x20 + 1184 + 20
    }
}

#[test]
fn both_unpacked_vectors_verify_end_to_end() {
    for v in vectors() {
        let verified = v.verify().unwrap_or_else(|e| panic!("{}: {e}", v.dir));
        let hcl = HclReport::parse(&v.hcl).unwrap();
        assert_eq!(
            hcl.snp_report(),
            testdata(&format!("snp/azure-cvm-vtpm/{}/snp_report.bin", v.dir)).as_slice()
        );
        assert_eq!(
            hcl.runtime_claims(),
            testdata(&format!("snp/azure-cvm-vtpm/{}/runtime_claims.json", v.dir)).as_slice()
        );
        assert_eq!(hcl.hash(), HashAlg::Sha256);
        // The AK in the claims is the one exported as ak_pub.pem.
        let ak = mooring_attestation::x509::spki_public_key_pem(&testdata(&format!(
            "snp/azure-cvm-vtpm/{}/ak_pub.pem",
            v.dir
        )))
        .unwrap();
        assert_eq!(verified.runtime_claims().ak(), &ak, "{}", v.dir);
        assert_eq!(verified.quote().pcrs().bank(HashAlg::Sha256).count(), 24);
        assert!(
            verified.report().claims().id_key_digest().iter().any(|b| *b != 0),
            "Azure launches with an ID block"
        );
        let json = serde_json::to_value(&verified).unwrap();
        assert_eq!(json["runtime_claims"]["vm_configuration"]["secure-boot"], true, "{}", v.dir);
        assert_eq!(json["snp"]["policy"]["debug_allowed"], false);
    }
    // milan-v2's user-data is the quote nonce followed by 16 zero bytes.
    let milan = &vectors()[1];
    let verified = milan.verify().unwrap();
    let user_data = verified.runtime_claims().user_data().unwrap();
    assert_eq!(&user_data[..48], milan.nonce.as_slice());
    assert_eq!(&user_data[48..], &[0; 16]);
}

#[test]
fn tampered_runtime_claims_fail() {
    for v in vectors() {
        let at = v.claims_offset();
        // A changed byte of the JSON (inside the AK modulus, and inside user-data).
        for delta in [60, v.hcl.len().min(at + 1100) - at - 10] {
            let mut hcl = v.hcl.clone();
            hcl[at + delta] ^= 0x01;
            let err = v.verify_with(&hcl, &v.quote, &v.signature, &v.pcrs).unwrap_err();
            assert!(matches!(err, AzureError::RuntimeClaimsHash { .. }), "{}: {err}", v.dir);
        }
        // The SNP report inside.
        let mut hcl = v.hcl.clone();
        hcl[0x20 + 0x50] ^= 1;
        let err = v.verify_with(&hcl, &v.quote, &v.signature, &v.pcrs).unwrap_err();
        assert!(matches!(err, AzureError::Snp(SnpError::BadSignature { .. })), "{}: {err}", v.dir);
    }
}

#[test]
fn tampered_quotes_signatures_and_pcrs_fail() {
    for v in vectors() {
        // Every byte of the quote.
        for i in 0..v.quote.len() {
            let mut quote = v.quote.clone();
            quote[i] ^= 0x01;
            assert!(
                v.verify_with(&v.hcl, &quote, &v.signature, &v.pcrs).is_err(),
                "{}: quote byte {i}",
                v.dir
            );
        }
        let sig_bytes = testdata(&format!("snp/azure-cvm-vtpm/{}/tpm_quote_sig_rsassa_sha256.bin", v.dir));
        let mut bad = sig_bytes.clone();
        bad[100] ^= 1;
        let bad = Signature::raw_rsa(Scheme::RsaPkcs1(HashAlg::Sha256), &bad);
        let err = v.verify_with(&v.hcl, &v.quote, &bad, &v.pcrs).unwrap_err();
        assert!(matches!(err, AzureError::Quote(QuoteError::Signed(_))), "{}: {err}", v.dir);
        let mut pcrs = PcrValues::new();
        for (index, value) in v.pcrs.bank(HashAlg::Sha256) {
            let mut value = value.to_vec();
            if index == 7 {
                value[0] ^= 1;
            }
            pcrs.insert(HashAlg::Sha256, index, value).unwrap();
        }
        let err = v.verify_with(&v.hcl, &v.quote, &v.signature, &pcrs).unwrap_err();
        assert!(matches!(err, AzureError::Quote(QuoteError::PcrDigest { .. })), "{}: {err}", v.dir);
        // Another vector's quote is signed by another AK.
    }
    let [genoa, milan] = vectors();
    let err = genoa.verify_with(&genoa.hcl, &milan.quote, &milan.signature, &milan.pcrs).unwrap_err();
    assert!(matches!(err, AzureError::Quote(_)), "{err}");
    // The expected nonce is enforced.
    let wrong_nonce = Vector { nonce: vec![0; 48], ..vector("genoa", "00") };
    let err = wrong_nonce.verify().unwrap_err();
    assert!(
        matches!(err, AzureError::Quote(QuoteError::Signed(_) | QuoteError::QualifyingData { .. })),
        "{err}"
    );
}

#[test]
fn malformed_hcl_reports_are_refused() {
    let v = &vectors()[0];
    let parse = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut hcl = v.hcl.clone();
        edit(&mut hcl);
        HclReport::parse(&hcl).map(|_| ())
    };
    assert_eq!(parse(&|h| h[0] = b'X'), Err(AzureError::NotHcl(u32::from_le_bytes(*b"XCLA"))));
    assert!(matches!(parse(&|h| h[4] = 9), Err(AzureError::Header { field: "header version", .. })));
    assert!(matches!(parse(&|h| h[8] ^= 1), Err(AzureError::Header { field: "header report_size", .. })));
    assert!(matches!(parse(&|h| h[0x4C0] ^= 1), Err(AzureError::Header { field: "IGVM data_size", .. })));
    assert!(matches!(parse(&|h| h[0x4C4] = 2), Err(AzureError::Header { field: "IGVM version", .. })));
    assert!(matches!(parse(&|h| h[0x4C8] = 4), Err(AzureError::Header { field: "IGVM report_type", .. })));
    assert!(matches!(
        parse(&|h| h[0x4CC] = 9),
        Err(AzureError::Header { field: "IGVM report_data_hash_type", .. })
    ));
    assert!(matches!(parse(&|h| h[0x4D0] = 0xff), Err(AzureError::Header { field: "IGVM data_size", .. })));
    assert!(matches!(parse(&|h| h[0x4D2] = 0xff), Err(AzureError::Codec(_))));
    let last = v.hcl.len() - 1;
    assert_eq!(parse(&|h| h[last] = 1), Err(AzureError::TrailingData { offset: last }));
    assert!(matches!(parse(&|h| h.truncate(0x600)), Err(AzureError::Codec(_))));
    assert!(matches!(parse(&|h| h.resize(9000, 0)), Err(AzureError::Codec(_))));
    // A SHA-384 commitment would need REPORT_DATA to hold a SHA-384 of the claims.
    let mut sha384 = v.hcl.clone();
    sha384[0x4CC] = 2;
    let err = v.verify_with(&sha384, &v.quote, &v.signature, &v.pcrs).unwrap_err();
    assert!(matches!(err, AzureError::RuntimeClaimsHash { hash: HashAlg::Sha384, .. }), "{err}");
}

//! SEV-SNP verification against the eleven real reports in the shared test data:
//! every one verifies with its certificate through every certificate source and every
//! decoded field matches `snp/expected_fields.json`; single-bit changes to the signed
//! region, the signature or the certificate fail; the negative certificates fail the
//! chain; another chip's VCEK fails; CA certificates that are not pinned are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::LazyLock;

use mooring_attestation::snp::cert_table::{CertTable, CertTableKind};
use mooring_attestation::snp::{
    Product, SigningKey, SnpCertSource, SnpError, SnpVerifier, BUILTIN_ROOT_FINGERPRINTS,
};
use mooring_attestation::x509::{CertPathError, SignatureError};
use mooring_testdata::testdata;
use serde_json::Value;

/// 2026-01-01T00:00:00Z: inside every VCEK's validity.
const T_2026: i64 = 1_767_225_600;
/// 2025-06-15: inside the Milan VLEK's validity (it expired 2025-12-10).
const T_VLEK: i64 = 1_750_000_000;

static VERIFIER: LazyLock<SnpVerifier> = LazyLock::new(|| SnpVerifier::new().unwrap());

fn expected() -> serde_json::Map<String, Value> {
    match serde_json::from_slice(&testdata("snp/expected_fields.json")).unwrap() {
        Value::Object(map) => map,
        other => panic!("expected_fields.json is not an object: {other}"),
    }
}

fn time_for(report: &str) -> i64 {
    if report.contains("vlek") {
        T_VLEK
    } else {
        T_2026
    }
}

fn product_dir(product: Product) -> &'static str {
    match product {
        Product::Milan => "milan",
        Product::Genoa => "genoa",
        Product::Turin => "turin",
    }
}

/// Seconds since the epoch of "YYYY-MM-DD HH:MM:SS+00:00".
fn unix(text: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    assert!(text.ends_with("+00:00"), "{text}");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m - 3) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Compares every field `expected_fields.json` lists for a report with the claims.
fn assert_fields(name: &str, entry: &Value, claims: &Value, report: &[u8]) {
    let fields = entry["fields"].as_object().unwrap();
    for (key, want) in fields {
        let got = match key.as_str() {
            "version" | "guest_svn" | "vmpl" | "measurement" | "report_data" | "host_data" | "chip_id"
            | "family_id" | "image_id" | "id_key_digest" | "author_key_digest" | "report_id"
            | "report_id_ma" | "signing_key" | "current_tcb" | "reported_tcb" | "committed_tcb"
            | "launch_tcb" | "launch_mit_vector" | "current_mit_vector" => claims[key].clone(),
            "policy" => Value::from(
                u64::from_str_radix(claims["policy"]["raw"].as_str().unwrap().trim_start_matches("0x"), 16)
                    .unwrap(),
            ),
            "policy_hex" => claims["policy"]["raw"].clone(),
            "platform_info" => claims["platform_info"]["raw"].clone(),
            "author_key_en" | "mask_chip_key" => Value::from(u8::from(claims[key].as_bool().unwrap())),
            "flags" => {
                let bits = u8::from(claims["author_key_en"].as_bool().unwrap())
                    | u8::from(claims["mask_chip_key"].as_bool().unwrap()) << 1
                    | u8::from(claims["signing_key"] == "VLEK") << 2;
                Value::from(format!("{bits:#x}"))
            }
            "cpuid_fam_id" => claims["cpuid"]["family"].clone(),
            "cpuid_mod_id" => claims["cpuid"]["model"].clone(),
            "cpuid_step" => claims["cpuid"]["stepping"].clone(),
            "current_major" | "current_minor" | "current_build" => {
                claims["current_firmware"][key.trim_start_matches("current_")].clone()
            }
            "committed_major" | "committed_minor" | "committed_build" => {
                claims["committed_firmware"][key.trim_start_matches("committed_")].clone()
            }
            "signature_algo" => Value::from(u32::from_le_bytes(report[0x34..0x38].try_into().unwrap())),
            "signature_r_le" => Value::from(hex::encode(&report[0x2A0..0x2E8])),
            "signature_s_le" => Value::from(hex::encode(&report[0x2E8..0x330])),
            other => panic!("{name}: expected_fields.json has field {other} that this test does not compare"),
        };
        assert_eq!(&got, want, "{name}: field {key}");
    }
    assert_eq!(claims["product"], entry["product"], "{name}: product");
    let signer = &entry["signer"];
    let claimed = &claims["signer"];
    assert_eq!(claimed["product_name"], signer["productName"], "{name}");
    let cn = |v: &Value| v.as_str().unwrap().trim_start_matches("CN=").to_owned();
    assert!(
        claimed["subject"].as_str().unwrap().ends_with(&format!("CN={}", cn(&signer["subject_cn"]))),
        "{name}"
    );
    assert!(
        claimed["issuer"].as_str().unwrap().ends_with(&format!("CN={}", cn(&signer["issuer_cn"]))),
        "{name}"
    );
    assert_eq!(claimed["not_before"], Value::from(unix(signer["not_before"].as_str().unwrap())), "{name}");
    assert_eq!(claimed["not_after"], Value::from(unix(signer["not_after"].as_str().unwrap())), "{name}");
    if let Some(hw_id) = signer["hwID"].as_str() {
        assert!(claims["chip_id"].as_str().unwrap().starts_with(hw_id), "{name}: CHIP_ID = hwID");
    }
    let tcb = &claims["reported_tcb"];
    let spl = &signer["spl"];
    for (component, ext) in [
        ("bootloader", "blSPL"),
        ("tee", "teeSPL"),
        ("snp", "snpSPL"),
        ("microcode", "ucodeSPL"),
        ("fmc", "fmcSPL"),
    ] {
        if let Some(value) = spl.get(ext) {
            assert_eq!(&tcb[component], value, "{name}: REPORTED_TCB {component} = {ext}");
        }
    }
}

#[test]
fn all_real_reports_verify_and_every_field_matches() {
    let expected = expected();
    assert_eq!(expected.len(), 11);
    for (name, entry) in &expected {
        let report = testdata(name);
        let cert = testdata(entry["signer_cert"].as_str().unwrap());
        let verified = VERIFIER
            .verify(&report, SnpCertSource::Certificates(&cert), time_for(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let claims = serde_json::to_value(verified.claims()).unwrap();
        assert_fields(name, entry, &claims, &report);
        assert_eq!(claims["root"], "amd", "{name}");
        assert_eq!(
            verified.signer().der(),
            mooring_attestation::x509::CertBundle::from_bytes(&cert).unwrap().certificates()[0].der()
        );
    }
}

#[test]
fn the_same_reports_verify_from_a_certificate_table_a_kds_bundle_and_the_provisioned_set() {
    let expected = expected();
    let mut provisioned = SnpVerifier::builder();
    for entry in expected.values() {
        provisioned = provisioned.provision(&testdata(entry["signer_cert"].as_str().unwrap()));
    }
    // KDS chains dropped beside the VCEKs hold only pinned CAs, which are skipped.
    for product in ["milan", "genoa", "turin"] {
        provisioned = provisioned.provision(&testdata(&format!("snp/amd-ca/{product}/cert_chain_vcek.pem")));
    }
    let provisioned = provisioned.build().unwrap();
    assert_eq!(provisioned.provisioned(), 11);
    // A CA that is not pinned is a configuration error.
    let mut altered = pem_der("snp/amd-ca/milan/ark.pem");
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let err = SnpVerifier::builder().provision(&altered).build().unwrap_err();
    assert!(matches!(err, SnpError::UnknownRoot { .. }), "{err}");
    for (name, entry) in &expected {
        let report = testdata(name);
        let leaf = mooring_attestation::x509::CertBundle::from_bytes(&testdata(
            entry["signer_cert"].as_str().unwrap(),
        ))
        .unwrap()
        .certificates()[0]
            .der()
            .to_vec();
        let vlek = name.contains("vlek");
        let product = entry["product"].as_str().unwrap();
        let ark = pem_der(&format!("snp/amd-ca/{product}/ark.pem"));
        let issuer = pem_der(&format!("snp/amd-ca/{product}/{}.pem", if vlek { "asvk" } else { "ask" }));
        let leaf_kind = if vlek { CertTableKind::Vlek } else { CertTableKind::Vcek };
        let table = CertTable::encode(&[
            (CertTableKind::Ark, &ark),
            (CertTableKind::Ask, &issuer),
            (leaf_kind, &leaf),
        ]);
        let at = time_for(name);
        let from_table = VERIFIER
            .verify(&report, SnpCertSource::CertTable(&table), at)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The VCEK followed by the KDS cert_chain (ASK/ASVK, ARK) as PEM.
        let chain =
            testdata(&format!("snp/amd-ca/{product}/cert_chain_{}.pem", if vlek { "vlek" } else { "vcek" }));
        let mut bundle = pem(&leaf).into_bytes();
        bundle.extend_from_slice(&chain);
        let from_bundle = VERIFIER
            .verify(&report, SnpCertSource::Certificates(&bundle), at)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let from_set = provisioned
            .verify(&report, SnpCertSource::Provisioned, at)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_table.claims(), from_bundle.claims(), "{name}");
        assert_eq!(from_table.claims(), from_set.claims(), "{name}");
    }
}

fn pem_der(path: &str) -> Vec<u8> {
    mooring_attestation::x509::CertBundle::from_bytes(&testdata(path)).unwrap().certificates()[0]
        .der()
        .to_vec()
}

fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[test]
fn the_vlek_is_expired_now_and_the_report_names_its_kind() {
    let report = testdata("snp/milan-vlek/trustee/report.bin");
    let vlek = testdata("snp/milan-vlek/trustee/vlek.der");
    let verified = VERIFIER.verify(&report, SnpCertSource::Certificates(&vlek), T_VLEK).unwrap();
    assert_eq!(verified.claims().signing_key(), SigningKey::Vlek);
    assert_eq!(verified.claims().signer().csp_id(), Some("CN=cc-us-east-2.amazonaws.com"));
    let err = VERIFIER.verify(&report, SnpCertSource::Certificates(&vlek), T_2026).unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertPathError::Expired { .. })), "{err}");
    // A VLEK report cannot be checked with a VCEK: it names the other key.
    let vcek = testdata("snp/milan/oak-containers/vcek.der");
    let err = VERIFIER.verify(&report, SnpCertSource::Certificates(&vcek), T_2026).unwrap_err();
    assert!(matches!(err, SnpError::BadSignature { kind: SigningKey::Vcek, .. }), "{err}");
}

#[test]
fn the_debug_policy_report_is_reported_as_such() {
    let report = testdata("snp/milan/go-sev-guest/report.bin");
    let vcek = testdata("snp/milan/go-sev-guest/vcek.der");
    let verified = VERIFIER.verify(&report, SnpCertSource::Certificates(&vcek), T_2026).unwrap();
    assert!(verified.policy().debug_allowed());
    assert_eq!(serde_json::to_value(verified.claims()).unwrap()["policy"]["debug_allowed"], true);
    let other = testdata("snp/milan/virtee-sev/report.bin");
    let vcek = testdata("snp/milan/virtee-sev/vcek.der");
    assert!(!VERIFIER
        .verify(&other, SnpCertSource::Certificates(&vcek), T_2026)
        .unwrap()
        .policy()
        .debug_allowed());
}

/// Every single-bit change of the signed region and of the signature field fails.
#[test]
fn every_bit_flip_of_the_report_fails() {
    let verifier = SnpVerifier::new().unwrap();
    for (report, vcek) in [
        ("snp/milan/virtee-sev/report.bin", "snp/milan/virtee-sev/vcek.der"),
        ("snp/turin/oak-containers/report.bin", "snp/turin/oak-containers/vcek.der"),
    ] {
        let original = testdata(report);
        let vcek = testdata(vcek);
        verifier.verify(&original, SnpCertSource::Certificates(&vcek), T_2026).unwrap();
        let mut bad_signature = 0;
        for bit in 0..original.len() * 8 {
            let mut flipped = original.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            match verifier.verify(&flipped, SnpCertSource::Certificates(&vcek), T_2026) {
                Ok(_) => panic!("{report}: flipping bit {bit} (byte {:#x}) still verifies", bit / 8),
                Err(SnpError::BadSignature { .. }) => bad_signature += 1,
                Err(_) => {}
            }
        }
        // Most flips reach the signature check; the rest are refused by the parser.
        assert!(bad_signature > 4000, "{report}: only {bad_signature} flips reached the signature check");
        assert_eq!(verifier.cached_chains(), 1, "one VCEK, verified once");
        verifier.clear_cache();
    }
}

/// Every single-bit change of the VCEK fails (parse, chain or report signature).
#[test]
fn every_bit_flip_of_the_certificate_fails() {
    let report = testdata("snp/genoa/oak-containers/report.bin");
    let vcek = testdata("snp/genoa/oak-containers/vcek.der");
    VERIFIER.verify(&report, SnpCertSource::Certificates(&vcek), T_2026).unwrap();
    for bit in 0..vcek.len() * 8 {
        let mut flipped = vcek.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        if let Ok(v) = VERIFIER.verify(&report, SnpCertSource::Certificates(&flipped), T_2026) {
            panic!("flipping VCEK bit {bit} (byte {}) still verifies: {:?}", bit / 8, v.signer());
        }
    }
}

#[test]
fn the_negative_certificates_fail_the_chain() {
    let report = testdata("snp/milan/virtee-sev/report.bin");
    for name in ["vcek-invalid-legacy.der", "vcek-invalid-new.der"] {
        let cert = testdata(&format!("snp/negative/trustee/{name}"));
        let err = VERIFIER.verify(&report, SnpCertSource::Certificates(&cert), T_2026).unwrap_err();
        assert!(
            matches!(
                err,
                SnpError::Chain(CertPathError::Signature { source: SignatureError::BadSignature, .. })
            ),
            "{name}: {err}"
        );
    }
}

#[test]
fn another_chips_vcek_fails() {
    // Same product and TCB (bl=3, snp=8, ucode=115), different chip.
    let report = testdata("snp/milan/virtee-sev/report.bin");
    let other = testdata("snp/milan/trustee/vcek.der");
    let err = VERIFIER.verify(&report, SnpCertSource::Certificates(&other), T_2026).unwrap_err();
    assert!(matches!(err, SnpError::BadSignature { kind: SigningKey::Vcek, .. }), "{err}");
    // Same measurement, two chips (Oak restricted kernel vs containers).
    let report = testdata("snp/milan/oak-restricted-kernel/report.bin");
    let other = testdata("snp/milan/oak-containers/vcek.der");
    let err = VERIFIER.verify(&report, SnpCertSource::Certificates(&other), T_2026).unwrap_err();
    assert!(matches!(err, SnpError::BadSignature { .. }), "{err}");
    // And a provisioned set holding only the other chip's VCEK has nothing for it.
    let set = SnpVerifier::builder().provision(&other).build().unwrap();
    let err = set.verify(&report, SnpCertSource::Provisioned, T_2026).unwrap_err();
    assert!(matches!(err, SnpError::MissingCertificate { kind: SigningKey::Vcek, .. }), "{err}");
}

#[test]
fn a_vcek_of_another_product_is_refused() {
    // A Genoa report (CPUID 19h/11h) with a Milan VCEK.
    let report = testdata("snp/genoa/oak-containers/report.bin");
    let milan = testdata("snp/milan/oak-containers/vcek.der");
    let err = VERIFIER.verify(&report, SnpCertSource::Certificates(&milan), T_2026).unwrap_err();
    assert_eq!(err, SnpError::ProductMismatch { report: "Genoa".into(), certificate: "Milan".into() });
}

#[test]
fn supplied_cas_must_be_the_pinned_ones() {
    let report = testdata("snp/milan/oak-containers/report.bin");
    let vcek = testdata("snp/milan/oak-containers/vcek.der");
    let ark = |p: Product| pem_der(&format!("snp/amd-ca/{}/ark.pem", product_dir(p)));
    let ask = |p: Product| pem_der(&format!("snp/amd-ca/{}/ask.pem", product_dir(p)));
    let table = |ark: &[u8], ask: &[u8]| {
        CertTable::encode(&[
            (CertTableKind::Ark, ark),
            (CertTableKind::Ask, ask),
            (CertTableKind::Vcek, &vcek),
        ])
    };
    let ok = table(&ark(Product::Milan), &ask(Product::Milan));
    VERIFIER.verify(&report, SnpCertSource::CertTable(&ok), T_2026).unwrap();
    // Genoa's ARK is pinned, but not the root of a Milan VCEK.
    let err = VERIFIER.verify(
        &report,
        SnpCertSource::CertTable(&table(&ark(Product::Genoa), &ask(Product::Milan))),
        T_2026,
    );
    assert!(matches!(err, Err(SnpError::NotPinned { role: "ARK", .. })), "{err:?}");
    let err = VERIFIER.verify(
        &report,
        SnpCertSource::CertTable(&table(&ark(Product::Milan), &ask(Product::Turin))),
        T_2026,
    );
    assert!(matches!(err, Err(SnpError::NotPinned { role: "ASK/ASVK", .. })), "{err:?}");
    // The ASVK is pinned but does not issue VCEKs.
    let asvk = pem_der("snp/amd-ca/milan/asvk.pem");
    let err = VERIFIER.verify(&report, SnpCertSource::CertTable(&table(&ark(Product::Milan), &asvk)), T_2026);
    assert!(matches!(err, Err(SnpError::NotPinned { role: "ASK/ASVK", .. })), "{err:?}");
    // A certificate that is not byte-identical (one bit of the ARK's signature changed).
    let mut altered = ark(Product::Milan);
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let err =
        VERIFIER.verify(&report, SnpCertSource::CertTable(&table(&altered, &ask(Product::Milan))), T_2026);
    assert!(matches!(err, Err(SnpError::NotPinned { role: "ARK", .. })), "{err:?}");
    // The same in a PEM bundle.
    let mut bundle = pem(&vcek).into_bytes();
    bundle.extend_from_slice(pem(&ark(Product::Turin)).as_bytes());
    let err = VERIFIER.verify(&report, SnpCertSource::Certificates(&bundle), T_2026);
    assert!(matches!(err, Err(SnpError::NotPinned { role: "ARK", .. })), "{err:?}");
    // A table without the VCEK.
    let no_vcek = CertTable::encode(&[(CertTableKind::Ark, &ark(Product::Milan))]);
    let err = VERIFIER.verify(&report, SnpCertSource::CertTable(&no_vcek), T_2026);
    assert!(matches!(err, Err(SnpError::MissingCertificate { kind: SigningKey::Vcek, .. })), "{err:?}");
}

#[test]
fn length_and_version_are_checked_first() {
    let report = testdata("snp/genoa/trustee-e2e/report.bin");
    let vcek = testdata("snp/genoa/trustee-e2e/vcek.der");
    let verify = |bytes: &[u8]| VERIFIER.verify(bytes, SnpCertSource::Certificates(&vcek), T_2026);
    assert_eq!(verify(&report[..1183]).unwrap_err(), SnpError::Truncated { len: 1183 });
    assert_eq!(verify(&[]).unwrap_err(), SnpError::Truncated { len: 0 });
    let mut long = report.clone();
    long.push(0);
    assert_eq!(verify(&long).unwrap_err(), SnpError::TrailingBytes { len: 1185 });
    for version in [0u32, 1, 4, 6, 0xffff_ffff] {
        let mut bad = report.clone();
        bad[..4].copy_from_slice(&version.to_le_bytes());
        assert_eq!(verify(&bad).unwrap_err(), SnpError::UnsupportedVersion(version));
    }
    assert_eq!(
        VERIFIER.verify(&report, SnpCertSource::Certificates(&vcek), -1).unwrap_err(),
        SnpError::BadTime(-1)
    );
    // The cache does not outlive the chain: before the VCEK's notBefore the full check runs.
    let err = VERIFIER.verify(&report, SnpCertSource::Certificates(&vcek), 1_600_000_000).unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertPathError::NotYetValid { .. })), "{err}");
}

/// The pins in the source are MANIFEST §3.1's fingerprints of AMD's certificates.
#[test]
fn builtin_pins_are_the_amd_certificates_in_the_test_data() {
    use sha2::Digest as _;
    assert_eq!(BUILTIN_ROOT_FINGERPRINTS.len(), 9);
    for (product, role, pin) in BUILTIN_ROOT_FINGERPRINTS {
        let file = format!("snp/amd-ca/{}/{}.pem", product_dir(product), role.to_lowercase());
        assert_eq!(hex::encode(sha2::Sha256::digest(pem_der(&file))), pin, "{file}");
    }
}

#[test]
fn verifier_and_proofs_are_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SnpVerifier>();
    shareable::<mooring_attestation::snp::VerifiedReport>();
    shareable::<mooring_attestation::snp::azure::VerifiedAzureCvm>();
}

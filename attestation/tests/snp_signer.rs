//! Every SEV-SNP verifier check against reports from the test signer (`snp::sim`), each
//! negative flipping exactly the property checked: a correctly signed report with one
//! field changed, or a certificate saying one thing differently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::LazyLock;

use mooring_attestation::snp::cert_table::{CertTable, CertTableKind};
use mooring_attestation::snp::sim::{LeafSpec, ReportFields, TestSigner};
use mooring_attestation::snp::{
    Product, RootOrigin, SigningKey, SnpCertSource, SnpError, SnpVerifier, TcbParts, TcbVersion,
};
use mooring_attestation::x509::CertPathError;

/// 2030-01-01, inside the test chain's validity.
const NOW: i64 = 1_893_456_000;

struct Platform {
    signer: TestSigner,
    verifier: SnpVerifier,
}

fn platform(product: Product) -> Platform {
    let signer = TestSigner::generate_for(product);
    let verifier = SnpVerifier::builder()
        .trust_test_root(product, signer.ark_der(), signer.ask_der(), Some(signer.asvk_der()))
        .build()
        .unwrap();
    Platform { signer, verifier }
}

static MILAN: LazyLock<Platform> = LazyLock::new(|| platform(Product::Milan));
static TURIN: LazyLock<Platform> = LazyLock::new(|| platform(Product::Turin));

impl Platform {
    fn verify(&self, report: &[u8]) -> Result<mooring_attestation::snp::VerifiedReport, SnpError> {
        self.verifier.verify(report, SnpCertSource::CertTable(&self.signer.cert_table()), NOW)
    }

    fn verify_with(
        &self,
        report: &[u8],
        cert: &[u8],
    ) -> Result<mooring_attestation::snp::VerifiedReport, SnpError> {
        self.verifier.verify(report, SnpCertSource::Certificates(cert), NOW)
    }

    fn signed(&self, change: impl FnOnce(&mut ReportFields)) -> Vec<u8> {
        let mut fields = self.signer.report_fields();
        change(&mut fields);
        self.signer.sign(&fields)
    }

    /// A valid report with `byte` set to `value`, signed again.
    fn poked(&self, byte: usize, value: u8) -> Vec<u8> {
        let mut report = self.signer.sign(&self.signer.report_fields());
        report[byte] = value;
        self.signer.resign(&mut report, SigningKey::Vcek);
        report
    }
}

#[test]
fn test_signer_reports_verify_through_every_source_with_the_chosen_fields() {
    let p = &*MILAN;
    let report = p.signed(|f| {
        f.report_data = [0x5a; 64];
        f.measurement = [0x42; 48];
        f.host_data = [7; 32];
        f.vmpl = 2;
        f.guest_svn = 9;
    });
    let verified = p.verify(&report).unwrap();
    let claims = verified.claims();
    assert_eq!(claims.report_data(), &[0x5a; 64]);
    assert_eq!(claims.measurement(), &[0x42; 48]);
    assert_eq!(claims.host_data(), &[7; 32]);
    assert_eq!((claims.vmpl(), claims.guest_svn(), claims.version()), (2, 9, 5));
    assert_eq!(claims.chip_id(), &p.signer.chip_id());
    assert_eq!(claims.root(), RootOrigin::Test);
    assert_eq!(claims.product(), Product::Milan);
    assert_eq!(claims.signing_key(), SigningKey::Vcek);
    assert_eq!(claims.reported_tcb().parts(), p.signer.tcb());
    assert!(!claims.policy().debug_allowed());
    assert_eq!(serde_json::to_value(claims).unwrap()["root"], "test");
    // The leaf alone, and the provisioned set.
    p.verify_with(&report, p.signer.vcek_der()).unwrap();
    let provisioned = SnpVerifier::builder()
        .trust_test_root(Product::Milan, p.signer.ark_der(), p.signer.ask_der(), None)
        .provision(p.signer.vcek_der())
        .build()
        .unwrap();
    assert_eq!(provisioned.verify(&report, SnpCertSource::Provisioned, NOW).unwrap().claims(), claims);
}

#[test]
fn the_test_root_is_not_trusted_unless_configured() {
    let p = &*MILAN;
    let report = p.signed(|_| {});
    let amd_only = SnpVerifier::new().unwrap();
    let err = amd_only.verify(&report, SnpCertSource::Certificates(p.signer.vcek_der()), NOW).unwrap_err();
    assert!(matches!(err, SnpError::UnknownRoot { .. }), "{err}");
    // Its table's ARK is not pinned either; the leaf is refused first.
    let err = amd_only.verify(&report, SnpCertSource::CertTable(&p.signer.cert_table()), NOW).unwrap_err();
    assert!(matches!(err, SnpError::UnknownRoot { .. }), "{err}");
    // Another test platform's root does not vouch for this one.
    let other = TestSigner::generate();
    let other_verifier = SnpVerifier::builder()
        .trust_test_root(Product::Milan, other.ark_der(), other.ask_der(), None)
        .build()
        .unwrap();
    let err =
        other_verifier.verify(&report, SnpCertSource::Certificates(p.signer.vcek_der()), NOW).unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertPathError::Signature { .. })), "{err}");
    // A table carrying another ARK than the configured one is refused.
    let table = CertTable::encode(&[
        (CertTableKind::Ark, other.ark_der()),
        (CertTableKind::Ask, p.signer.ask_der()),
        (CertTableKind::Vcek, p.signer.vcek_der()),
    ]);
    let err = p.verifier.verify(&report, SnpCertSource::CertTable(&table), NOW).unwrap_err();
    assert!(matches!(err, SnpError::NotPinned { role: "ARK", .. }), "{err}");
}

#[test]
fn a_debug_policy_is_reported() {
    let p = &*MILAN;
    let report = p.signed(|f| f.policy |= 1 << 19);
    let verified = p.verify(&report).unwrap();
    assert!(verified.policy().debug_allowed());
    let json = serde_json::to_value(verified.claims()).unwrap();
    assert_eq!(json["policy"]["debug_allowed"], true);
    assert_eq!(json["policy"]["raw"], "0xb0000");
}

#[test]
fn reserved_fields_must_be_zero() {
    let p = &*MILAN;
    for (byte, field) in [
        (0x4C, "0x4C (reserved)"),
        (0x18B, "0x18B..0x1A0 (reserved)"),
        (0x19F, "0x18B..0x1A0 (reserved)"),
        (0x1EB, "0x1EB (reserved)"),
        (0x1EF, "0x1EF (reserved)"),
        (0x208, "0x208..0x2A0 (reserved)"),
        (0x29F, "0x208..0x2A0 (reserved)"),
        (0x4A0 - 1, "SIGNATURE 0x330..0x4A0 (reserved)"),
        (0x330, "SIGNATURE 0x330..0x4A0 (reserved)"),
    ] {
        assert_eq!(p.verify(&p.poked(byte, 1)).unwrap_err(), SnpError::Reserved { field }, "byte {byte:#x}");
    }
    // The flags word's bits 31:5.
    assert_eq!(p.verify(&p.poked(0x48, 0x20)).unwrap_err(), SnpError::Reserved { field: "0x48 bits 31:5" });
    // The signature's zero-extension above 48 bytes.
    let mut report = p.signed(|_| {});
    report[0x2A0 + 48] = 1;
    assert_eq!(p.verify(&report).unwrap_err(), SnpError::Reserved { field: "SIGNATURE.R" });
    let mut report = p.signed(|_| {});
    report[0x2E8 + 71] = 1;
    assert_eq!(p.verify(&report).unwrap_err(), SnpError::Reserved { field: "SIGNATURE.S" });
    // Fields reserved before a version: CPUID in v2, mitigation vectors before v5.
    let v2 = p.signed(|f| f.version = 2);
    let mut with_cpuid = v2.clone();
    with_cpuid[0x188] = 0x19;
    p.signer.resign(&mut with_cpuid, SigningKey::Vcek);
    assert_eq!(
        p.verify(&with_cpuid).unwrap_err(),
        SnpError::Reserved { field: "0x188..0x18B (reserved before version 3)" }
    );
    let v3 = p.signed(|f| f.version = 3);
    let mut with_mit = v3.clone();
    with_mit[0x1F8] = 1;
    p.signer.resign(&mut with_mit, SigningKey::Vcek);
    assert_eq!(
        p.verify(&with_mit).unwrap_err(),
        SnpError::Reserved { field: "0x1F8..0x208 (reserved before version 5)" }
    );
    // Policy: bit 17 must be one, bits 63:26 zero.
    let err = p.verify(&p.signed(|f| f.policy = 0x1_0000)).unwrap_err();
    assert_eq!(err, SnpError::Reserved { field: "POLICY bit 17 (must be one)" });
    let err = p.verify(&p.signed(|f| f.policy |= 1 << 40)).unwrap_err();
    assert_eq!(err, SnpError::Reserved { field: "POLICY bits 63:26" });
    // TCB reserved bytes (bytes 2-5 on Milan).
    let mut tcb = TcbVersion::from_parts(Product::Milan, p.signer.tcb()).raw();
    tcb[3] = 1;
    let err = p.verify(&p.signed(|f| f.launch_tcb = tcb)).unwrap_err();
    assert_eq!(err, SnpError::Reserved { field: "LAUNCH_TCB reserved bytes" });
    let err = p.verify(&p.signed(|f| f.reported_tcb = tcb)).unwrap_err();
    assert_eq!(err, SnpError::Reserved { field: "REPORTED_TCB reserved bytes" });
}

#[test]
fn versions_2_3_and_5_verify_and_others_do_not() {
    let p = &*MILAN;
    for version in [2, 3, 5] {
        let claims = p.verify(&p.signed(|f| f.version = version)).unwrap().into_claims();
        assert_eq!(claims.version(), version);
        assert_eq!(claims.cpuid().is_some(), version >= 3);
        assert_eq!(claims.launch_mit_vector().is_some(), version >= 5);
        // Version 2 has no CPUID: the product comes from the chain.
        assert_eq!(claims.product(), Product::Milan);
    }
    for version in [1, 4, 6] {
        assert_eq!(
            p.verify(&p.signed(|f| f.version = version)).unwrap_err(),
            SnpError::UnsupportedVersion(version)
        );
    }
    assert_eq!(
        p.verify(&p.signed(|f| f.signature_algo = 2)).unwrap_err(),
        SnpError::UnsupportedSignatureAlgorithm(2)
    );
}

#[test]
fn signing_key_field() {
    let p = &*MILAN;
    assert_eq!(p.verify(&p.signed(|f| f.signing_key = 7)).unwrap_err(), SnpError::NotSigned);
    assert_eq!(p.verify(&p.signed(|f| f.signing_key = 3)).unwrap_err(), SnpError::UnknownSigningKey(3));
}

#[test]
fn the_signing_key_kind_must_match_the_certificate() {
    let p = &*MILAN;
    // Says VLEK, signed by the VCEK, checked with the VCEK certificate.
    let mut says_vlek = p.signer.report_fields();
    says_vlek.signing_key = 1;
    let mut report = says_vlek.to_bytes();
    p.signer.resign(&mut report, SigningKey::Vcek);
    assert_eq!(
        p.verify_with(&report, p.signer.vcek_der()).unwrap_err(),
        SnpError::WrongSigningKeyKind { report: SigningKey::Vlek, certificate: SigningKey::Vcek }
    );
    // Says VCEK, signed by the VLEK, checked with the VLEK certificate.
    let mut report = p.signer.report_fields().to_bytes();
    p.signer.resign(&mut report, SigningKey::Vlek);
    assert_eq!(
        p.verify_with(&report, p.signer.vlek_der()).unwrap_err(),
        SnpError::WrongSigningKeyKind { report: SigningKey::Vcek, certificate: SigningKey::Vlek }
    );
    // A VLEK report verifies with the VLEK table (ASVK in the ASK slot).
    let vlek_report = p.signed(|f| {
        f.signing_key = 1;
        f.chip_id = [0; 64];
    });
    let table = p.signer.vlek_cert_table();
    let verified = p.verifier.verify(&vlek_report, SnpCertSource::CertTable(&table), NOW).unwrap();
    assert_eq!(verified.claims().signing_key(), SigningKey::Vlek);
    assert_eq!(verified.claims().signer().csp_id(), Some("CN=mooring-test-csp"));
    // ... but not with the VCEK table, which has no VLEK entry.
    let err = p.verify(&vlek_report).unwrap_err();
    assert!(matches!(err, SnpError::MissingCertificate { kind: SigningKey::Vlek, .. }), "{err}");
    // With the ASK in the VLEK table's ASK slot, the ASK is not the VLEK's issuer.
    let mixed = CertTable::encode(&[
        (CertTableKind::Ark, p.signer.ark_der()),
        (CertTableKind::Ask, p.signer.ask_der()),
        (CertTableKind::Vlek, p.signer.vlek_der()),
    ]);
    let err = p.verifier.verify(&vlek_report, SnpCertSource::CertTable(&mixed), NOW).unwrap_err();
    assert!(matches!(err, SnpError::NotPinned { role: "ASK/ASVK", .. }), "{err}");
}

#[test]
fn chip_id_must_be_the_vceks_hwid() {
    let p = &*MILAN;
    let err = p.verify(&p.signed(|f| f.chip_id[63] ^= 1)).unwrap_err();
    assert!(matches!(err, SnpError::ChipIdMismatch { .. }), "{err}");
    // Masked CHIP_ID (all zero) cannot be checked against a VCEK: refused.
    let err = p.verify(&p.signed(|f| f.chip_id = [0; 64])).unwrap_err();
    assert!(matches!(err, SnpError::ChipIdMismatch { .. }), "{err}");
    // Turin: 8 bytes of hwID, the rest of CHIP_ID zero.
    let t = &*TURIN;
    t.verify(&t.signed(|_| {})).unwrap();
    let err = t.verify(&t.signed(|f| f.chip_id[8] = 1)).unwrap_err();
    assert!(matches!(err, SnpError::ChipIdMismatch { .. }), "{err}");
    let err = t.verify(&t.signed(|f| f.chip_id[0] ^= 0x80)).unwrap_err();
    assert!(matches!(err, SnpError::ChipIdMismatch { .. }), "{err}");
}

#[test]
fn reported_tcb_must_equal_the_certificates_spls() {
    let p = &*MILAN;
    let tcb = p.signer.tcb();
    for (component, changed) in [
        ("bootloader", TcbParts { bootloader: tcb.bootloader + 1, ..tcb }),
        ("tee", TcbParts { tee: tcb.tee + 1, ..tcb }),
        ("snp", TcbParts { snp: tcb.snp - 1, ..tcb }),
        ("microcode", TcbParts { microcode: tcb.microcode + 1, ..tcb }),
    ] {
        let raw = TcbVersion::from_parts(Product::Milan, changed).raw();
        let err = p.verify(&p.signed(|f| f.reported_tcb = raw)).unwrap_err();
        assert!(
            matches!(err, SnpError::TcbMismatch { component: c, .. } if c == component),
            "{component}: {err}"
        );
    }
    // The other TCBs are reported, not cross-checked.
    let newer = TcbVersion::from_parts(Product::Milan, TcbParts { microcode: tcb.microcode + 2, ..tcb });
    let claims = p.verify(&p.signed(|f| f.current_tcb = newer.raw())).unwrap().into_claims();
    assert!(claims.current_tcb() > claims.reported_tcb());
    assert!(claims.reported_tcb().at_least(&TcbParts { microcode: 200, ..tcb }));
    assert!(!claims.reported_tcb().at_least(&TcbParts { snp: 25, ..tcb }));
    // Turin's FMC SPL is part of it, at its own offset.
    let t = &*TURIN;
    let tcb = t.signer.tcb();
    let raw = TcbVersion::from_parts(Product::Turin, TcbParts { fmc: tcb.fmc + 1, ..tcb }).raw();
    let err = t.verify(&t.signed(|f| f.reported_tcb = raw)).unwrap_err();
    assert_eq!(err, SnpError::TcbMismatch { component: "fmc", report: tcb.fmc + 1, certificate: tcb.fmc });
    let claims = serde_json::to_value(t.verify(&t.signed(|_| {})).unwrap().claims()).unwrap();
    assert_eq!(claims["reported_tcb"]["fmc"], tcb.fmc);
    assert_eq!(claims["reported_tcb"]["raw"], hex::encode(TcbVersion::from_parts(Product::Turin, tcb).raw()));
}

#[test]
fn certificate_validity_is_checked_at_the_given_time() {
    let p = &*MILAN;
    let report = p.signed(|_| {});
    let expired = p.signer.issue_vcek(&LeafSpec { not_after: NOW - 1, ..p.signer.vcek_spec() });
    let err = p.verify_with(&report, &expired).unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertPathError::Expired { .. })), "{err}");
    let future = p.signer.issue_vcek(&LeafSpec { not_before: NOW + 1, ..p.signer.vcek_spec() });
    let err = p.verify_with(&report, &future).unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertPathError::NotYetValid { .. })), "{err}");
    // Cached, the same leaf is still refused outside its window.
    p.verify_with(&report, p.signer.vcek_der()).unwrap();
    let err = p
        .verifier
        .verify(&report, SnpCertSource::Certificates(p.signer.vcek_der()), 2_600_000_000)
        .unwrap_err();
    assert!(matches!(err, SnpError::Chain(CertPathError::Expired { .. })), "{err}");
}

#[test]
fn certificate_extensions_are_required_and_checked() {
    let p = &*MILAN;
    let report = p.signed(|_| {});
    let no_hwid = p.signer.issue_vcek(&LeafSpec { hw_id: None, ..p.signer.vcek_spec() });
    let err = p.verify_with(&report, &no_hwid).unwrap_err();
    assert!(matches!(err, SnpError::MissingExtension { extension: "hwID", .. }), "{err}");
    let short_hwid = p.signer.issue_vcek(&LeafSpec { hw_id: Some(vec![1; 8]), ..p.signer.vcek_spec() });
    let err = p.verify_with(&report, &short_hwid).unwrap_err();
    assert!(matches!(err, SnpError::MalformedExtension { extension: "hwID", .. }), "{err}");
    let genoa_name = p.signer.issue_vcek(&LeafSpec { product_name: "Genoa".into(), ..p.signer.vcek_spec() });
    let err = p.verify_with(&report, &genoa_name).unwrap_err();
    assert_eq!(err, SnpError::ProductMismatch { report: "Milan".into(), certificate: "Genoa".into() });
}

#[test]
fn cpuid_must_name_a_known_product_matching_the_chain() {
    let p = &*MILAN;
    let err = p.verify(&p.signed(|f| f.cpuid = [0x17, 0x31, 0])).unwrap_err();
    assert_eq!(err, SnpError::UnknownProduct { family: 0x17, model: 0x31 });
    let err = p.verify(&p.signed(|f| f.cpuid = [0x19, 0x11, 1])).unwrap_err();
    assert_eq!(err, SnpError::ProductMismatch { report: "Genoa".into(), certificate: "Milan".into() });
}

#[test]
fn verified_chains_are_cached_and_results_do_not_depend_on_the_cache() {
    let p = platform(Product::Genoa);
    let report = p.signed(|_| {});
    assert_eq!(p.verifier.cached_chains(), 0);
    let first = p.verify(&report).unwrap();
    assert_eq!(p.verifier.cached_chains(), 1);
    let second = p.verify(&report).unwrap();
    assert_eq!(first.claims(), second.claims());
    let bad = p.signed(|f| f.chip_id[1] ^= 1);
    let cached_err = p.verify(&bad).unwrap_err();
    p.verifier.clear_cache();
    assert_eq!(p.verifier.cached_chains(), 0);
    assert_eq!(p.verify(&bad).unwrap_err(), cached_err);
}

#[test]
fn every_bit_flip_of_a_test_report_fails() {
    let p = &*MILAN;
    let report = p.signed(|f| f.report_data = [0xa5; 64]);
    let table = p.signer.cert_table();
    p.verifier.verify(&report, SnpCertSource::CertTable(&table), NOW).unwrap();
    for bit in 0..report.len() * 8 {
        let mut flipped = report.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            p.verifier.verify(&flipped, SnpCertSource::CertTable(&table), NOW).is_err(),
            "bit {bit} (byte {:#x})",
            bit / 8
        );
    }
}

//! Whole CA bundles from files and directories, their errors, and a root whose RDN set is
//! not sorted.

use mooring_attestation::x509::bundle::{
    self, load_dir, load_file, parse_certificates, BundleError, Recursion,
};
use mooring_attestation::x509::{
    spki_public_key_pem, CertBundle, Certificate, CertificateError, KeyError, TrustStore,
};
use mooring_testdata::testdata;

use crate::{at, keylime, path, KEYLIME, T_2026};

#[test]
fn whole_ca_bundles_load() {
    let keylime = load_dir(&path(KEYLIME), Recursion::TopLevel).unwrap();
    assert_eq!(keylime.len(), 51);
    let curated = load_dir(&path("tpm/ek-ca/tpm-ca-certificates"), Recursion::TopLevel).unwrap();
    assert_eq!(curated.len(), 26 + 143);
    let vendor = load_dir(&path("tpm/ek-ca/tpm-key_attestation-roots"), Recursion::Recursive).unwrap();
    assert_eq!(vendor.len(), 25);
    assert!(matches!(
        load_dir(&path("tpm/ek-ca/tpm-key_attestation-roots"), Recursion::TopLevel),
        Err(BundleError::Empty { .. })
    ));
    let all = load_dir(&path("tpm/ek-ca"), Recursion::Recursive).unwrap();
    assert_eq!(all.len(), 51 + 169 + 25 + 5);

    // Text dumps before the PEM block.
    for name in ["Alibaba_Cloud_vTPM_EK.pem", "Nationz_TPM_EK.pem"] {
        assert!(std::fs::read_to_string(path(&format!("{KEYLIME}/{name}")))
            .unwrap()
            .starts_with("Certificate:"));
        assert_eq!(load_file(&path(&format!("{KEYLIME}/{name}"))).unwrap().len(), 1);
    }

    // The curated intermediates chain to the curated anchors (which include the
    // AMD Pluton Global Factory ICA), a year after each was issued (STM TPM ECC
    // Intermediate CA 01 was issued two weeks before its root's notBefore).
    let roots = load_file(&path("tpm/ek-ca/tpm-ca-certificates/tpm-ca-certificates.pem")).unwrap();
    let intermediates =
        load_file(&path("tpm/ek-ca/tpm-ca-certificates/tpm-intermediate-ca-certificates.pem")).unwrap();
    let store = TrustStore::builder().anchors(roots).intermediates(intermediates.clone()).build();
    let mut failures = Vec::new();
    for ica in &intermediates {
        let when = at(u64::try_from(ica.not_before_unix().max(0) + 365 * 86_400).unwrap());
        if let Err(e) = store.verify(ica, &[], when) {
            failures.push(format!("{}: {e}", ica.subject()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bundle_errors_name_the_file() {
    let ak_pub = path("snp/azure-cvm-vtpm/genoa/ak_pub.pem");
    let err = load_file(&ak_pub).unwrap_err();
    assert!(
        matches!(&err, BundleError::Certificate { path, source: CertificateError::PemLabel { block: 1, label } }
        if *path == ak_pub && label == "PUBLIC KEY"),
        "{err}"
    );
    assert!(err.to_string().contains("ak_pub.pem"));
    let missing = path("tpm/ek-ca/no-such-dir");
    assert!(
        matches!(load_dir(&missing, Recursion::TopLevel), Err(BundleError::Io { path, .. }) if path == missing)
    );
    assert_eq!(parse_certificates(b"hello"), Err(CertificateError::NoCertificate));
    let two = [testdata(&format!("{KEYLIME}/GS_TPM_RT.pem")), testdata(&format!("{KEYLIME}/STM_RSA_RT.pem"))]
        .concat();
    assert_eq!(parse_certificates(&two).unwrap().len(), 2);
    assert_eq!(bundle::parse_one_certificate(&two), Err(CertificateError::NotOne { count: 2 }));
    assert_eq!(CertBundle::from_bytes(&two).unwrap().len(), 2);
    // A certificate is not a PEM public key, and vice versa.
    assert!(matches!(spki_public_key_pem(&two), Err(KeyError::Pem { .. })));
    assert!(spki_public_key_pem(&testdata("snp/azure-cvm-vtpm/genoa/ak_pub.pem")).is_ok());
}

#[test]
fn nuvoton_root_with_unsorted_rdn_set_parses_and_self_verifies() {
    let edge =
        Certificate::from_der(&testdata("tpm/ek-certs/edge-cases/nuvoton_root_ca_2110_unsorted_set.der"))
            .unwrap();
    assert!(edge.subject().contains("Nuvoton TPM Root CA 2110"));
    assert!(edge.is_self_issued());
    edge.verify_issued_by(&edge).unwrap();
    let keylime = keylime("NUVO_2110.pem");
    assert_eq!(edge, keylime);
    TrustStore::new([keylime]).verify(&edge, &[], at(T_2026)).unwrap();
}

//! STMicro EKs (RSA padded in NV, ECC), an unknown root named, flipped bits refused.

use mooring_attestation::crypto::PublicKey;
use mooring_attestation::tpm::ekcert::{verify_ek_certificate, EkCertError};
use mooring_attestation::x509::bundle::parse_certificates;
use mooring_attestation::x509::{CertPathError, Certificate, CertificateError, SignatureError, TrustStore};
use mooring_testdata::testdata;

use crate::gce::gce_store;
use crate::{
    at, cert, flip, keylime, position, st_rsa_store, subjects, GS_ECC_ROOT, ST_ECC_EK, ST_RSA_EK,
    ST_RSA_EK_NV, T_2026, T_2030,
};

#[test]
fn st_rsa_ek_nv_padded_and_trimmed_chain_to_globalsign() {
    let store = st_rsa_store();
    let ica = [keylime("STM_RSA_05I.pem")];
    let padded = verify_ek_certificate(&testdata(ST_RSA_EK_NV), &ica, &store, at(T_2026)).unwrap();
    let trimmed = verify_ek_certificate(&testdata(ST_RSA_EK), &ica, &store, at(T_2026)).unwrap();
    assert_eq!(padded.certificate().der(), &testdata(ST_RSA_EK)[..]);
    assert_eq!(padded.certificate().der().len(), 1169);
    assert_eq!(padded.public_key(), trimmed.public_key());
    assert_eq!(
        subjects(padded.chain())[1..],
        [
            "C=CH, O=STMicroelectronics NV, CN=STM TPM EK Intermediate CA 05",
            "C=CH, O=STMicroelectronics NV, CN=STM TPM EK Root CA",
            "OU=GlobalSign Trusted Computing Certificate Authority, O=GlobalSign, CN=GlobalSign Trusted Platform Module Root CA",
        ]
    );
    assert_eq!(padded.subject(), "");
    assert_eq!(padded.issuer(), "C=CH, O=STMicroelectronics NV, CN=STM TPM EK Intermediate CA 05");
    let tpm = padded.tpm().unwrap();
    assert_eq!(tpm.manufacturer(), "id:53544D20");
    assert_eq!(tpm.manufacturer_id(), Some(0x5354_4D20));
    assert_eq!(tpm.manufacturer_code().as_deref(), Some("STM"));
    assert_eq!(tpm.model(), Some("ST33HTPHAHB4"));
    assert_eq!(tpm.version(), Some("id:00490004"));
    assert!(padded.has_ek_certificate_eku());
    match padded.public_key() {
        PublicKey::Rsa { modulus, exponent } => assert_eq!((modulus.len(), *exponent), (256, 65537)),
        other => panic!("{other:?}"),
    }
    assert_eq!(padded.not_after_unix(), 1_846_886_400); // 2028-07-11
}

#[test]
fn st_rsa_ek_padding_must_be_ff() {
    let padded = testdata(ST_RSA_EK_NV);
    let ica = [keylime("STM_RSA_05I.pem")];
    for index in [1169, 1300, padded.len() - 1] {
        let mut bad = padded.clone();
        bad[index] = 0x00;
        let err = verify_ek_certificate(&bad, &ica, &st_rsa_store(), at(T_2026)).unwrap_err();
        assert_eq!(err, EkCertError::Decode(CertificateError::BadPadding { offset: index, value: 0 }));
    }
    // Strict DER parsing refuses the NV form outright.
    assert_eq!(Certificate::from_der(&padded), Err(CertificateError::TrailingData { extra: 431 }));
    assert!(matches!(parse_certificates(&padded), Err(CertificateError::TrailingData { extra: 431 })));
}

#[test]
fn st_ecc_ek_chains_to_globalsign_ecc_root() {
    let store = TrustStore::builder()
        .anchors([cert(GS_ECC_ROOT)])
        .intermediates([keylime("STM_ECC_01RT.pem"), keylime("STM_ECC_01I.pem")])
        .build();
    let ek = verify_ek_certificate(&testdata(ST_ECC_EK), &[], &store, at(T_2026)).unwrap();
    assert_eq!(ek.chain().issuers().len(), 3);
    assert!(ek.chain().anchor().subject().contains("GlobalSign Trusted Platform Module ECC Root CA"));
    assert!(matches!(ek.public_key(), PublicKey::Ecc { curve, x, y }
        if *curve == mooring_attestation::tpm::alg::EccCurve::NistP256 && x.len() == 32 && y.len() == 32));
    assert_eq!(ek.tpm().unwrap().manufacturer_code().as_deref(), Some("STM"));
}

#[test]
fn st_rsa_ek_not_yet_valid_and_expired_leaf() {
    let ica = [keylime("STM_RSA_05I.pem")];
    let early =
        verify_ek_certificate(&testdata(ST_RSA_EK), &ica, &st_rsa_store(), at(1_500_000_000)).unwrap_err();
    assert!(
        matches!(early, EkCertError::Chain(CertPathError::NotYetValid { ref not_before, .. })
        if not_before == "2018-07-11T00:00:00Z"),
        "{early}"
    );
    let late = verify_ek_certificate(&testdata(ST_RSA_EK), &ica, &st_rsa_store(), at(T_2030)).unwrap_err();
    assert!(
        matches!(late, EkCertError::Chain(CertPathError::Expired { ref not_after, .. })
        if not_after == "2028-07-11T00:00:00Z"),
        "{late}"
    );
}

// ---------------------------------------------------------------- unknown roots

#[test]
fn unknown_root_is_named() {
    let ica = [keylime("STM_RSA_05I.pem")];
    let ek = testdata(ST_RSA_EK);
    let empty = TrustStore::new([]);
    let err = verify_ek_certificate(&ek, &[], &empty, at(T_2026)).unwrap_err();
    assert_eq!(
        err,
        EkCertError::Chain(CertPathError::UnknownIssuer {
            subject: "(empty subject, serial 4cbd0fe61ee762edb28d50b268fc3586ff3d5e82 from C=CH, O=STMicroelectronics NV, CN=STM TPM EK Intermediate CA 05)".into(),
            issuer: "C=CH, O=STMicroelectronics NV, CN=STM TPM EK Intermediate CA 05".into(),
        })
    );
    // Intermediates present but not the root: the missing name is the root's.
    let err = verify_ek_certificate(&ek, &[ica[0].clone(), keylime("STM_RSA_RT.pem")], &empty, at(T_2026));
    assert!(matches!(err, Err(EkCertError::Chain(CertPathError::UnknownIssuer { ref issuer, .. }))
        if issuer.ends_with("O=GlobalSign, CN=GlobalSign Trusted Platform Module Root CA")));
    // Another vendor's store.
    let gce = gce_store();
    let err = verify_ek_certificate(&ek, &ica, &gce, at(T_2026)).unwrap_err();
    assert!(matches!(err, EkCertError::Chain(CertPathError::UnknownIssuer { .. })), "{err}");
    assert!(
        err.to_string().contains("named \"C=CH, O=STMicroelectronics NV, CN=STM TPM EK Root CA\""),
        "{err}"
    );
}

// ---------------------------------------------------------------- bit flips

#[test]
fn flipped_signature_and_tbs_bits_fail() {
    let ica = [keylime("STM_RSA_05I.pem")];
    let store = st_rsa_store();
    let ek = testdata(ST_RSA_EK);
    verify_ek_certificate(&ek, &ica, &store, at(T_2026)).unwrap();
    assert_eq!(store.cached_paths(), 1, "issuer path cached");

    let leaf = Certificate::from_der(&ek).unwrap();
    let bad_sig = flip(&ek, ek.len() - 1);
    let modulus_byte = position(&ek, leaf.spki_der()) + leaf.spki_der().len() / 2;
    let bad_tbs = flip(&ek, modulus_byte);
    for (what, bytes) in [("signature", bad_sig), ("tbs", bad_tbs)] {
        let err = verify_ek_certificate(&bytes, &ica, &store, at(T_2026)).unwrap_err();
        assert!(
            matches!(&err, EkCertError::Chain(CertPathError::Signature { source: SignatureError::BadSignature, issuer, .. })
                if issuer.contains("STM TPM EK Intermediate CA 05")),
            "{what}: {err}"
        );
    }

    // A flipped bit in the intermediate's own signature.
    let ica_der = ica[0].der();
    let bad_ica = Certificate::from_der(&flip(ica_der, ica_der.len() - 1)).unwrap();
    let fresh = st_rsa_store();
    let err = verify_ek_certificate(&ek, &[bad_ica], &fresh, at(T_2026)).unwrap_err();
    assert!(
        matches!(&err, EkCertError::Chain(CertPathError::Signature { subject, source: SignatureError::BadSignature, .. })
            if subject.contains("STM TPM EK Intermediate CA 05")),
        "{err}"
    );
    assert_eq!(fresh.cached_paths(), 0);
}

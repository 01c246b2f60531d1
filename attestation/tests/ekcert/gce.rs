//! GCE vTPM EK and AK certificates under Google's roots; refused under another root, or
//! with one bit changed.

use mooring_attestation::tpm::ekcert::{verify_ek_certificate, EkCertError};
use mooring_attestation::tpm::public::Public;
use mooring_attestation::x509::{
    spki_public_key, spki_public_key_pem, CertPathError, Certificate, SignatureError, TrustStore,
};
use mooring_testdata::testdata;

use crate::{at, cert, flip, keylime, position, KEYLIME, T_2026};

pub(crate) fn gce_store() -> TrustStore {
    let roots = ["gcp_ek_ak_ca_root.crt", "tpm_ek_root_1.cer"].map(|f| cert(&format!("tpm/ek-ca/gce/{f}")));
    let intermediates =
        ["gcp_ek_ak_ca_intermediate_v3.crt", "tpm_ek_intermediate_2.crt", "tpm_ek_intermediate_3.crt"]
            .map(|f| cert(&format!("tpm/ek-ca/gce/{f}")));
    TrustStore::builder().anchors(roots).intermediates(intermediates).build()
}

#[test]
fn gce_ek_and_ak_certificates_chain_to_their_roots() {
    let store = gce_store();
    for family in ["uca", "pca"] {
        for kind in ["rsa_enc", "rsa_sign", "ecc_enc", "ecc_sign"] {
            let rel = format!("tpm/ek-certs/gce-vtpm/{family}_tpm_{kind}_cert.pem");
            let leaf = cert(&rel);
            let chain = store.verify(&leaf, &[], at(T_2026)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let (intermediate, root) = match family {
                "uca" => ("tpm_ek_v1_cloud_host-signer-0-2021-10-12", "tpm_ek_v1_cloud_host_root-signer"),
                _ => ("CN=EK/AK CA Intermediate", "CN=EK/AK CA Root"),
            };
            assert_eq!(chain.issuers().len(), 2, "{rel}");
            assert!(chain.issuers()[0].subject().contains(intermediate), "{rel}");
            assert!(chain.anchor().subject().contains(root), "{rel}");

            let ek = verify_ek_certificate(&testdata(&rel), &[], &store, at(T_2026)).unwrap();
            match family {
                "uca" => {
                    let tpm = ek.tpm().unwrap();
                    assert_eq!(
                        (tpm.manufacturer(), tpm.model(), tpm.version()),
                        ("id:474F4F47", Some("vTPM"), Some("id:20160511"))
                    );
                    assert_eq!(tpm.manufacturer_code().as_deref(), Some("GOOG"));
                }
                _ => assert!(ek.tpm().is_none(), "{rel}"),
            }
        }
    }
    assert_eq!(store.cached_paths(), 2, "one path per issuing intermediate");
}

#[test]
fn gce_ak_certificate_key_equals_the_tpm_public_area() {
    let dir = "tpm/quotes/gce-cos85-vtpm/nonce9009";
    let store = gce_store();
    let verified =
        verify_ek_certificate(&testdata(&format!("{dir}/ak_cert.der")), &[], &store, at(T_2026)).unwrap();
    assert!(verified.issuer().contains("tpm_ek_v1_cloud_host-signer-0-2020-10-22"));
    let ak = Public::from_tpmt(&testdata(&format!("{dir}/ak_pub.tpmt_public.bin"))).unwrap();
    verified.matches_public_key(ak.key()).unwrap();
    assert_eq!(spki_public_key(verified.certificate().spki_der()).unwrap(), *ak.key());

    let other = cert("tpm/ek-certs/gce-vtpm/uca_tpm_rsa_enc_cert.pem").public_key().unwrap();
    let err = verified.matches_public_key(&other).unwrap_err();
    assert!(matches!(err, EkCertError::KeyMismatch { .. }));
    assert!(
        err.to_string().starts_with("EK certificate key differs from the EK public area presented"),
        "{err}"
    );
    let pem = spki_public_key_pem(&testdata(&format!("{dir}/ak_pub.pem"))).unwrap();
    assert_eq!(pem, *ak.key());
    let ecc = cert("tpm/ek-certs/gce-vtpm/uca_tpm_ecc_enc_cert.pem").public_key().unwrap();
    assert!(verified.matches_public_key(&ecc).is_err());
}

#[test]
fn ca_certificate_is_not_an_ek() {
    let store = TrustStore::new([keylime("GS_TPM_RT.pem")]);
    let err = verify_ek_certificate(&testdata(&format!("{KEYLIME}/STM_RSA_RT.pem")), &[], &store, at(T_2026));
    assert!(matches!(err, Err(EkCertError::IsCa { .. })));
}

/// A store of one of Google's two vTPM PKIs: the older `tpm_ek_v1_cloud_host` one, or the
/// newer "EK/AK CA" one.
fn one_gce_pki(newer: bool) -> TrustStore {
    let (root, intermediates): (&str, &[&str]) = if newer {
        ("gcp_ek_ak_ca_root.crt", &["gcp_ek_ak_ca_intermediate_v3.crt"])
    } else {
        ("tpm_ek_root_1.cer", &["tpm_ek_intermediate_2.crt", "tpm_ek_intermediate_3.crt"])
    };
    TrustStore::builder()
        .anchors([cert(&format!("tpm/ek-ca/gce/{root}"))])
        .intermediates(intermediates.iter().map(|f| cert(&format!("tpm/ek-ca/gce/{f}"))))
        .build()
}

#[test]
fn gce_certificates_under_a_root_that_did_not_issue_them_name_googles_missing_root() {
    // Each Google PKI alone: the other's EK and AK certificates are refused, naming the
    // root that would be needed.
    for (rel, store, missing) in [
        (
            "tpm/ek-certs/gce-vtpm/uca_tpm_rsa_enc_cert.pem",
            one_gce_pki(true),
            "tpm_ek_v1_cloud_host-signer-0-2021-10-12",
        ),
        (
            "tpm/ek-certs/gce-vtpm/uca_tpm_ecc_sign_cert.pem",
            one_gce_pki(true),
            "tpm_ek_v1_cloud_host-signer-0-2021-10-12",
        ),
        ("tpm/ek-certs/gce-vtpm/pca_tpm_rsa_enc_cert.pem", one_gce_pki(false), "CN=EK/AK CA Intermediate"),
        ("tpm/ek-certs/gce-vtpm/pca_tpm_ecc_sign_cert.pem", one_gce_pki(false), "CN=EK/AK CA Intermediate"),
        (
            "tpm/quotes/gce-cos85-vtpm/nonce9009/ak_cert.der",
            one_gce_pki(true),
            "tpm_ek_v1_cloud_host-signer-0-2020-10-22",
        ),
    ] {
        let err = verify_ek_certificate(&testdata(rel), &[], &store, at(T_2026)).unwrap_err();
        assert!(
            matches!(&err, EkCertError::Chain(CertPathError::UnknownIssuer { issuer, .. }) if issuer.contains(missing)),
            "{rel}: {err}"
        );
    }
    // Google's intermediate supplied with the certificate, but a vendor's root in the store:
    // the missing name is Google's root.
    let intermediate = cert("tpm/ek-ca/gce/gcp_ek_ak_ca_intermediate_v3.crt");
    let other_vendor = TrustStore::new([keylime("GS_TPM_RT.pem")]);
    let err = verify_ek_certificate(
        &testdata("tpm/ek-certs/gce-vtpm/pca_tpm_ecc_enc_cert.pem"),
        &[intermediate],
        &other_vendor,
        at(T_2026),
    )
    .unwrap_err();
    assert!(
        matches!(&err, EkCertError::Chain(CertPathError::UnknownIssuer { issuer, .. }) if issuer.ends_with("CN=EK/AK CA Root")),
        "{err}"
    );
}

#[test]
fn an_altered_gce_certificate_fails_its_issuers_signature() {
    let store = gce_store();
    for (rel, issuer) in [
        ("tpm/ek-certs/gce-vtpm/uca_tpm_rsa_enc_cert.pem", "tpm_ek_v1_cloud_host-signer-0-2021-10-12"),
        ("tpm/ek-certs/gce-vtpm/pca_tpm_ecc_enc_cert.pem", "CN=EK/AK CA Intermediate"),
        ("tpm/ek-certs/gce-vtpm/pca_tpm_rsa_sign_cert.pem", "CN=EK/AK CA Intermediate"),
        ("tpm/quotes/gce-cos85-vtpm/nonce9009/ak_cert.der", "tpm_ek_v1_cloud_host-signer-0-2020-10-22"),
    ] {
        let der = cert(rel).der().to_vec();
        let leaf = Certificate::from_der(&der).unwrap();
        // One bit of a signed field (the serial number), one of the signature itself.
        let serial_bit = flip(&der, position(&der, leaf.serial()) + leaf.serial().len() - 1);
        let signature_bit = flip(&der, der.len() - 1);
        for (what, bytes) in [("serial", serial_bit), ("signature", signature_bit)] {
            let err = verify_ek_certificate(&bytes, &[], &store, at(T_2026)).unwrap_err();
            assert!(
                matches!(&err, EkCertError::Chain(CertPathError::Signature { source: SignatureError::BadSignature, issuer: by, .. }) if by.contains(issuer)),
                "{rel} {what}: {err}"
            );
        }
    }
    // A flipped bit in Google's intermediate: the intermediate is refused by the root.
    let intermediate = cert("tpm/ek-ca/gce/tpm_ek_intermediate_3.crt");
    let bad = Certificate::from_der(&flip(intermediate.der(), intermediate.der().len() - 1)).unwrap();
    let store = TrustStore::new([cert("tpm/ek-ca/gce/tpm_ek_root_1.cer")]);
    let err = verify_ek_certificate(
        &testdata("tpm/ek-certs/gce-vtpm/uca_tpm_ecc_enc_cert.pem"),
        &[bad],
        &store,
        at(T_2026),
    )
    .unwrap_err();
    assert!(
        matches!(&err, EkCertError::Chain(CertPathError::Signature { subject, source: SignatureError::BadSignature, .. })
            if subject.contains("tpm_ek_v1_cloud_host-signer-0-2021-10-12")),
        "{err}"
    );
}

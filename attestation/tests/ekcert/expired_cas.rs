//! CAs past their notAfter fail, even with their path cached.

use mooring_attestation::x509::bundle::load_file;
use mooring_attestation::x509::{CertPathError, TrustStore};

use crate::{at, cert, keylime, path, GS_ECC_ROOT, T_2030, T_2038};

#[test]
fn expired_root_ca_fails_after_its_not_after_even_when_cached() {
    let intermediates =
        load_file(&path("tpm/ek-ca/tpm-ca-certificates/tpm-intermediate-ca-certificates.pem")).unwrap();
    let cisco = intermediates
        .into_iter()
        .find(|c| c.subject().ends_with("CN=STM TPM ECC384 Intermediate CA 03 for CISCO"))
        .unwrap();
    let store = TrustStore::builder()
        .anchors([cert(GS_ECC_ROOT)])
        .intermediates([keylime("STM_ECC_01RT.pem")])
        .build();
    let chain = store.verify(&cisco, &[], at(T_2030)).unwrap();
    assert_eq!(chain.issuers().len(), 2);
    assert_eq!(store.cached_paths(), 1);
    let err = store.verify(&cisco, &[], at(T_2038)).unwrap_err();
    assert_eq!(
        err,
        CertPathError::Expired {
            subject: "\"C=CH, O=STMicroelectronics NV, CN=STM TPM ECC Root CA 01\"".into(),
            not_after: "2038-01-19T03:14:07Z".into(),
            now: "2038-02-17T06:13:20Z".into(),
        }
    );
}

#[test]
fn ifx_intermediate_01_expired_on_2025_10_20() {
    // Its issuing root key is not in any collected store: trust it directly.
    let ifx1 = keylime("IFX_RSA_01I.pem");
    let store = TrustStore::new([ifx1.clone()]);
    let before = store.verify(&ifx1, &[], at(1_760_000_000)).unwrap();
    assert!(before.issuers().is_empty());
    let err = store.verify(&ifx1, &[], at(1_761_000_000)).unwrap_err();
    assert!(
        matches!(&err, CertPathError::Expired { subject, not_after, .. }
        if subject.contains("IFX TPM EK Intermediate CA 01") && not_after == "2025-10-20T13:47:43Z"),
        "{err}"
    );
    assert!(err.to_string().contains("expired at 2025-10-20T13:47:43Z"), "{err}");
}

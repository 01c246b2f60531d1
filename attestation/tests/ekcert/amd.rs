//! AMD SEV-SNP ARK/ASK/ASVK/VCEK/VLEK chains (RSA-PSS with SHA-384).

use mooring_attestation::crypto::{PublicKey, Scheme};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::x509::bundle::parse_certificates;
use mooring_attestation::x509::{CertPathError, Certificate, SignatureError, TrustStore};
use mooring_testdata::testdata;

use crate::{at, cert, position, subjects, T_2026};

fn amd(product: &str, file: &str) -> Certificate {
    cert(&format!("snp/amd-ca/{product}/{file}"))
}

#[test]
fn amd_ark_ask_asvk_chains_use_rsa_pss_sha384() {
    for product in ["milan", "genoa", "turin"] {
        let ark = amd(product, "ark.pem");
        assert_eq!(ark.signature_scheme(), Ok(Scheme::RsaPss(HashAlg::Sha384)));
        ark.verify_issued_by(&ark).unwrap_or_else(|e| panic!("{product} ARK self-signature: {e}"));
        let store = TrustStore::new([ark]);
        for file in ["ask.pem", "asvk.pem"] {
            let chain = store.verify(&amd(product, file), &[], at(T_2026)).unwrap();
            assert_eq!(chain.issuers().len(), 1, "{product}/{file}");
        }
        let kds =
            parse_certificates(&testdata(&format!("snp/amd-ca/{product}/cert_chain_vcek.pem"))).unwrap();
        assert_eq!(kds.len(), 2);
        assert_eq!(kds[0], amd(product, "ask.pem"));
        // The ASK is not an anchor: its self-verification must fail.
        assert_eq!(kds[0].verify_issued_by(&kds[0]), Err(SignatureError::BadSignature));
    }
}

#[test]
fn amd_vceks_chain_under_their_ask() {
    let cases = [
        ("milan", "snp/milan/virtee-sev/vcek.der"),
        ("milan", "snp/milan/go-sev-guest/vcek.der"),
        ("milan", "snp/milan/trustee/vcek.der"),
        ("milan", "snp/milan/oak-containers/vcek.der"),
        ("genoa", "snp/genoa/trustee-e2e/vcek.der"),
        ("genoa", "snp/genoa/oak-containers/vcek.der"),
        ("turin", "snp/turin/oak-containers/vcek.der"),
        ("turin", "snp/turin/virtee-sev/vcek.der"),
    ];
    for (product, rel) in cases {
        let kds =
            parse_certificates(&testdata(&format!("snp/amd-ca/{product}/cert_chain_vcek.pem"))).unwrap();
        let store = TrustStore::new([amd(product, "ark.pem")]);
        let chain = store.verify(&cert(rel), &kds, at(T_2026)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(subjects(&chain).len(), 3, "{rel}");
        assert!(chain.leaf().subject().ends_with("CN=SEV-VCEK"), "{rel}");
        assert!(matches!(chain.leaf().public_key(), Ok(PublicKey::Ecc { .. })), "{rel}");
    }
}

#[test]
fn amd_vlek_is_expired_now_and_valid_in_2025() {
    let store = TrustStore::new([amd("milan", "ark.pem")]);
    let asvk = [amd("milan", "asvk.pem")];
    let vlek = cert("snp/milan-vlek/trustee/vlek.der");
    store.verify(&vlek, &asvk, at(1_750_000_000)).unwrap();
    let err = store.verify(&vlek, &asvk, at(T_2026)).unwrap_err();
    assert!(
        matches!(&err, CertPathError::Expired { subject, .. } if subject.ends_with("CN=SEV-VLEK\"")),
        "{err}"
    );
    // Under the ASK (wrong branch) it does not chain.
    assert!(store.verify(&vlek, &[amd("milan", "ask.pem")], at(1_750_000_000)).is_err());
}

#[test]
fn trustee_negative_vceks_fail_the_milan_chain() {
    let store = TrustStore::new([amd("milan", "ark.pem")]);
    let ask = [amd("milan", "ask.pem")];
    for name in ["vcek-invalid-legacy.der", "vcek-invalid-new.der"] {
        let leaf = cert(&format!("snp/negative/trustee/{name}"));
        let err = store.verify(&leaf, &ask, at(T_2026)).unwrap_err();
        assert!(
            matches!(&err, CertPathError::Signature { source: SignatureError::BadSignature, .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn rsa_pss_parameters_are_checked() {
    let ark = amd("milan", "ark.pem");
    let ask = amd("milan", "ask.pem");
    let salt_48 = [0xA2, 0x03, 0x02, 0x01, 0x30];
    let der = ask.der();
    let first = position(der, &salt_48);
    let last = der.len()
        - position(&der.iter().rev().copied().collect::<Vec<_>>(), &[0x30, 0x01, 0x02, 0x03, 0xA2])
        - 5;
    assert!(last > first);
    // Only the outer signatureAlgorithm changed: it no longer matches the TBS copy.
    let mut outer_only = der.to_vec();
    outer_only[last + 4] = 0x20;
    let cert = Certificate::from_der(&outer_only).unwrap();
    assert_eq!(cert.signature_scheme(), Err(SignatureError::AlgorithmMismatch));
    // Both changed: a salt length other than the hash length is refused.
    let mut both = outer_only.clone();
    both[first + 4] = 0x20;
    let cert = Certificate::from_der(&both).unwrap();
    assert!(
        matches!(cert.signature_scheme(), Err(SignatureError::BadParameters { ref reason }) if reason.contains("salt length 32"))
    );
    let err = TrustStore::new([ark]).verify(&cert, &[], at(T_2026)).unwrap_err();
    assert!(
        matches!(err, CertPathError::Signature { source: SignatureError::BadParameters { .. }, .. }),
        "{err}"
    );
}

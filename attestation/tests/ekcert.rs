//! Certificate chains from `../shared/testdata`: real TPM EK/AK certificates (STMicro,
//! GCE vTPM) and AMD SEV-SNP ARK/ASK/ASVK/VCEK chains verify at a pinned time, and
//! each fails alone when the root is unknown, a CA has expired, a bit of a signature
//! or of a signed TBS flips, or the NV padding is not 0xFF.

// Helpers outside `#[test]` functions: a missing or unparsable vector should panic.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mooring_attestation::crypto::{PublicKey, Scheme};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::ekcert::{verify_ek_certificate, EkCertError};
use mooring_attestation::tpm::public::Public;
use mooring_attestation::x509::bundle::{
    self, load_dir, load_file, parse_certificates, BundleError, Recursion,
};
use mooring_attestation::x509::{
    spki_public_key, spki_public_key_pem, CertBundle, Certificate, CertificateError, ChainError, KeyError,
    SignatureError, TrustStore,
};
use mooring_testdata::{testdata, testdata_dir};

/// 2026-05-28: every real leaf here is valid.
const T_2026: u64 = 1_780_000_000;
/// 2030-01-01.
const T_2030: u64 = 1_893_456_000;
/// 2038-02-17: after STM TPM ECC Root CA 01 and the GlobalSign TPM ECC root expired (2038-01-19).
const T_2038: u64 = 2_150_000_000;

const KEYLIME: &str = "tpm/ek-ca/keylime-tpm_cert_store";
const ST_RSA_EK: &str = "tpm/ek-certs/stmicro/st33htph_rsa_ek.der";
const ST_RSA_EK_NV: &str = "tpm/ek-certs/stmicro/st33htph_rsa_ek_nv_padded.der";
const ST_ECC_EK: &str = "tpm/ek-certs/stmicro/st33htph_ecc_ek.der";
const GS_ECC_ROOT: &str =
    "tpm/ek-ca/tpm-key_attestation-roots/STMicro/GlobalSign_Trusted_Platform_Module_ECC_Root_CA.crt";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn path(rel: &str) -> PathBuf {
    testdata_dir().join(rel)
}

fn cert(rel: &str) -> Certificate {
    let mut certs = parse_certificates(&testdata(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(certs.len(), 1, "{rel}");
    certs.remove(0)
}

fn keylime(name: &str) -> Certificate {
    cert(&format!("{KEYLIME}/{name}"))
}

fn subjects(chain: &mooring_attestation::x509::VerifiedChain) -> Vec<String> {
    chain.certificates().map(|c| c.subject().to_owned()).collect()
}

/// GlobalSign TPM root as anchor, STM EK root as a store intermediate; the EK's
/// issuing CA (STM_RSA_05I) comes with each call.
fn st_rsa_store() -> TrustStore {
    TrustStore::builder()
        .anchors([keylime("GS_TPM_RT.pem")])
        .intermediates([keylime("STM_RSA_RT.pem")])
        .build()
}

fn flip(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= 0x01;
    out
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

// ---------------------------------------------------------------- STMicro EKs

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
        matches!(early, EkCertError::Chain(ChainError::NotYetValid { ref not_before, .. })
        if not_before == "2018-07-11T00:00:00Z"),
        "{early}"
    );
    let late = verify_ek_certificate(&testdata(ST_RSA_EK), &ica, &st_rsa_store(), at(T_2030)).unwrap_err();
    assert!(
        matches!(late, EkCertError::Chain(ChainError::Expired { ref not_after, .. })
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
        EkCertError::Chain(ChainError::UnknownIssuer {
            subject: "(empty subject, serial 4cbd0fe61ee762edb28d50b268fc3586ff3d5e82 from C=CH, O=STMicroelectronics NV, CN=STM TPM EK Intermediate CA 05)".into(),
            issuer: "C=CH, O=STMicroelectronics NV, CN=STM TPM EK Intermediate CA 05".into(),
        })
    );
    // Intermediates present but not the root: the missing name is the root's.
    let err = verify_ek_certificate(&ek, &[ica[0].clone(), keylime("STM_RSA_RT.pem")], &empty, at(T_2026));
    assert!(matches!(err, Err(EkCertError::Chain(ChainError::UnknownIssuer { ref issuer, .. }))
        if issuer.ends_with("O=GlobalSign, CN=GlobalSign Trusted Platform Module Root CA")));
    // Another vendor's store.
    let gce = gce_store();
    let err = verify_ek_certificate(&ek, &ica, &gce, at(T_2026)).unwrap_err();
    assert!(matches!(err, EkCertError::Chain(ChainError::UnknownIssuer { .. })), "{err}");
    assert!(
        err.to_string().contains("named \"C=CH, O=STMicroelectronics NV, CN=STM TPM EK Root CA\""),
        "{err}"
    );
}

// ---------------------------------------------------------------- expired CAs

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
        ChainError::Expired {
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
        matches!(&err, ChainError::Expired { subject, not_after, .. }
        if subject.contains("IFX TPM EK Intermediate CA 01") && not_after == "2025-10-20T13:47:43Z"),
        "{err}"
    );
    assert!(err.to_string().contains("expired at 2025-10-20T13:47:43Z"), "{err}");
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
            matches!(&err, EkCertError::Chain(ChainError::Signature { source: SignatureError::BadSignature, issuer, .. })
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
        matches!(&err, EkCertError::Chain(ChainError::Signature { subject, source: SignatureError::BadSignature, .. })
            if subject.contains("STM TPM EK Intermediate CA 05")),
        "{err}"
    );
    assert_eq!(fresh.cached_paths(), 0);
}

// ---------------------------------------------------------------- GCE vTPM

fn gce_store() -> TrustStore {
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

// ---------------------------------------------------------------- bundles

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

// ---------------------------------------------------------------- AMD SEV-SNP

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
        matches!(&err, ChainError::Expired { subject, .. } if subject.ends_with("CN=SEV-VLEK\"")),
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
            matches!(&err, ChainError::Signature { source: SignatureError::BadSignature, .. }),
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
        matches!(err, ChainError::Signature { source: SignatureError::BadParameters { .. }, .. }),
        "{err}"
    );
}

#[test]
fn store_and_proofs_are_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<TrustStore>();
    shareable::<mooring_attestation::x509::VerifiedChain>();
    shareable::<mooring_attestation::tpm::ekcert::VerifiedEk>();
}

//! `TPM2_Certify` from a real TPM: a non-exportable signing key K created in swtpm and
//! certified by the AK with `tpm2_certify` verifies; another nonce, another key's public
//! area, or an exportable key is refused. Also the real Windows certify-creation vector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::{verify_signed, Ak, Attested, Signature};
use mooring_attestation::tpm::certify::{verify_certify, CertifyError, NON_EXPORTABLE_SIGNING_KEY};
use mooring_attestation::tpm::public::Public;
use mooring_testdata::testdata;
use mooring_tests::{Swtpm, SwtpmOptions, Tpm2Tools};

/// tpm2-tools 5.4's `tpm2_certify` has no qualifying-data option: it always passes these
/// four bytes. (The VM client passes the broker's challenge instead.)
const NONCE: &[u8] = &[0x00, 0xff, 0x55, 0xaa];

fn read_public(tools: &Tpm2Tools, file: &str) -> Public {
    Public::from_tpm2b(&std::fs::read(tools.path(file)).unwrap()).unwrap()
}

/// Creates key `tag` under an owner primary with `attributes`, certifies it with the AK.
fn certify(tools: &Tpm2Tools, tag: &str, attributes: &str) -> (Public, Vec<u8>, Signature) {
    tools.run("tpm2_createprimary", ["-C", "o", "-G", "ecc", "-c", "primary.ctx"]).unwrap();
    tools.flush_all().unwrap();
    let (public, private) = (format!("{tag}.pub"), format!("{tag}.priv"));
    tools
        .run(
            "tpm2_create",
            ["-C", "primary.ctx", "-G", "ecc", "-a", attributes, "-u", &public, "-r", &private],
        )
        .unwrap();
    tools.flush_all().unwrap();
    tools.run("tpm2_load", ["-C", "primary.ctx", "-u", &public, "-r", &private, "-c", "k.ctx"]).unwrap();
    tools.flush_all().unwrap();
    tools
        .run(
            "tpm2_certify",
            ["-c", "k.ctx", "-C", "ak.ctx", "-g", "sha256", "-o", "certify.attest", "-s", "certify.sig"],
        )
        .unwrap();
    tools.flush_all().unwrap();
    let attest = std::fs::read(tools.path("certify.attest")).unwrap();
    let signature = Signature::parse(&std::fs::read(tools.path("certify.sig")).unwrap()).unwrap();
    (read_public(tools, &public), attest, signature)
}

#[test]
fn swtpm_certify_of_a_resident_key_verifies() {
    let Some(tpm) = Swtpm::start_or_skip("swtpm_certify", SwtpmOptions::default().without_ek_certs()) else {
        return;
    };
    let tools = tpm.tools();
    tools.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]).unwrap();
    tools
        .run(
            "tpm2_createak",
            ["-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", "ak.pub"],
        )
        .unwrap();
    tools.flush_all().unwrap();
    let ak = read_public(&tools, "ak.pub");
    let nonce = NONCE.to_vec();

    let (k, attest, signature) =
        certify(&tools, "k", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign");
    let certified =
        verify_certify(Ak::Tpm(&ak), &k, &attest, &signature, Some(&nonce), NON_EXPORTABLE_SIGNING_KEY)
            .unwrap();
    assert_eq!(certified.name(), k.name().as_slice());

    let err = verify_certify(
        Ak::Tpm(&ak),
        &k,
        &attest,
        &signature,
        Some(b"another nonce"),
        NON_EXPORTABLE_SIGNING_KEY,
    )
    .unwrap_err();
    assert!(matches!(err, CertifyError::QualifyingData { .. }), "{err}");
    // A caller that binds K elsewhere may leave the qualifying data unchecked; every
    // other check still applies.
    verify_certify(Ak::Tpm(&ak), &k, &attest, &signature, None, NON_EXPORTABLE_SIGNING_KEY).unwrap();

    // The certification names K: another key's public area does not fit it.
    let (other, _, _) =
        certify(&tools, "other", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign");
    let err =
        verify_certify(Ak::Tpm(&ak), &other, &attest, &signature, Some(&nonce), NON_EXPORTABLE_SIGNING_KEY)
            .unwrap_err();
    assert!(matches!(err, CertifyError::NameMismatch { .. }), "{err}");

    // A key that may leave the TPM (no fixedTPM/fixedParent) is certified, but refused.
    let (exportable, attest, signature) =
        certify(&tools, "exportable", "sensitivedataorigin|userwithauth|sign");
    let err = verify_certify(
        Ak::Tpm(&ak),
        &exportable,
        &attest,
        &signature,
        Some(&nonce),
        NON_EXPORTABLE_SIGNING_KEY,
    )
    .unwrap_err();
    match err {
        CertifyError::KeyAttributes { missing } => assert_eq!(missing, vec!["fixedTPM", "fixedParent"]),
        other => panic!("{other}"),
    }
}

#[test]
fn windows_certify_creation_names_the_ak_and_its_creation_data() {
    let base = "tpm/quotes/gce-windows-vtpm";
    let ak = Public::from_tpmt(&testdata(&format!("{base}/ak_pub.tpmt_public.bin"))).unwrap();
    let attest = testdata(&format!("{base}/ak_CreateAttestation.bin"));
    let signature = Signature::parse(&testdata(&format!("{base}/ak_CreateSignature.bin"))).unwrap();
    let parsed = verify_signed(Ak::Tpm(&ak), &attest, &signature).unwrap();
    let Attested::Creation { object_name, creation_hash } = parsed.attested() else {
        panic!("not a creation")
    };
    assert_eq!(*object_name, ak.name());
    assert_eq!(*creation_hash, HashAlg::Sha256.digest(&[&testdata(&format!("{base}/ak_CreateData.bin"))]));
    let mut tampered = attest.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(verify_signed(Ak::Tpm(&ak), &tampered, &signature).is_err());
}

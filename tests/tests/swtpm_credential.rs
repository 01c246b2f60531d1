//! Software MakeCredential proven against a real TPM: `tpm2_activatecredential` on swtpm
//! reads our tpm2-tools credential file and recovers the secret, for RSA-2048 and ECC
//! P-256 EKs; a credential bound to another AK, or made for another TPM's EK, does not
//! activate. The swtpm EK certificates chain to the harness CA and match the EK public
//! area the TPM presents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;
use std::time::SystemTime;

use aws_lc_rs::rand::SystemRandom;
use mooring_attestation::tpm::credential::make_credential;
use mooring_attestation::tpm::ekcert::verify_ek_certificate;
use mooring_attestation::tpm::public::Public;
use mooring_attestation::x509::{CertBundle, TrustStore};
use mooring_tests::{EkKind, Swtpm, SwtpmOptions, Tpm2Tools};

const SECRET: &[u8] = b"activate-me-0123456789abcdef";

/// Creates an EK of `alg` and an ECDSA AK under it; returns (ek public, ak name).
fn ek_and_ak(tools: &Tpm2Tools, alg: &str, tag: &str) -> (Public, Vec<u8>) {
    let ek_ctx = format!("ek-{tag}.ctx");
    let ek_pub = format!("ek-{tag}.pub");
    tools.run("tpm2_createek", ["-c", &ek_ctx, "-G", alg, "-u", &ek_pub]).unwrap();
    tools
        .run(
            "tpm2_createak",
            [
                "-C",
                &ek_ctx,
                "-c",
                &format!("ak-{tag}.ctx"),
                "-G",
                "ecc",
                "-g",
                "sha256",
                "-s",
                "ecdsa",
                "-u",
                &format!("ak-{tag}.pub"),
                "-n",
                &format!("ak-{tag}.name"),
            ],
        )
        .unwrap();
    tools.flush_all().unwrap();
    let ek = Public::from_tpm2b(&std::fs::read(tools.path(&ek_pub)).unwrap()).unwrap();
    let name = std::fs::read(tools.path(&format!("ak-{tag}.name"))).unwrap();
    (ek, name)
}

/// `tpm2_activatecredential` with the EK's PolicySecret(endorsement) session.
fn activate(tools: &Tpm2Tools, tag: &str, credential: &[u8]) -> Result<Vec<u8>, String> {
    let input = tools.path(&format!("cred-{tag}.bin"));
    std::fs::write(&input, credential).unwrap();
    let output = tools.path(&format!("secret-{tag}.bin"));
    let _ = std::fs::remove_file(&output);
    tools.run("tpm2_startauthsession", ["--policy-session", "-S", "session.ctx"]).unwrap();
    tools.run("tpm2_policysecret", ["-S", "session.ctx", "-c", "e"]).unwrap();
    let result = tools.run(
        "tpm2_activatecredential",
        [
            "-c",
            &format!("ak-{tag}.ctx"),
            "-C",
            &format!("ek-{tag}.ctx"),
            "-i",
            path_str(&input),
            "-o",
            path_str(&output),
            "-P",
            "session:session.ctx",
        ],
    );
    tools.flush_all().unwrap();
    result.map_err(|e| e.to_string())?;
    Ok(std::fs::read(output).unwrap())
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn software_credentials_activate_on_swtpm() {
    let Some(tpm) = Swtpm::start_or_skip("software_credentials_activate_on_swtpm", SwtpmOptions::default())
    else {
        return;
    };
    let tools = tpm.tools();
    let rng = SystemRandom::new();
    for (alg, tag) in [("rsa", "rsa"), ("ecc", "ecc256")] {
        let (ek, ak_name) = ek_and_ak(&tools, alg, tag);
        let challenge = make_credential(&ek, &ak_name, SECRET, &rng).unwrap();
        let recovered = activate(&tools, tag, &challenge.to_tpm2_tools_file()).unwrap();
        assert_eq!(recovered, SECRET, "{tag}: activated secret differs");

        // Bound to another object's Name: the TPM's integrity check refuses it.
        let mut other_name = ak_name.clone();
        *other_name.last_mut().unwrap() ^= 1;
        let wrong = make_credential(&ek, &other_name, SECRET, &rng).unwrap();
        let err = activate(&tools, tag, &wrong.to_tpm2_tools_file()).unwrap_err();
        assert!(
            err.contains("integrity") || err.contains("0x9") || err.contains("ActivateCredential"),
            "{tag}: {err}"
        );
    }
}

/// The P-384 high-range EK template (TCG EK Credential Profile H-4) is ECC P-384 with a
/// SHA-384 Name and AES-256-CFB. Its PolicyOR(PolicyA, PolicyC) authorization cannot be
/// satisfied with tpm2-tools 5.4 alone, so this builds an endorsement-hierarchy storage
/// key with the same key parameters and password authorization: MakeCredential depends
/// only on the public key, the Name algorithm and the symmetric definition.
#[test]
fn p384_sha384_aes256_storage_key_activates() {
    let Some(tpm) = Swtpm::start_or_skip(
        "p384_sha384_aes256_storage_key_activates",
        SwtpmOptions::default().without_ek_certs(),
    ) else {
        return;
    };
    let tools = tpm.tools();
    tools
        .run(
            "tpm2_createprimary",
            [
                "-C",
                "e",
                "-G",
                "ecc384:aes256cfb",
                "-g",
                "sha384",
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt",
                "-c",
                "ek.ctx",
            ],
        )
        .unwrap();
    tools.run("tpm2_readpublic", ["-c", "ek.ctx", "-o", "ek.pub"]).unwrap();
    tools.flush_all().unwrap();
    tools
        .run(
            "tpm2_create",
            [
                "-C",
                "ek.ctx",
                "-G",
                "ecc256:ecdsa-sha256:null",
                "-g",
                "sha256",
                "-a",
                "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
                "-u",
                "ak.pub",
                "-r",
                "ak.priv",
            ],
        )
        .unwrap();
    tools.flush_all().unwrap();
    tools
        .run("tpm2_load", ["-C", "ek.ctx", "-u", "ak.pub", "-r", "ak.priv", "-c", "ak.ctx", "-n", "ak.name"])
        .unwrap();
    tools.flush_all().unwrap();

    let ek = Public::from_tpm2b(&std::fs::read(tools.path("ek.pub")).unwrap()).unwrap();
    assert_eq!(ek.key().describe(), "ECC P-384");
    assert_eq!(ek.symmetric().key_bits, 256);
    let ak_name = std::fs::read(tools.path("ak.name")).unwrap();
    let challenge = make_credential(&ek, &ak_name, SECRET, &SystemRandom::new()).unwrap();
    std::fs::write(tools.path("cred.bin"), challenge.to_tpm2_tools_file()).unwrap();
    let out = tools.path("secret.bin");
    tools
        .run(
            "tpm2_activatecredential",
            ["-c", "ak.ctx", "-C", "ek.ctx", "-i", "cred.bin", "-o", path_str(&out)],
        )
        .unwrap();
    tools.flush_all().unwrap();
    assert_eq!(std::fs::read(out).unwrap(), SECRET);
}

#[test]
fn credential_for_another_tpm_does_not_activate() {
    let (Some(a), Some(b)) = (
        Swtpm::start_or_skip(
            "credential_for_another_tpm_does_not_activate",
            SwtpmOptions::default().without_ek_certs(),
        ),
        Swtpm::start_or_skip(
            "credential_for_another_tpm_does_not_activate",
            SwtpmOptions::default().without_ek_certs(),
        ),
    ) else {
        return;
    };
    let (ek_a, _) = ek_and_ak(&a.tools(), "rsa", "rsa");
    let (_, ak_b_name) = ek_and_ak(&b.tools(), "rsa", "rsa");
    // A credential made to TPM A's EK for TPM B's AK: B cannot open it.
    let challenge = make_credential(&ek_a, &ak_b_name, SECRET, &SystemRandom::new()).unwrap();
    assert!(activate(&b.tools(), "rsa", &challenge.to_tpm2_tools_file()).is_err());
}

#[test]
fn swtpm_ek_certificates_chain_and_match_the_ek() {
    let Some(tpm) =
        Swtpm::start_or_skip("swtpm_ek_certificates_chain_and_match_the_ek", SwtpmOptions::default())
    else {
        return;
    };
    let mut anchors = Vec::new();
    for file in tpm.ek_cert_ca_files().all() {
        anchors.extend(CertBundle::from_file(file).unwrap().certificates().iter().cloned());
    }
    let store = TrustStore::new(anchors);
    let tools = tpm.tools();
    for (kind, alg) in [(EkKind::Rsa2048, "rsa"), (EkKind::EccP384, "ecc384")] {
        // Read the certificate from NV, as a VM client does.
        let index = format!("{:#x}", kind.cert_nv_index());
        let der = tools.run("tpm2_nvread", [index.as_str()]).unwrap();
        let verified = verify_ek_certificate(&der, &[], &store, SystemTime::now()).unwrap();
        let ek_pub = format!("ek-{alg}.pub");
        tools.run("tpm2_createek", ["-c", &format!("ek-{alg}.ctx"), "-G", alg, "-u", &ek_pub]).unwrap();
        tools.flush_all().unwrap();
        let ek = Public::from_tpm2b(&std::fs::read(tools.path(&ek_pub)).unwrap()).unwrap();
        verified.matches_public_key(ek.key()).unwrap();

        // Another TPM's EK does not match this certificate.
        let other = Public::from_tpm2b(&mooring_testdata::testdata("tpm/quotes/sim-keylime/ek.pub")).unwrap();
        assert!(verified.matches_public_key(other.key()).is_err());
    }
    // With an unrelated vendor's roots, the swtpm EK does not chain.
    let vendor = CertBundle::from_file(
        &mooring_testdata::testdata_dir().join("tpm/ek-ca/keylime-tpm_cert_store/STM_RSA_RT.pem"),
    )
    .unwrap();
    let der = tpm.ek_cert_der(EkKind::Rsa2048).unwrap();
    let foreign = TrustStore::new(vendor.certificates().iter().cloned());
    assert!(verify_ek_certificate(&der, &[], &foreign, SystemTime::now()).is_err());
}

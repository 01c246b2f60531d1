//! Sealed secrets proven against a real TPM: a `TPM2_Import` blob built in software to the
//! EK of a swtpm, under a PolicyPCR policy computed in software, goes through
//! `tpm2_import`, `tpm2_load` and `tpm2_unseal` (with a `tpm2_policypcr` session) and the
//! secret comes out byte-exact, for RSA-2048 and ECC P-256 EKs. The same blob does not
//! import on another TPM, a modified blob does not import, the secret does not unseal once
//! a covered PCR changes, and the empty auth value does not unseal it.
//!
//! The software PolicyPCR digest is checked against `tpm2_createpolicy --policy-pcr`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aws_lc_rs::rand::SystemRandom;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::duplicate::{seal_to_ek, SealedImport, SEALED_NAME_ALG};
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::public::Public;
use mooring_attestation::tpm::session_policy::{self, pcr_policy};
use mooring_tests::{Swtpm, SwtpmOptions, Tpm2Tools};

const SECRET: &[u8] = b"sk_live_51H8mooring-payment-credential\x00\xff binary ok";

/// PCRs the tests seal to: two banks, with PCR 16 (resettable, extendable by tests) and
/// PCR 7 given non-zero values first so the policy covers real measurements.
const PCR_LIST: &str = "sha1:7+sha256:0,7,16";

/// The EK (`tpm2_createek`, TCG default template for `alg`), saved as `ek.ctx` / `ek.pub`.
fn create_ek(tools: &Tpm2Tools, alg: &str) -> Public {
    tools.run("tpm2_createek", ["-c", "ek.ctx", "-G", alg, "-u", "ek.pub"]).unwrap();
    tools.flush_all().unwrap();
    Public::from_tpm2b(&std::fs::read(tools.path("ek.pub")).unwrap()).unwrap()
}

fn extend(tools: &Tpm2Tools, pcr: u8, bank: &str, data: &[u8]) {
    let digest = HashAlg::from_name(bank).unwrap().digest(&[data]);
    tools.run("tpm2_pcrextend", [format!("{pcr}:{bank}={}", hex::encode(digest))]).unwrap();
}

/// Gives PCR 7 (both banks) and PCR 16 measurements, as a boot would.
fn measure_boot(tools: &Tpm2Tools) {
    extend(tools, 7, "sha1", b"secure boot state");
    extend(tools, 7, "sha256", b"secure boot state");
    extend(tools, 16, "sha256", b"kernel command line");
}

/// The current values of `list`, read with `tpm2_pcrread -o`.
fn read_pcrs(tools: &Tpm2Tools, list: &str) -> (PcrSelection, PcrValues) {
    let selection = session_policy::parse_tpm2_tools_pcr_list(list).unwrap();
    tools.run("tpm2_pcrread", [list, "-o", "pcrs.bin"]).unwrap();
    let values =
        PcrValues::from_tpm2_tools(&std::fs::read(tools.path("pcrs.bin")).unwrap(), &selection).unwrap();
    (selection, values)
}

/// The step of import / load / unseal that failed, with tpm2-tools' message.
#[derive(Debug)]
#[allow(dead_code)] // the messages are read through `Debug` in failure reports
enum Failed {
    Import(String),
    Load(String),
    Unseal(String),
}

/// A policy session satisfying the EK's policy, PolicySecret(TPM_RH_ENDORSEMENT), in
/// `ek-session.ctx`.
fn ek_session(tools: &Tpm2Tools) {
    tools.run("tpm2_startauthsession", ["--policy-session", "-S", "ek-session.ctx"]).unwrap();
    tools.run("tpm2_policysecret", ["-S", "ek-session.ctx", "-c", "e"]).unwrap();
}

/// Writes the blob's files and runs `tpm2_import` then `tpm2_load` under the EK
/// (`ek.ctx`), each with a fresh EK policy session; leaves `sealed.ctx` for unsealing.
fn import_and_load(tools: &Tpm2Tools, sealed: &SealedImport) -> Result<(), Failed> {
    import_and_load_under(tools, sealed, "ek.ctx")
}

/// [`import_and_load`] under `parent`: a context file or a persistent handle.
fn import_and_load_under(tools: &Tpm2Tools, sealed: &SealedImport, parent: &str) -> Result<(), Failed> {
    for file in sealed.tpm2_tools_files() {
        std::fs::write(tools.path(file.file_name), file.contents).unwrap();
    }
    import_files(tools, parent).map_err(Failed::Import)?;

    ek_session(tools);
    let loaded = tools.run(
        "tpm2_load",
        [
            "-C",
            parent,
            "-u",
            "sealed.pub",
            "-r",
            "sealed.priv",
            "-c",
            "sealed.ctx",
            "-n",
            "sealed.name",
            "-P",
            "session:ek-session.ctx",
        ],
    );
    tools.flush_all().unwrap();
    loaded.map_err(|e| Failed::Load(e.to_string()))?;
    assert_eq!(std::fs::read(tools.path("sealed.name")).unwrap(), sealed.name(), "TPM computed another Name");
    Ok(())
}

/// `tpm2_unseal` of `sealed.ctx` under a PolicyPCR session over `pcr_list`.
fn unseal(tools: &Tpm2Tools, pcr_list: &str) -> Result<Vec<u8>, Failed> {
    let _ = std::fs::remove_file(tools.path("secret.out"));
    tools.run("tpm2_startauthsession", ["--policy-session", "-S", "pcr-session.ctx"]).unwrap();
    tools.run("tpm2_policypcr", ["-S", "pcr-session.ctx", "-l", pcr_list]).unwrap();
    let result =
        tools.run("tpm2_unseal", ["-c", "sealed.ctx", "-p", "session:pcr-session.ctx", "-o", "secret.out"]);
    tools.flush_all().unwrap();
    result.map_err(|e| Failed::Unseal(e.to_string()))?;
    Ok(std::fs::read(tools.path("secret.out")).unwrap())
}

fn import_and_unseal(tools: &Tpm2Tools, sealed: &SealedImport) -> Result<Vec<u8>, Failed> {
    import_and_load(tools, sealed)?;
    unseal(tools, &sealed.tpm2_tools_pcr_list())
}

/// Seals [`SECRET`] to this TPM's current values of [`PCR_LIST`].
fn seal_here(tools: &Tpm2Tools, ek: &Public) -> SealedImport {
    let (selection, values) = read_pcrs(tools, PCR_LIST);
    seal_to_ek(ek, &selection, &values, SECRET, &SystemRandom::new()).unwrap()
}

#[test]
fn sealed_secret_imports_loads_and_unseals_on_swtpm() {
    let Some(tpm) =
        Swtpm::start_or_skip("sealed_secret_imports_loads_and_unseals_on_swtpm", SwtpmOptions::default())
    else {
        return;
    };
    let tools = tpm.tools();
    measure_boot(&tools);
    for alg in ["rsa", "ecc"] {
        let ek = create_ek(&tools, alg);
        let sealed = seal_here(&tools, &ek);
        assert_eq!(sealed.tpm2_tools_pcr_list(), PCR_LIST);
        let secret = import_and_unseal(&tools, &sealed).unwrap_or_else(|e| panic!("{alg} EK: {e:?}"));
        assert_eq!(secret, SECRET, "{alg} EK: unsealed secret differs");
    }

    // The persistent EK swtpm_setup made (0x81010001), used by its handle as a client may.
    tools.run("tpm2_readpublic", ["-c", "0x81010001", "-o", "ek-persistent.pub"]).unwrap();
    let persistent = Public::from_tpm2b(&std::fs::read(tools.path("ek-persistent.pub")).unwrap()).unwrap();
    assert_eq!(persistent, create_ek(&tools, "rsa"), "persistent EK is the template EK");
    let sealed = seal_here(&tools, &persistent);
    import_and_load_under(&tools, &sealed, "0x81010001").unwrap();
    assert_eq!(unseal(&tools, &sealed.tpm2_tools_pcr_list()).unwrap(), SECRET);

    // The largest secret a sealed-data object holds.
    let ek = create_ek(&tools, "rsa");
    let (selection, values) = read_pcrs(&tools, "sha256:16");
    let big = [0xa5u8; 128];
    let sealed = seal_to_ek(&ek, &selection, &values, &big, &SystemRandom::new()).unwrap();
    assert_eq!(import_and_unseal(&tools, &sealed).unwrap(), big);
}

#[test]
fn software_pcr_policy_matches_tpm2_createpolicy() {
    let Some(tpm) =
        Swtpm::start_or_skip("software_pcr_policy_matches_tpm2_createpolicy", SwtpmOptions::default())
    else {
        return;
    };
    let tools = tpm.tools();
    measure_boot(&tools);
    for list in [PCR_LIST, "sha256:16", "sha256:0,1,2,3,4,7,16,23", "sha256:16+sha1:7"] {
        let (selection, values) = read_pcrs(&tools, list);
        let ours = pcr_policy(SEALED_NAME_ALG, &selection, &values).unwrap();
        // From the TPM's current PCRs (a trial session on the TPM).
        tools.run("tpm2_createpolicy", ["--policy-pcr", "-l", list, "-L", "policy.bin"]).unwrap();
        assert_eq!(ours.digest(), std::fs::read(tools.path("policy.bin")).unwrap(), "{list}");
        // From expected values given in a file, in selection order.
        let mut concatenated = Vec::new();
        for (bank, indices) in selection.iter() {
            for index in indices {
                concatenated.extend_from_slice(values.get(bank, index).unwrap());
            }
        }
        std::fs::write(tools.path("expected.bin"), &concatenated).unwrap();
        tools
            .run(
                "tpm2_createpolicy",
                ["--policy-pcr", "-l", list, "-f", "expected.bin", "-L", "policy-f.bin"],
            )
            .unwrap();
        assert_eq!(ours.digest(), std::fs::read(tools.path("policy-f.bin")).unwrap(), "{list} (-f)");
        tools.flush_all().unwrap();
    }
}

#[test]
fn blob_for_one_tpm_does_not_import_on_another() {
    let (Some(a), Some(b)) = (
        Swtpm::start_or_skip("blob_for_one_tpm_does_not_import_on_another", SwtpmOptions::default()),
        Swtpm::start_or_skip("blob_for_one_tpm_does_not_import_on_another", SwtpmOptions::default()),
    ) else {
        return;
    };
    let (ta, tb) = (a.tools(), b.tools());
    for alg in ["rsa", "ecc"] {
        let ek_a = create_ek(&ta, alg);
        let ek_b = create_ek(&tb, alg);
        assert_ne!(ek_a.key(), ek_b.key());
        // Both TPMs are in the same (fresh) PCR state: only the EK differs.
        let sealed = seal_here(&ta, &ek_a);
        match import_and_unseal(&tb, &sealed) {
            // ECC: B derives another seed from the ephemeral point, so the outer HMAC fails.
            // RSA: B's OAEP decryption of A's seed fails; libtpms answers TPM_RC_FAILURE.
            Err(Failed::Import(err)) => {
                assert!(alg == "rsa" || err.contains("integrity"), "{alg}: {err}");
            }
            other => panic!("{alg}: blob for TPM A on TPM B: {other:?}"),
        }
        assert_eq!(import_and_unseal(&ta, &sealed).unwrap(), SECRET, "{alg}: control on TPM A");
        assert_eq!(
            import_and_unseal(&tb, &seal_here(&tb, &ek_b)).unwrap(),
            SECRET,
            "{alg}: control on TPM B"
        );
    }
}

#[test]
fn modified_blob_does_not_import() {
    let Some(tpm) = Swtpm::start_or_skip("modified_blob_does_not_import", SwtpmOptions::default()) else {
        return;
    };
    let tools = tpm.tools();
    let ek = create_ek(&tools, "rsa");
    let sealed = seal_here(&tools, &ek);
    let files = sealed.tpm2_tools_files();
    let (public, duplicate) = (files[0].contents.to_vec(), files[1].contents.to_vec());

    // A flipped bit in the encrypted sensitive area, then in the outer HMAC.
    for index in [duplicate.len() - 1, 4] {
        let mut flipped = duplicate.clone();
        flipped[index] ^= 0x01;
        std::fs::write(tools.path("sealed.dup"), &flipped).unwrap();
        std::fs::write(tools.path("sealed.pub"), &public).unwrap();
        std::fs::write(tools.path("sealed.seed"), sealed.encrypted_seed()).unwrap();
        let err = import_files(&tools, "ek.ctx").expect_err("modified duplicate imported");
        assert!(err.contains("integrity"), "duplicate byte {index}: {err}");
    }

    // Another policy in the public area (an attacker relaxing the PCR binding): the Name
    // changes, so the outer HMAC no longer matches. authPolicy starts at TPM2B_PUBLIC
    // offset 2 + 2 + 2 + 4 + 2.
    let mut relaxed = public.clone();
    relaxed[12] ^= 0x01;
    std::fs::write(tools.path("sealed.pub"), &relaxed).unwrap();
    std::fs::write(tools.path("sealed.dup"), &duplicate).unwrap();
    let err = import_files(&tools, "ek.ctx").expect_err("public area with another policy imported");
    assert!(err.contains("integrity"), "{err}");

    // Unmodified, the same files import.
    std::fs::write(tools.path("sealed.pub"), &public).unwrap();
    import_files(&tools, "ek.ctx").unwrap();
}

/// `tpm2_import` under `parent` of the `sealed.*` files already in the working directory.
fn import_files(tools: &Tpm2Tools, parent: &str) -> Result<(), String> {
    ek_session(tools);
    let result = tools.run(
        "tpm2_import",
        [
            "-C",
            parent,
            "-u",
            "sealed.pub",
            "-i",
            "sealed.dup",
            "-s",
            "sealed.seed",
            "-r",
            "sealed.priv",
            "-P",
            "session:ek-session.ctx",
        ],
    );
    tools.flush_all().unwrap();
    result.map(drop).map_err(|e| e.to_string())
}

#[test]
fn changed_pcr_or_plain_auth_does_not_unseal() {
    let Some(tpm) =
        Swtpm::start_or_skip("changed_pcr_or_plain_auth_does_not_unseal", SwtpmOptions::default())
    else {
        return;
    };
    let tools = tpm.tools();
    measure_boot(&tools);
    let ek = create_ek(&tools, "rsa");
    let sealed = seal_here(&tools, &ek);
    import_and_load(&tools, &sealed).unwrap();

    // userWithAuth is clear: the empty auth value does not authorize Unseal.
    let plain = tools.run("tpm2_unseal", ["-c", "sealed.ctx"]);
    tools.flush_all().unwrap();
    let err = plain.expect_err("unsealed with the empty password").to_string().to_lowercase();
    assert!(err.contains("0x12f") || err.contains("authorization"), "{err}");

    assert_eq!(unseal(&tools, PCR_LIST).unwrap(), SECRET, "control before the PCR changes");

    // Another boot state: one covered PCR extended once more.
    extend(&tools, 16, "sha256", b"another kernel");
    match unseal(&tools, PCR_LIST) {
        Err(Failed::Unseal(err)) => {
            let err = err.to_lowercase();
            assert!(err.contains("policy") || err.contains("0x99d"), "{err}");
        }
        other => panic!("unsealed after PCR 16 changed: {other:?}"),
    }
    // The object is still loadable: the refusal is the policy's, not the blob's.
    import_and_load(&tools, &sealed).unwrap();
    // A PCR outside the selection changing does not matter.
    let fresh = seal_here(&tools, &ek);
    extend(&tools, 15, "sha256", b"unrelated");
    assert_eq!(import_and_unseal(&tools, &fresh).unwrap(), SECRET);
}

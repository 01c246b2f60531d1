//! Smoke tests of the swtpm harness against real swtpm + tpm2-tools: parallel instances are
//! independent TPMs, their EK certificates sit in NV and chain to the harness's local CA,
//! and a restart is a reboot (PCRs reset, persistent objects kept); an Azure-style vTPM
//! holds its AK and HCL report where a paravisor leaves them, and the metadata-service
//! stand-in answers in the THIM format.
//!
//! Skipped (with a message) when swtpm / tpm2-tools / openssl are missing, unless `CI` is set.

use std::error::Error;
use std::path::Path;
use std::process::{Command, Output};

use mooring_tests::prereq::{require_tools, TPM_TOOLS};
use mooring_tests::{EkCaFiles, EkKind, Swtpm, SwtpmOptions, Tpm2Tools};

type TestResult = Result<(), Box<dyn Error>>;

const ZERO_SHA256: &str = "0x0000000000000000000000000000000000000000000000000000000000000000";

/// swtpm, tpm2-tools and the openssl CLI, or `None` (skip) outside CI.
fn start(test: &str, options: SwtpmOptions) -> Option<Swtpm> {
    let tools: Vec<&str> = TPM_TOOLS.iter().copied().chain(["openssl", "tpm2_getcap"]).collect();
    if !require_tools(test, &tools) {
        return None;
    }
    Swtpm::start_or_skip(test, options)
}

/// `openssl verify` of a DER certificate file against the harness CA: the root as the trust
/// anchor, the intermediate (when given) as an untrusted chain certificate.
fn openssl_verify(ca: &EkCaFiles, cert: &Path, with_intermediate: bool) -> std::io::Result<Output> {
    let mut command = Command::new("openssl");
    command.arg("verify").arg("-CAfile").arg(ca.root());
    if with_intermediate {
        command.arg("-untrusted").arg(ca.intermediate());
    }
    command.arg(cert).output()
}

/// Reads an EK certificate from NV and checks it against the file swtpm_setup wrote and
/// against the local CA.
fn check_ek_cert(tpm: &Swtpm, tools: &Tpm2Tools, kind: EkKind) -> TestResult {
    let file = format!("ek-cert-{:08x}.der", kind.cert_nv_index());
    tools.run("tpm2_nvread", [format!("0x{:08x}", kind.cert_nv_index()).as_str(), "-o", &file])?;
    let der = std::fs::read(tools.path(&file))?;
    assert_eq!(der.first(), Some(&0x30), "{kind:?}: NV content is not a DER SEQUENCE");
    assert_eq!(der, tpm.ek_cert_der(kind)?, "{kind:?}: NV differs from swtpm_setup's copy");

    let ca = tpm.ek_cert_ca_files();
    let ok = openssl_verify(ca, &tools.path(&file), true)?;
    assert!(
        ok.status.success(),
        "{kind:?}: EK certificate does not chain to the local CA: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let without_intermediate = openssl_verify(ca, &tools.path(&file), false)?;
    assert!(
        !without_intermediate.status.success(),
        "{kind:?}: verified against the root alone; the intermediate should be needed"
    );
    Ok(())
}

fn check_instance(tpm: &Swtpm) -> TestResult {
    let tools = tpm.tools();
    let random = tools.run("tpm2_getrandom", ["8"])?;
    assert_eq!(random.len(), 8, "tpm2_getrandom 8 returned {random:?}");

    tools.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"])?;
    tools.flush_all()?;
    for kind in EkKind::ALL {
        check_ek_cert(tpm, &tools, kind)?;
    }
    Ok(())
}

#[test]
fn parallel_instances_are_independent_tpms_with_ca_issued_ek_certs() -> TestResult {
    let test = "parallel_instances_are_independent_tpms_with_ca_issued_ek_certs";
    // A panic in a thread (a failed start) is printed by the thread; this test then fails.
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| start(test, SwtpmOptions::default()));
        (start(test, SwtpmOptions::default()), b.join())
    });
    let (Some(a), Some(b)) = (a, b.map_err(|_| "starting the second instance panicked")?) else {
        return Ok(());
    };
    assert_ne!(a.tcti(), b.tcti());
    assert_ne!(a.state_dir(), b.state_dir());

    let (checked_a, checked_b) = std::thread::scope(|s| {
        let b = s.spawn(|| check_instance(&b).map_err(|e| e.to_string()));
        (check_instance(&a).map_err(|e| e.to_string()), b.join())
    });
    checked_a?;
    checked_b.map_err(|_| "checking the second instance panicked")??;

    let ek_a = std::fs::read(a.tools().path("ek.pub"))?;
    let ek_b = std::fs::read(b.tools().path("ek.pub"))?;
    assert_ne!(ek_a, ek_b, "two instances derived the same EK: they share a seed");
    Ok(())
}

#[test]
fn restart_resets_pcrs_and_keeps_persistent_objects() -> TestResult {
    let Some(mut tpm) = start("restart_resets_pcrs_and_keeps_persistent_objects", SwtpmOptions::default())
    else {
        return Ok(());
    };
    let tools = tpm.tools();
    let digest = "11".repeat(32);
    tools.run("tpm2_pcrextend", [format!("16:sha256={digest}")])?;
    let extended = tools.run_text("tpm2_pcrread", ["sha256:16"])?;
    assert!(!extended.contains(ZERO_SHA256), "PCR 16 not extended: {extended}");

    let tcti = tpm.tcti();
    tpm.restart()?;
    assert_eq!(tpm.tcti(), tcti, "a restart keeps the ports");

    let after = tools.run_text("tpm2_pcrread", ["sha256:16"])?;
    assert!(after.contains(ZERO_SHA256), "PCR 16 not reset by the restart: {after}");
    let persistent = tools.run_text("tpm2_getcap", ["handles-persistent"])?;
    for kind in EkKind::ALL {
        let handle = format!("0x{:X}", kind.persistent_handle());
        assert!(persistent.contains(&handle), "{kind:?} EK {handle} lost: {persistent}");
    }
    // The EK certificates are NV: still there.
    tools.run(
        "tpm2_nvread",
        [format!("0x{:08x}", EkKind::Rsa2048.cert_nv_index()), "-o".to_owned(), "ek.der".to_owned()],
    )?;
    Ok(())
}

#[test]
fn without_ek_certs_the_nv_index_is_absent() -> TestResult {
    let test = "without_ek_certs_the_nv_index_is_absent";
    let Some(tpm) = start(test, SwtpmOptions::default().without_ek_certs()) else {
        return Ok(());
    };
    let read = tpm.tools().run("tpm2_nvread", [format!("0x{:08x}", EkKind::Rsa2048.cert_nv_index())]);
    let err = read.err().ok_or("EK certificate NV index readable on a TPM set up without it")?;
    assert!(err.to_string().contains("tpm2_nvread"), "error names the command: {err}");
    assert!(tpm.ek_cert_der(EkKind::Rsa2048).is_err());
    Ok(())
}

#[test]
fn later_instances_sign_with_the_shared_ca() -> TestResult {
    let test = "later_instances_sign_with_the_shared_ca";
    // The first instance of a fresh target directory creates the CA and publishes it.
    let Some(first) = start(test, SwtpmOptions::default()) else {
        return Ok(());
    };
    drop(first);
    let Some(second) = start(test, SwtpmOptions::default()) else {
        return Ok(());
    };
    let own_dir = second.state_dir().parent().ok_or("no parent")?.to_owned();
    let ca = second.ek_cert_ca_files();
    assert!(!ca.root().starts_with(&own_dir), "second instance made its own CA: {ca:?}");
    check_ek_cert(&second, &second.tools(), EkKind::EccP384)
}

#[test]
fn private_ca_is_not_the_shared_ca() -> TestResult {
    let Some(tpm) = start("private_ca_is_not_the_shared_ca", SwtpmOptions::default().with_private_ca())
    else {
        return Ok(());
    };
    let tools = tpm.tools();
    check_ek_cert(&tpm, &tools, EkKind::Rsa2048)?;
    assert!(tpm.ek_cert_ca_files().root().starts_with(tpm.state_dir().parent().ok_or("no parent")?));
    Ok(())
}

#[test]
fn the_metadata_stand_in_speaks_thim_only_to_callers_with_the_metadata_header() -> TestResult {
    use mooring_attestation::pem;
    use mooring_attestation::snp::sim::TestSigner;
    use mooring_client::azure::thim::{vcek_chain, ThimError};
    use mooring_tests::azure::ImdsStandIn;

    let signer = TestSigner::generate();
    let imds = ImdsStandIn::start(&signer);
    let client = reqwest::blocking::Client::builder().no_proxy().build()?;
    let bare = client.get(imds.url()).send()?;
    assert_eq!(bare.status().as_u16(), 400);
    let answer: serde_json::Value = client.get(imds.url()).header("Metadata", "true").send()?.json()?;
    for field in ["vcekCert", "tcbm", "certificateChain", "cacheControl"] {
        assert!(answer[field].is_string(), "{field}: {answer}");
    }
    assert_eq!(answer["tcbm"].as_str().map(str::len), Some(16), "{answer}");
    // What the client makes of it: the VCEK, then the ASK and the ARK.
    let chain = vcek_chain(&imds.url())?;
    assert_eq!(
        pem::decode_all(chain.as_bytes(), "CERTIFICATE", 3)?,
        [signer.vcek_der(), signer.ask_der(), signer.ark_der()]
    );
    let elsewhere = imds.url().replace("/certification", "/other");
    assert!(matches!(vcek_chain(&elsewhere), Err(ThimError::Status { status: 404, .. })));
    Ok(())
}

#[test]
fn an_azure_style_vtpm_holds_the_ak_and_the_hcl_report_as_a_paravisor_leaves_them() -> TestResult {
    use mooring_attestation::snp::azure::HclReport;
    use mooring_attestation::snp::sim::TestSigner;
    use mooring_tests::azure::{AzureVm, AK_HANDLE, HCL_NV_SIZE, HCL_REPORT_INDEX};

    let signer = TestSigner::generate();
    let Some(vm) = AzureVm::start_or_skip("harness_azure_vtpm", "127.0.0.1".parse()?, &signer) else {
        return Ok(());
    };
    let tools = vm.vm.tpm.tools();
    // Read back by tpm2-tools with owner authorization, as on Azure.
    let index = format!("{HCL_REPORT_INDEX:#010x}");
    let nv = tools.run("tpm2_nvread", [index.as_str(), "-C", "o"])?;
    assert_eq!(nv.len(), HCL_NV_SIZE);
    assert_eq!(nv, vm.hcl_report);
    let hcl = HclReport::parse(&nv)?;
    let claims: serde_json::Value = serde_json::from_slice(hcl.runtime_claims())?;
    assert_eq!(claims["keys"][0]["kid"], "HCLAkPub");
    assert_eq!(claims["keys"][1]["kid"], "HCLEkPub");
    let ak = tools.run_text("tpm2_readpublic", ["-c", &format!("{AK_HANDLE:#010x}")])?;
    assert!(ak.contains("restricted") && ak.contains("sign") && ak.contains("rsassa"), "{ak}");
    tools.flush_all()?;
    Ok(())
}

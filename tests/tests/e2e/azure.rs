//! The Azure confidential VM path: an Azure-style VM (a swtpm holding the paravisor's AK
//! and an HCL report from the test SEV-SNP signer, a stand-in for the instance metadata
//! service) attests with the real `mooring-client`, pays, and a copy of its credentials on
//! another host is refused; runtime claims naming another AK, and K certified by an AK the
//! report does not vouch for, are refused.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use mooring_attestation::pem;
use mooring_attestation::protocol::{AzureFinishRequest, Code, RecordedEvidence};
use mooring_attestation::snp::sim::TestSigner;
use mooring_client::api::{ApiError, BrokerApi};
use mooring_client::azure::thim;
use mooring_client::config::{Config, Evidence};
use mooring_client::tpm::nv::{self, NvReader};
use mooring_client::tpm::{ak, challenge, key, open};
use mooring_tests::azure::{
    azure_policy, persistent_ak, unreachable_vcek_url, AzureVm, ClaimsAk, ImdsStandIn, AK_HANDLE,
    HCL_REPORT_INDEX,
};
use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::{copy_dir, ClientVm, OutputText as _, CLIENT_EXIT_REFUSED, ZERO_PCR};
use mooring_tests::cvm::snp_broker_setup;
use mooring_tests::payments::{Mode, Payments, PaymentsSetup};
use serde_json::Value;

use crate::checks::{assert_audited, assert_k_unusable, assert_paid, assert_refused};
use crate::theft::config_with_dirs;
use crate::{pay, spiffe_id, A, B, NETWORKS};

/// A broker trusting `signer`'s chain (as a test root), admitting `vm` by its EK.
fn broker_for(signer: &TestSigner, vm: &AzureVm, extra_config: &str) -> Broker {
    let mut setup = snp_broker_setup(signer, azure_policy(&[vm.hardware_id()], NETWORKS));
    setup.extra_config = format!("{extra_config}{}", setup.extra_config);
    Broker::start(&setup)
}

/// `mooring-broker policy dry-run` of `evidence` against `policy` with `broker`'s
/// configuration (its SEV-SNP test root): the exit status and the one result (the JSON
/// line; a count follows it).
fn dry_run(broker: &Broker, policy: &str, evidence: &Path) -> (Option<i32>, Value) {
    let file = broker.dir.path().join("proposed.toml");
    std::fs::write(&file, policy).unwrap();
    let out = Command::new(mooring_tests::workspace_binary("mooring-broker"))
        .args(["policy", "dry-run", "--policy"])
        .arg(&file)
        .arg("--config")
        .arg(broker.config_path())
        .arg("--evidence")
        .arg(evidence)
        .output()
        .unwrap();
    let stdout = out.stdout_text();
    let line = stdout.lines().find(|l| l.starts_with('{'));
    let line: Value =
        serde_json::from_str(line.unwrap_or_else(|| panic!("{stdout}{}", out.stderr_text()))).unwrap();
    (out.status.code(), line["result"].clone())
}

#[test]
fn s8_an_azure_vm_attests_and_pays_and_a_copy_of_its_credentials_on_another_host_is_refused() {
    let signer = TestSigner::generate();
    let Some(a) = AzureVm::start_or_skip("e2e_s8_azure", loopback(A), &signer) else { return };
    let Some(b) = ClientVm::start_or_skip("e2e_s8_azure", loopback(B)) else { return };
    let broker = broker_for(&signer, &a, "");
    let imds = ImdsStandIn::start(&signer);
    a.write_config(&broker, &imds.url());
    b.write_config(&broker);
    let payments = Payments::start(&broker, &PaymentsSetup::new(Mode::Broker));

    let record = a.vm.dir.path().join("evidence.json");
    let out = a.vm.client(&["attest", "--record", record.to_str().unwrap()]);
    assert!(out.status.success(), "mooring-client attest: {}", out.stderr_text());
    let status = a.vm.status_json();
    assert_eq!(status["evidence"], "azure", "{status}");
    assert_eq!(status["class"], "azure", "{status}");
    assert_eq!(status["bound_address"], "127.0.0.2", "{status}");
    assert_eq!(status["ak_handle"], "0x81000003", "{status}");

    // The exchange as recorded for a dry run: from A's address, the HCL report as in NV,
    // the paravisor's AK, the VCEK chain the metadata stand-in served; a private file.
    assert_eq!(std::fs::metadata(&record).unwrap().mode() & 0o777, 0o600);
    let recorded: RecordedEvidence = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let RecordedEvidence::Azure(exchange) = recorded else { panic!("not an Azure exchange") };
    assert_eq!(exchange.address, loopback(A));
    assert!(!exchange.nonce.is_empty());
    assert_eq!(exchange.finish.hcl_report, a.hcl_report);
    assert_eq!(exchange.finish.ak_public, a.ak_public);
    let chain =
        pem::decode_all(exchange.finish.vcek_chain.as_deref().unwrap().as_bytes(), "CERTIFICATE", 3).unwrap();
    assert_eq!(chain, [signer.vcek_der(), signer.ask_der(), signer.ark_der()]);

    // The recording judged by `mooring-broker policy dry-run`: admitted by the policy in
    // force, refused by one wanting another PCR 7.
    let policy = azure_policy(&[a.hardware_id()], NETWORKS);
    let (status, result) = dry_run(&broker, &policy, &record);
    assert_eq!(
        (status, &result["decision"], &result["class"]),
        (Some(0), &"admitted".into(), &"azure".into()),
        "{result}"
    );
    let (status, result) = dry_run(&broker, &policy.replace(ZERO_PCR, &"ab".repeat(32)), &record);
    assert_eq!((status, &result["code"]), (Some(1), &"pcr_value_not_allowed".into()), "{result}");

    let payer = spiffe_id(&a.vm);
    assert!(payer.starts_with("spiffe://test.mooring/vm/azure/"), "{payer}");
    assert_paid(&pay(&a.vm.config_path(), &payments, "jwt", &[]), &payer);
    assert_paid(&pay(&a.vm.config_path(), &payments, "mtls", &[]), &payer);

    // Everything A keeps (credentials, key file, K's blobs) copied onto host B: K only
    // loads in A's vTPM, and the credential is bound to A's address.
    let stolen_run = b.run.path().join("stolen");
    let stolen_state = b.dir.path().join("stolen-state");
    copy_dir(&a.vm.runtime_dir(), &stolen_run);
    copy_dir(&a.vm.state_dir(), &stolen_state);
    let stolen = config_with_dirs(&b, &stolen_run, &stolen_state, "stolen.toml");
    let at_a = ["--source-address", "127.0.0.2"];
    for source in [&[][..], &at_a[..]] {
        assert_k_unusable(&pay(&stolen, &payments, "jwt", source));
        assert_k_unusable(&pay(&stolen, &payments, "mtls", source));
    }
    let reason = assert_refused(&pay(&stolen, &payments, "bearer", &[]), "address_outside_binding");
    assert!(reason.contains("127.0.0.3"), "{reason}");
    assert_audited(&broker, "address_outside_binding", B);
    assert_refused(&pay(&stolen, &payments, "bearer", &at_a), "no_proof_of_possession");
    assert_audited(&broker, "no_proof_of_possession", A);

    // A itself is unaffected.
    assert_paid(&pay(&a.vm.config_path(), &payments, "jwt", &[]), &payer);
}

#[test]
fn s8_runtime_claims_naming_another_ak_are_refused() {
    // The report vouches for another AK of the vTPM than the one that quotes: the quote does
    // not verify with the AK the report names.
    let signer = TestSigner::generate();
    let Some(a) = AzureVm::start_with_or_skip("e2e_s8_claims_ak", loopback(A), &signer, ClaimsAk::Another)
    else {
        return;
    };
    let broker = broker_for(&signer, &a, "");
    let imds = ImdsStandIn::start(&signer);
    a.write_config(&broker, &imds.url());
    let out = a.vm.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    let stderr = out.stderr_text();
    assert!(stderr.contains("(quote_invalid)") && stderr.contains("signature"), "{stderr}");
    assert!(broker.refusal_recorded("quote_invalid"));
    assert!(!a.vm.runtime_dir().join("status.json").exists());
}

#[test]
fn s8_runtime_claims_without_the_vtpm_ek_are_refused() {
    // A genuine report and a quote by the AK it names, but no EK: the VM has no identity
    // to bind, block or judge reboots by.
    let signer = TestSigner::generate();
    let Some(a) =
        AzureVm::start_with_or_skip("e2e_s8_claims_no_ek", loopback(A), &signer, ClaimsAk::OwnWithoutEk)
    else {
        return;
    };
    let broker = broker_for(&signer, &a, "");
    let imds = ImdsStandIn::start(&signer);
    a.write_config(&broker, &imds.url());
    let out = a.vm.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    let stderr = out.stderr_text();
    assert!(stderr.contains("(hcl_report_invalid)") && stderr.contains("HCLEkPub"), "{stderr}");
    assert!(!a.vm.runtime_dir().join("status.json").exists());
}

#[test]
fn s8_k_certified_by_an_ak_the_report_does_not_vouch_for_is_refused() {
    // The client's own steps, except that K is certified by a second AK of the same vTPM
    // and that AK is sent as the AK: the quote (by the AK the report vouches for) verifies,
    // but K is not proven to sit beside it.
    let signer = TestSigner::generate();
    let Some(a) = AzureVm::start_or_skip("e2e_s8_ak_mismatch", loopback(A), &signer) else { return };
    let other_public = persistent_ak(&a.vm, "other-ak", AK_HANDLE + 1);
    let broker = broker_for(&signer, &a, "");
    let imds = ImdsStandIn::start(&signer);
    a.write_config(&broker, &imds.url());
    let config = Config::load(&a.vm.config_path()).unwrap();
    let Evidence::Azure(azure) = config.evidence.clone() else { panic!("an Azure configuration") };
    let api = BrokerApi::new(&config.broker_url, &config.broker_ca, config.source_address).unwrap();
    let mut context = open(&azure.tcti).unwrap();
    let ak = ak::persistent_key(&mut context, AK_HANDLE).unwrap().unwrap();
    let other = ak::persistent_key(&mut context, AK_HANDLE + 1).unwrap().unwrap();
    assert_eq!(other.public, other_public);
    let hcl_report = nv::read(&mut context, HCL_REPORT_INDEX, NvReader::Owner, 8192).unwrap().unwrap();
    let key = key::ensure(&mut context, &config.state_dir).unwrap();
    // A finish whose quote is by the vouched AK and whose K is certified by the other,
    // sending `ak_public` as the AK.
    let mut finish = |ak_public: Vec<u8>| {
        let challenge = api.azure_begin().unwrap();
        let answer = challenge::answer(
            &mut context,
            ak.handle,
            &key,
            &challenge.nonce,
            &challenge.pcr_selection,
            &azure.event_log,
        )
        .unwrap();
        let k = key::load(&mut context, &key).unwrap();
        let (certify, certify_signature) = challenge::certify(&mut context, k, other.handle).unwrap();
        context.flush_context(k.into()).unwrap();
        let err = api
            .azure_finish(&AzureFinishRequest {
                challenge_id: challenge.challenge_id,
                hcl_report: hcl_report.clone(),
                vcek_chain: Some(thim::vcek_chain(&imds.url()).unwrap()),
                ak_public,
                quote: answer.quote.attest,
                quote_signature: answer.quote.signature,
                pcrs: answer.quote.pcrs,
                event_log: answer.event_log,
                key_public: key.public.clone(),
                certify,
                certify_signature,
            })
            .unwrap_err();
        let ApiError::Refused { code, reason, .. } = err else { panic!("not a refusal: {err}") };
        (code, reason)
    };
    let (code, reason) = finish(other.public.clone());
    assert_eq!(code, Code::AkMismatch, "{reason}");
    assert!(reason.contains("HCLAkPub"), "{reason}");
    // Sending the vouched AK instead: the certification is checked against that key (the
    // runtime claims'), and the other AK signed it.
    let (code, reason) = finish(ak.public.clone());
    assert_eq!(code, Code::CertifyInvalid, "{reason}");
    assert_audited(&broker, "ak_mismatch", A);
}

#[test]
fn s8_without_the_metadata_service_the_brokers_provisioned_vcek_serves() {
    let signer = TestSigner::generate();
    let Some(a) = AzureVm::start_or_skip("e2e_s8_provisioned_vcek", loopback(A), &signer) else { return };
    let vceks = tempfile::tempdir().unwrap();
    std::fs::write(vceks.path().join("vcek.der"), signer.vcek_der()).unwrap();
    let broker =
        broker_for(&signer, &a, &format!("[snp]\nvcek_dir = {:?}\n", vceks.path().display().to_string()));
    a.write_config(&broker, &unreachable_vcek_url());
    let out = a.vm.client(&["attest"]);
    assert!(out.status.success(), "mooring-client attest: {}", out.stderr_text());
    assert!(
        out.stderr_text().contains("no VCEK chain from the instance metadata service"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(a.vm.status_json()["class"], "azure");
}

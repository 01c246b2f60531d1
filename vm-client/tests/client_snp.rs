//! The SEV-SNP path end to end: the client's attester with the attestation crate's test
//! signer behind the device trait, against the real broker trusting that signer's chain as a
//! test root. Credentials and the HPKE-sealed secret land in the runtime directory; a report
//! that does not commit to the client's keys is refused with the broker's reason; K in guest
//! memory does mutual TLS with the X.509-SVID.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use mooring_attestation::protocol::{snp_report_data, Code, RecordedEvidence};
use mooring_attestation::snp::sim::TestSigner;
use mooring_client::api::BrokerApi;
use mooring_client::record::Recorder;
use mooring_client::runtime::RuntimeDir;
use mooring_client::service::attest_once;
use mooring_client::snp::{GuestKey, SnpAttester};
use mooring_client::tls;
use mooring_tests::broker::Broker;
use mooring_tests::client::{TestSignerDevice, SNP_MEASUREMENT};
use mooring_tests::cvm::snp_broker_setup;

const SECRET: &[u8] = b"card-vault-token-for-the-cvm";
fn broker(signer: &TestSigner) -> Broker {
    let policy = format!(
        "version = 1\n\
         [[class]]\nname = \"cvm\"\nevidence = \"snp\"\nttl_seconds = 600\naudiences = [\"payments\"]\n\
         networks = [\"127.0.0.1/32\"]\n\
         [class.snp]\nmeasurements = [\"{}\"]\n\
         min_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\n\
         allow_debug = false\nmax_vmpl = 0\n\
         [[class.secrets]]\nname = \"vault\"\nfile = \"vault.secret\"\n",
        hex::encode(SNP_MEASUREMENT)
    );
    // The broker trusts the test signer's chain as a test root (configuration, not code).
    let mut setup = snp_broker_setup(signer, policy);
    setup.secrets.push(("vault.secret".into(), SECRET.to_vec()));
    Broker::start(&setup)
}

fn api(broker: &Broker) -> BrokerApi {
    let url = format!("https://127.0.0.1:{}", broker.address.port());
    BrokerApi::new(&url, &broker.data_dir().join("tls/ca.pem"), Some("127.0.0.1".parse().unwrap())).unwrap()
}

#[test]
fn an_snp_vm_attests_stores_its_secret_and_does_mutual_tls_with_k() {
    let signer = TestSigner::generate();
    let broker = broker(&signer);
    let run = tempfile::tempdir_in("/dev/shm").unwrap();
    let runtime = RuntimeDir::open(&run.path().join("mooring"), true).unwrap();
    let device = TestSignerDevice { signer, wrong_report_data: false };
    let mut attester = SnpAttester::new(device, 0, GuestKey::generate().unwrap());
    let status = attest_once(&mut attester, &api(&broker), &runtime).unwrap();
    assert!(status.spiffe_id.starts_with("spiffe://test.mooring/vm/cvm/"), "{status:?}");
    assert_eq!(status.evidence, "snp");
    assert_eq!(status.secrets, ["vault"]);
    assert_eq!(std::fs::read(runtime.path().join("secrets/vault")).unwrap(), SECRET);
    common::assert_private(&runtime.path().join("secrets/vault"));
    common::assert_private(&runtime.path().join("svid.key"));

    // The key file kept in guest memory is K, and K does mutual TLS with the SVID.
    let kept = GuestKey::from_pem(&std::fs::read(runtime.path().join("svid.key")).unwrap()).unwrap();
    assert_eq!(kept.spki().unwrap(), attester.key().spki().unwrap());
    let bundle = std::fs::read(runtime.path().join("bundle.pem")).unwrap();
    let seen = common::mtls_peer_certificate(
        |roots| tls::client_config(runtime.path(), Arc::new(kept), roots).unwrap(),
        &bundle,
    );
    assert_eq!(seen, common::leaf(&std::fs::read(runtime.path().join("svid.pem")).unwrap()));
}

#[test]
fn a_report_not_bound_to_the_clients_keys_is_refused_with_the_brokers_reason() {
    let signer = TestSigner::generate();
    let broker = broker(&signer);
    let run = tempfile::tempdir_in("/dev/shm").unwrap();
    let runtime = RuntimeDir::open(&run.path().join("mooring"), true).unwrap();
    let device = TestSignerDevice { signer, wrong_report_data: true };
    let mut attester = SnpAttester::new(device, 0, GuestKey::generate().unwrap());
    let err = attest_once(&mut attester, &api(&broker), &runtime).unwrap_err();
    let (code, reason) = err.refusal().unwrap_or_else(|| panic!("not a refusal: {err}"));
    assert!(code != Code::Unrecognized && !reason.is_empty(), "{err}");
    assert!(runtime.status().unwrap().is_none(), "nothing is stored after a refusal");
}

#[test]
fn a_recorded_snp_exchange_holds_the_report_sent_and_the_address() {
    let signer = TestSigner::generate();
    let broker = broker(&signer);
    let run = tempfile::tempdir_in("/dev/shm").unwrap();
    let runtime = RuntimeDir::open(&run.path().join("mooring"), true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snp-evidence.json");
    let api = api(&broker).recording(Recorder::new(&file));
    let device = TestSignerDevice { signer, wrong_report_data: false };
    let mut attester = SnpAttester::new(device, 0, GuestKey::generate().unwrap());
    attest_once(&mut attester, &api, &runtime).unwrap();
    common::assert_private(&file);
    let recorded: RecordedEvidence = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let RecordedEvidence::Snp(exchange) = recorded else { panic!("not an SNP exchange") };
    assert_eq!(exchange.address.to_string(), "127.0.0.1");
    assert_eq!(exchange.finish.key_spki, attester.key().spki().unwrap());
    // The report sent answers the recorded nonce (its REPORT_DATA commits to it and the keys).
    let report_data =
        snp_report_data(&exchange.nonce, &exchange.finish.key_spki, &exchange.finish.sealing_key);
    let report = mooring_attestation::snp::Report::parse(&exchange.finish.report).unwrap();
    assert_eq!(report.report_data(), &report_data);
}

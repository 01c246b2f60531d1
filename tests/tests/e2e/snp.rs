//! The SEV-SNP path: a guest with K in its memory attests and pays; copies of its
//! credentials are refused.

use std::net::IpAddr;
use std::path::PathBuf;

use mooring_attestation::snp::sim::TestSigner;
use mooring_client::api::BrokerApi;
use mooring_client::config::Config;
use mooring_client::runtime::RuntimeDir;
use mooring_client::service::attest_once;
use mooring_client::snp::{GuestKey, SnpAttester};
use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::{copy_dir, TestSignerDevice, SNP_MEASUREMENT};
use mooring_tests::cvm::snp_broker_setup;
use mooring_tests::payments::{Mode, Payments, PaymentsSetup};
use serde_json::json;

use crate::checks::{assert_audited, assert_paid, assert_refused};
use crate::{pay, A, B, NETWORKS};

/// An SEV-SNP VM: the test signer as its platform, K in its memory (the runtime
/// directory's svid.key), and a client configuration for mooring-pay.
struct SnpVm {
    dir: tempfile::TempDir,
    run: tempfile::TempDir,
}

impl SnpVm {
    fn new(broker: &Broker, address: IpAddr) -> Self {
        let dir = tempfile::Builder::new().prefix("mooring-snp-vm-").tempdir().unwrap();
        let run = tempfile::Builder::new().prefix("mooring-snp-run-").tempdir_in("/dev/shm").unwrap();
        let vm = Self { dir, run };
        let config = format!(
            "broker_url = \"https://127.0.0.1:{}\"\nbroker_ca = {:?}\nruntime_dir = {:?}\nstate_dir = {:?}\n\
             source_address = \"{address}\"\n\n[evidence]\nkind = \"snp\"\n",
            broker.address.port(),
            broker.data_dir().join("tls/ca.pem").display().to_string(),
            vm.runtime_dir().display().to_string(),
            vm.dir.path().join("state").display().to_string(),
        );
        std::fs::write(vm.config_path(), config).unwrap();
        vm
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("client.toml")
    }

    fn runtime_dir(&self) -> PathBuf {
        self.run.path().join("mooring")
    }

    /// What `mooring-client attest` does on a SEV-SNP guest, with the test signer as the device.
    fn attest(&self, signer: TestSigner) -> String {
        let config = Config::load(&self.config_path()).unwrap();
        let api = BrokerApi::new(&config.broker_url, &config.broker_ca, config.source_address).unwrap();
        let runtime = RuntimeDir::open(&self.runtime_dir(), true).unwrap();
        let device = TestSignerDevice { signer, wrong_report_data: false };
        let mut attester = SnpAttester::new(device, 0, GuestKey::generate().unwrap());
        attest_once(&mut attester, &api, &runtime).unwrap().spiffe_id
    }
}

#[test]
fn s7_an_snp_vm_attests_and_pays_and_its_copied_credentials_are_refused() {
    let signer = TestSigner::generate();
    let policy = format!(
        "version = 1\n[[class]]\nname = \"cvm\"\nevidence = \"snp\"\nttl_seconds = 600\naudiences = [\"payments\"]\n\
         networks = {NETWORKS:?}\n[class.snp]\nmeasurements = [\"{}\"]\n\
         min_tcb = {{ bootloader = 0, tee = 0, snp = 0, microcode = 0 }}\nallow_debug = false\nmax_vmpl = 0\n",
        hex::encode(SNP_MEASUREMENT)
    );
    let broker = Broker::start(&snp_broker_setup(&signer, policy));
    let payments = Payments::start(&broker, &PaymentsSetup::new(Mode::Broker));
    let a = SnpVm::new(&broker, loopback(A));
    let payer = a.attest(signer);
    assert!(payer.starts_with("spiffe://test.mooring/vm/cvm/"), "{payer}");
    assert_paid(&pay(&a.config_path(), &payments, "jwt", &[]), &payer);
    assert_paid(&pay(&a.config_path(), &payments, "mtls", &[]), &payer);
    let offline = Payments::start(&broker, &PaymentsSetup::new(Mode::Offline));
    assert_paid(&pay(&a.config_path(), &offline, "jwt", &[]), &payer);

    // A's runtime directory copied to B (another address). On this path K lives in guest
    // memory, so a copy of it carries K: the address binding is what refuses it.
    let b = SnpVm::new(&broker, loopback(B));
    copy_dir(&a.runtime_dir(), &b.runtime_dir());
    for mode in ["jwt", "mtls", "bearer"] {
        let reason = assert_refused(&pay(&b.config_path(), &payments, mode, &[]), "address_outside_binding");
        assert!(reason.contains("127.0.0.3"), "{reason}");
    }
    assert_audited(&broker, "address_outside_binding", B);
    // The token without K (what a log or a disk image yields), from A's own address.
    assert_refused(
        &pay(&b.config_path(), &payments, "bearer", &["--source-address", "127.0.0.2"]),
        "no_proof_of_possession",
    );
    assert_audited(&broker, "no_proof_of_possession", A);

    // Revoked by the admin API: refused at once, by mutual TLS too.
    let revoke = json!({"target": {"kind": "vm", "id": payer}, "reason": "decommissioned"});
    broker.admin_post("admin/revocations", &revoke);
    for mode in ["jwt", "mtls"] {
        let reason = assert_refused(&pay(&a.config_path(), &payments, mode, &[]), "revoked");
        assert!(reason.contains("decommissioned"), "{reason}");
    }
    assert_audited(&broker, "revoked", A);
}

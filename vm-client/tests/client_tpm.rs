//! `mooring-client` against real swtpm instances and the real broker: first attestation,
//! reboot (swtpm restart: PCRs reset) with the kept AK, refusal with the broker's reason,
//! sealed secrets that stop opening when the PCRs change, a foreign object at the AK handle,
//! K's TSS2 key file used by OpenSSL's tpm2 provider, and a TPM with no EK certificate
//! admitted by enrollment (AWS NitroTPM's case).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{OutputText as _, Vm, CLIENT_EXIT_REFUSED};
use mooring_attestation::protocol::{tpm_qualifying_data, RecordedEvidence};
use mooring_client::api::BrokerApi;
use mooring_client::config::{Config, Evidence};
use mooring_client::service::Attester as _;
use mooring_client::tpm::attest::TpmAttester;
use mooring_client::tpm::{ek, open, unseal};
use mooring_tests::broker::{loopback, Broker, BrokerSetup};
use mooring_tests::client::{tpm_policy_matching, ClientVm, PAYMENT_SECRET};
use mooring_tests::{EkKind, SwtpmOptions};

#[test]
fn first_attestation_stores_credentials_and_the_unsealed_secret() {
    let Some(vm) = Vm::start("client_first") else { return };
    let out = vm.client(&["attest"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(out.stdout_text().contains("spiffe://test.mooring/vm/web/"), "{}", out.stdout_text());
    let run = vm.runtime_dir();
    assert_eq!(std::fs::read(run.join("secrets/payment-key")).unwrap(), b"pay-4242-secret");
    for file in ["svid.pem", "svid.key", "bundle.pem", "jwt-svid", "status.json"] {
        common::assert_private(&run.join(file));
    }
    let key = std::fs::read_to_string(run.join("svid.key")).unwrap();
    assert!(key.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"), "{key}");
    let status = vm.client(&["status"]);
    assert!(status.status.success(), "{}", status.stderr_text());
    let text = status.stdout_text();
    assert!(text.contains("ak_handle:     0x81010002") && text.contains("payment-key"), "{text}");
    assert!(text.contains("renews_at:"), "{text}");
}

#[test]
fn a_reboot_resets_the_pcrs_and_the_kept_ak_attests_again() {
    let Some(mut vm) = Vm::start("client_reboot") else { return };
    let first = vm.client(&["attest"]);
    assert!(first.status.success(), "{}", first.stderr_text());
    assert!(first.stderr_text().contains("created the AK"), "{}", first.stderr_text());
    let ak_before = std::fs::read(vm.state_dir().join("ak.pub")).unwrap();
    let serial_before = vm.status_json()["x509_serial"].clone();
    // Change a PCR, then reboot: the PCRs are reset, the persistent AK survives.
    vm.extend_pcr(0);
    vm.tpm.restart().unwrap();
    let again = vm.client(&["attest"]);
    assert!(again.status.success(), "{}", again.stderr_text());
    assert!(!again.stderr_text().contains("created the AK"), "{}", again.stderr_text());
    assert_eq!(std::fs::read(vm.state_dir().join("ak.pub")).unwrap(), ak_before);
    assert_ne!(vm.status_json()["x509_serial"], serial_before);
    assert_eq!(std::fs::read(vm.runtime_dir().join("secrets/payment-key")).unwrap(), b"pay-4242-secret");
}

#[test]
fn a_refused_vm_exits_with_the_brokers_reason() {
    let Some(vm) = Vm::start("client_refused") else { return };
    vm.extend_pcr(7);
    let out = vm.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    let stderr = out.stderr_text();
    assert!(stderr.contains("the broker refused this VM: PCR sha256:7"), "{stderr}");
    assert!(stderr.contains("pcr_value_not_allowed"), "{stderr}");
    assert!(!vm.runtime_dir().join("status.json").exists());
    // `run` stops too, with the same message, instead of retrying a refusal forever.
    let out = vm.client(&["run"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
}

#[test]
fn attest_record_writes_the_exchange_admitted_or_refused() {
    let Some(vm) = Vm::start("client_record") else { return };
    let file = vm.dir.path().join("tpm-evidence.json");
    let record = ["attest", "--record", file.to_str().unwrap()];
    let out = vm.client(&record);
    assert!(out.status.success(), "{}", out.stderr_text());
    common::assert_private(&file);
    let read = || -> RecordedEvidence { serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap() };
    let RecordedEvidence::Tpm(admitted) = read() else { panic!("not a TPM exchange") };
    assert_eq!(admitted.address.to_string(), "127.0.0.1");
    assert_eq!(admitted.begin.ak_public, std::fs::read(vm.state_dir().join("ak.pub")).unwrap());
    assert_eq!(admitted.begin.key_public, std::fs::read(vm.state_dir().join("k.pub")).unwrap());
    assert!(admitted.begin.ek_certificate.is_some());
    // The quote sent answers the recorded nonce for K.
    let quote = mooring_attestation::tpm::attest::Attest::parse(&admitted.finish.quote).unwrap();
    assert_eq!(
        quote.extra_data(),
        tpm_qualifying_data(&admitted.nonce, &admitted.begin.key_public).as_slice()
    );

    // A refused exchange is recorded too (what a dry run of a new policy is for).
    vm.extend_pcr(7);
    let out = vm.client(&record);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    let RecordedEvidence::Tpm(refused) = read() else { panic!("not a TPM exchange") };
    assert_ne!(refused.nonce, admitted.nonce);
    assert_ne!(refused.finish.pcrs, admitted.finish.pcrs);
}

#[test]
fn a_sealed_secret_does_not_open_after_the_pcrs_change() {
    let Some(vm) = Vm::start("client_unseal") else { return };
    let config = Config::load(&vm.config_path()).unwrap();
    let Evidence::Tpm(tpm) = config.evidence.clone() else { panic!("tpm config") };
    let api = BrokerApi::new(&config.broker_url, &config.broker_ca, config.source_address).unwrap();
    let attested = TpmAttester::new(tpm.clone(), &config.state_dir).attest(&api).unwrap();
    assert_eq!(attested.secrets, vec![("payment-key".to_owned(), b"pay-4242-secret".to_vec())]);
    let sealed = attested.issued.secrets.first().unwrap();
    let unseal_now = || {
        let mut context = open(&tpm.tcti).unwrap();
        let ek = ek::recreate(&mut context, tpm.ek).unwrap();
        let result = unseal::unseal(&mut context, ek.handle, sealed);
        context.flush_context(ek.handle.into()).unwrap();
        result
    };
    assert_eq!(unseal_now().unwrap(), b"pay-4242-secret");
    vm.extend_pcr(0);
    let err = unseal_now().unwrap_err();
    assert!(err.to_string().contains("TPM2_Unseal"), "{err}");
}

#[test]
fn a_foreign_object_at_the_ak_handle_is_refused_not_replaced() {
    let Some(vm) = Vm::start("client_foreign_ak") else { return };
    let tools = vm.tpm.tools();
    tools.run("tpm2_createprimary", ["-C", "o", "-G", "ecc", "-c", "other.ctx"]).unwrap();
    tools.run("tpm2_evictcontrol", ["-C", "o", "-c", "other.ctx", "0x81010002"]).unwrap();
    tools.flush_all().unwrap();
    let out = vm.client(&["attest"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("not this client's AK"), "{}", out.stderr_text());
    assert!(!vm.state_dir().join("ak.pub").exists());
}

#[test]
fn the_tss2_key_file_signs_in_openssls_tpm2_provider() {
    let Some(vm) = Vm::start("client_openssl") else { return };
    if !common::openssl_tpm2_provider_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "OpenSSL tpm2 provider missing (apt-get install tpm2-openssl)"
        );
        eprintln!("skipping: OpenSSL tpm2 provider not installed (apt-get install tpm2-openssl)");
        return;
    }
    let out = vm.client(&["attest"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let run = vm.runtime_dir();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("message"), b"signed by K inside the TPM").unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(work.path())
            .env("TPM2OPENSSL_TCTI", vm.tpm.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let key = run.join("svid.key").display().to_string();
    let svid = run.join("svid.pem").display().to_string();
    // The key file loads in the TPM through the provider and is the SVID's key ...
    let from_tpm = openssl(&["pkey", "-provider", "tpm2", "-provider", "default", "-in", &key, "-pubout"]);
    let from_svid = openssl(&["x509", "-in", &svid, "-noout", "-pubkey"]);
    assert_eq!(from_tpm, from_svid);
    // ... and signs there (the tpm2 provider's ECDSA, not the default provider's, which has
    // no private key); the signature verifies with the SVID's public key.
    openssl(&[
        "dgst",
        "-provider",
        "tpm2",
        "-provider",
        "default",
        "-propquery",
        "?provider=tpm2",
        "-sha256",
        "-sign",
        &key,
        "-out",
        "sig",
        "message",
    ]);
    std::fs::write(work.path().join("svid-pub.pem"), &from_svid).unwrap();
    let verified = openssl(&["dgst", "-sha256", "-verify", "svid-pub.pem", "-signature", "sig", "message"]);
    assert!(verified.contains("Verified OK"), "{verified}");
}

/// `mooring-client run` as a child, its stderr collected.
struct Daemon {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    fn start(vm: &Vm) -> Self {
        use std::io::BufRead as _;
        let mut child = vm.client_command(&["run"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_daemon_serves_through_a_broker_outage_and_renews_at_half_life() {
    use std::time::Duration;
    let Some(mut vm) = Vm::start("client_daemon") else { return };
    let first = vm.client(&["attest"]);
    assert!(first.status.success(), "{}", first.stderr_text());
    let serial = |vm: &Vm| vm.status_json()["x509_serial"].as_str().unwrap().to_owned();
    let first_serial = serial(&vm);
    let svid = std::fs::read(vm.runtime_dir().join("svid.pem")).unwrap();

    // The broker goes down; the daemon retries with backoff and keeps the credentials.
    let port = vm.broker.address.port();
    vm.broker.kill_9();
    let daemon = Daemon::start(&vm);
    assert!(
        common::wait_for(Duration::from_secs(20), || daemon.log().matches("attestation failed").count() >= 2),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("still serving the current credentials"), "{}", daemon.log());
    assert_eq!(std::fs::read(vm.runtime_dir().join("svid.pem")).unwrap(), svid);
    assert_eq!(serial(&vm), first_serial);
    assert!(vm.client(&["status"]).status.success());

    // The broker comes back on the same address: the daemon attests again.
    let config = std::fs::read_to_string(vm.broker.config_path()).unwrap();
    std::fs::write(vm.broker.config_path(), config.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")))
        .unwrap();
    vm.broker.restart();
    assert_eq!(vm.broker.address.port(), port);
    assert!(common::wait_for(Duration::from_secs(20), || serial(&vm) != first_serial), "{}", daemon.log());
    let second_serial = serial(&vm);
    let status = vm.status_json();
    let (renew_after, renew_at) =
        (status["renew_after"].as_i64().unwrap(), status["renew_at"].as_i64().unwrap());
    assert!(renew_at <= renew_after && renew_after - renew_at <= 3, "{status}");

    // Renewal at half of the 60 s lifetime, with at most 10 % jitter.
    assert!(common::wait_for(Duration::from_secs(45), || serial(&vm) != second_serial), "{}", daemon.log());
    let renewed = vm.status_json();
    assert!(renewed["attested_at"].as_i64().unwrap() >= renew_at, "{renewed} after {status}");
    assert_eq!(std::fs::read(vm.runtime_dir().join("secrets/payment-key")).unwrap(), b"pay-4242-secret");
}

#[test]
fn k_in_the_tpm_does_mutual_tls_with_the_x509_svid() {
    let Some(vm) = Vm::start("client_mtls") else { return };
    let out = vm.client(&["attest"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let config = Config::load(&vm.config_path()).unwrap();
    let Evidence::Tpm(tpm) = config.evidence else { panic!("tpm config") };
    let key = mooring_client::tpm::key::KeyBlobs {
        public: std::fs::read(vm.state_dir().join("k.pub")).unwrap(),
        private: std::fs::read(vm.state_dir().join("k.priv")).unwrap(),
    };
    let signer = std::sync::Arc::new(mooring_client::tpm::sign::TpmSigner::new(&tpm.tcti, key));
    let run = vm.runtime_dir();
    let bundle = std::fs::read(run.join("bundle.pem")).unwrap();
    let seen = common::mtls_peer_certificate(
        |roots| mooring_client::tls::client_config(&run, signer, roots).unwrap(),
        &bundle,
    );
    assert_eq!(seen, common::leaf(&std::fs::read(run.join("svid.pem")).unwrap()));
}

#[test]
fn source_address_picks_the_local_address_the_broker_sees() {
    let Some(vm) = Vm::start("client_source") else { return };
    // The policy admits 127.0.0.1 only: from 127.0.0.2 the broker refuses, naming the address.
    let out = vm.client(&["--source-address", "127.0.0.2", "attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("127.0.0.2"), "{}", out.stderr_text());
    // The configured address (127.0.0.1) works, and the credential is bound to it. Timed:
    // a whole `attest` (process start, EK, kept AK, quote, certify, unseal, files).
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let out = vm.client(&["attest"]);
        times.push(start.elapsed());
        assert!(out.status.success(), "{}", out.stderr_text());
    }
    assert_eq!(vm.status_json()["bound_address"], "127.0.0.1");
    times.sort();
    eprintln!(
        "mooring-client attest on swtpm: median {:?}, min {:?}, max {:?}",
        times[2], times[0], times[4]
    );
}

/// AWS NitroTPM's case: a TPM whose EK has no certificate (its NV index is absent), vouched
/// for only by enrollment, against a broker with no EK roots at all. The administrator gets
/// the EK public key in the forms AWS EC2's `get-instance-tpm-ek-pub` gives it (`--key-format
/// der`: a DER SubjectPublicKeyInfo; `tpmt`: a TPMT_PUBLIC), here read from the swtpm with
/// tpm2-tools, and `mooring-broker identity ek` turns it into the admin API's body.
#[test]
fn an_ek_without_a_certificate_attests_once_enrolled_and_not_once_blocked() {
    let Some(vm) = ClientVm::start_with_or_skip(
        "client_enrolled_ek",
        loopback(1),
        SwtpmOptions::default().without_ek_certs(),
    ) else {
        return;
    };
    assert!(vm.tpm.ek_cert_der(EkKind::Rsa2048).is_err(), "the EK certificate NV index must be absent");
    let broker = Broker::start(&BrokerSetup {
        policy: tpm_policy_matching("enrolled = true", &["127.0.0.1/32"], 60),
        ek_roots: Vec::new(),
        extra_config: String::new(),
        secrets: vec![("payment.key".into(), PAYMENT_SECRET.to_vec())],
    });
    vm.write_config(&broker);

    // Before enrollment: refused, naming the EK the broker saw.
    let out = vm.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    let stderr = out.stderr_text();
    assert!(stderr.contains("is not enrolled (ek_untrusted)"), "{stderr}");
    let seen =
        stderr.split("no EK certificate, and EK ").nth(1).unwrap().split(' ').next().unwrap().to_owned();

    // The EK public key as EC2 hands it out, in both of its formats.
    let tools = vm.tpm.tools();
    tools.run("tpm2_createek", ["-c", "ek.ctx", "-G", "rsa"]).unwrap();
    tools.run("tpm2_readpublic", ["-c", "ek.ctx", "-f", "der", "-o", "ek.der"]).unwrap();
    tools.run("tpm2_readpublic", ["-c", "ek.ctx", "-f", "tpmt", "-o", "ek.tpmt"]).unwrap();
    tools.flush_all().unwrap();
    let body = |file: &str, status: &str| -> serde_json::Value {
        let out = std::process::Command::new(mooring_tests::workspace_binary("mooring-broker"))
            .args(["identity", "ek", "--status", status, "--public"])
            .arg(tools.path(file))
            .output()
            .unwrap();
        assert!(out.status.success(), "identity ek {file}: {}", out.stderr_text());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let enroll = body("ek.der", "enrolled");
    assert_eq!(enroll, body("ek.tpmt", "enrolled"));
    assert_eq!(enroll, serde_json::json!({"identity": {"kind": "ek", "id": seen}, "status": "enrolled"}));
    broker.admin_post("admin/identities", &enroll);

    // Enrolled: credentials, and the secret sealed to this TPM opens.
    vm.attest();
    assert!(vm.status_json()["spiffe_id"].as_str().unwrap().contains(&seen[..16]), "{}", vm.status_json());
    assert_eq!(std::fs::read(vm.runtime_dir().join("secrets/payment-key")).unwrap(), PAYMENT_SECRET);

    // Blocked: refused again.
    broker.admin_post("admin/identities", &body("ek.der", "blocked"));
    let out = vm.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("(vm_blocked)"), "{}", out.stderr_text());
}

/// The client names its event log by SHA-256 and sends it only to a broker that holds no
/// copy: the first attestation meets `event_log_unknown` once and sends the log, the next
/// one is admitted on the digest alone. The swtpm is measured with a real firmware log and
/// the policy pins the PCRs it leaves.
#[test]
fn the_client_sends_its_event_log_only_to_a_broker_without_a_copy() {
    let Some(vm) = mooring_tests::client::ClientVm::start_or_skip("client_log_by_digest", loopback(1)) else {
        return;
    };
    let log = mooring_testdata::testdata("tpm/eventlogs/keylime/binary_bios_measurements-secureboot");
    let pcrs = [1u8, 2, 3, 4, 5, 6, 7];
    mooring_tests::measured_boot::measure(&vm.tpm.tools(), &log, &pcrs);
    let values = mooring_tests::measured_boot::pcr_values(&log, &pcrs);
    let mut setup = mooring_tests::client::tpm_broker_setup(&[&vm.tpm], &["127.0.0.1/32"]);
    setup.policy = format!(
        "version = 1\n\n[[class]]\nname = \"web\"\nevidence = \"tpm\"\nttl_seconds = 600\n\
         networks = [\"127.0.0.1/32\"]\n\n[class.match]\nek_issuers = [{:?}]\n\n[class.tpm]\n\
         pcr_bank = \"sha256\"\npcrs = {pcrs:?}\n\n[class.tpm.pcr_values]\n{values}",
        mooring_tests::client::ek_issuer(&vm.tpm)
    );
    let broker = Broker::start(&setup);
    let log_file = vm.dir.path().join("binary_bios_measurements");
    std::fs::write(&log_file, &log).unwrap();
    vm.write_config_with(&broker, &format!("kind = \"tpm\"\nevent_log = {log_file:?}\n"));
    let unknown = || {
        broker
            .metrics()
            .lines()
            .find(|line| {
                line.starts_with("mooring_refusals_total") && line.contains("code=\"event_log_unknown\"")
            })
            .map_or(0, |line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
    };

    let first = vm.client(&["attest"]);
    assert!(first.status.success(), "{}", first.stderr_text());
    assert_eq!(unknown(), 1, "the first finish names the log, the broker has none");
    let second = vm.client(&["attest"]);
    assert!(second.status.success(), "{}", second.stderr_text());
    assert_eq!(unknown(), 1, "the second finish is admitted on the digest alone");
    let issued = broker.audit().iter().filter(|r| r["code"] == "issued").count();
    assert_eq!(issued, 2);
}

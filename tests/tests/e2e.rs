//! End to end, with every part real: simulated VMs, each with its own swtpm and its own
//! loopback address (A on 127.0.0.2, B on 127.0.0.3), the broker on its sled store, the
//! `mooring-client` binary, the example payment service, and `mooring-pay` as the VM's
//! application. Each scenario is its own test; each refusal is checked by its code, and
//! the broker's audit log must hold it with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use mooring_attestation::snp::sim::TestSigner;
use mooring_client::api::BrokerApi;
use mooring_client::config::{Config, Evidence};
use mooring_client::runtime::RuntimeDir;
use mooring_client::service::{attest_once, now, Attester as _};
use mooring_client::snp::{GuestKey, SnpAttester};
use mooring_client::tpm::attest::TpmAttester;
use mooring_client::tpm::{ek, open, unseal};
use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::{
    copy_dir, tpm_broker_setup, ClientVm, OutputText as _, TestSignerDevice, CLIENT_EXIT_REFUSED,
    PAYMENT_SECRET, SNP_MEASUREMENT,
};
use mooring_tests::cvm::snp_broker_setup;
use mooring_tests::payments::{Mode, Payments, PaymentsSetup};
use serde_json::{json, Value};

/// VM A's and VM B's addresses.
const A: u8 = 2;
const B: u8 = 3;
const NETWORKS: &[&str] = &["127.0.0.2/32", "127.0.0.3/32"];

/// `mooring-pay` exit statuses.
const PAY_EXIT_LOCAL: i32 = 1;
const PAY_EXIT_REFUSED: i32 = 3;

/// Two TPM VMs, the broker admitting both, and the payment service asking the broker.
struct World {
    a: ClientVm,
    b: ClientVm,
    broker: Broker,
    payments: Payments,
}

fn world(test: &str) -> Option<World> {
    let a = ClientVm::start_or_skip(test, loopback(A))?;
    let b = ClientVm::start_or_skip(test, loopback(B))?;
    let broker = Broker::start(&tpm_broker_setup(&[&a.tpm, &b.tpm], NETWORKS));
    a.write_config(&broker);
    b.write_config(&broker);
    let payments = Payments::start(&broker, &PaymentsSetup::new(Mode::Broker));
    Some(World { a, b, broker, payments })
}

/// `mooring-pay --config CONFIG --mode MODE ARGS` against `payments`.
fn pay(config: &Path, payments: &Payments, mode: &str, args: &[&str]) -> Output {
    payments.mooring_pay(config, mode, args)
}

/// The `offline` payment service refuses `config`'s credential with `code` within 2 s (its
/// revocation list long-poll answering), paying until then.
fn refused_offline_within_2_s(config: &Path, offline: &Payments, mode: &str, code: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let out = pay(config, offline, mode, &[]);
        if out.status.code() != Some(0) {
            assert_refused(&out, code);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the offline service still accepts the {mode} credential ({code})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Paid: the receipt names `payer`.
fn assert_paid(out: &Output, payer: &str) {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", out.stdout_text(), out.stderr_text());
    let receipt: Value = serde_json::from_str(&out.stdout_text()).unwrap();
    assert_eq!(receipt["status"], "accepted", "{receipt}");
    assert_eq!(receipt["payer"], payer, "{receipt}");
}

/// Refused by the service with `code` and a reason; returns the reason.
fn assert_refused(out: &Output, code: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(PAY_EXIT_REFUSED),
        "stdout: {}\nstderr: {}",
        out.stdout_text(),
        out.stderr_text()
    );
    let stdout = out.stdout_text();
    let reason = stdout
        .trim()
        .strip_prefix(&format!("refused: {code}: "))
        .unwrap_or_else(|| panic!("expected refusal {code}, got: {stdout}"));
    assert!(!reason.is_empty(), "{stdout}");
    reason.to_owned()
}

/// K could not sign on this machine: the request never left it (or its TLS handshake failed).
fn assert_k_unusable(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(PAY_EXIT_LOCAL),
        "stdout: {}\nstderr: {}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert!(out.stderr_text().contains("K cannot sign here"), "{}", out.stderr_text());
}

/// The broker's audit log holds a refused decision with `code` and a reason, about a
/// caller at `peer` (the address the payment service saw).
fn assert_audited(broker: &Broker, code: &str, peer: u8) {
    let audit = broker.audit();
    let peer = loopback(peer).to_string();
    let found = audit.iter().any(|r| {
        r["outcome"] == "refused"
            && r["code"] == code
            && r["peer"] == peer.as_str()
            && !r["reason"].as_str().unwrap_or_default().is_empty()
    });
    assert!(found, "no refused {code} record for {peer} in the audit log:\n{audit:#?}");
}

fn spiffe_id(vm: &ClientVm) -> String {
    vm.status_json()["spiffe_id"].as_str().unwrap().to_owned()
}

/// A configuration file for mooring-pay on `vm`'s TPM with other runtime and state directories
/// (what a thief who copied them there would point it at).
fn config_with_dirs(vm: &ClientVm, runtime: &Path, state: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(vm.config_path())
        .unwrap()
        .replace(
            &format!("{:?}", vm.runtime_dir().display().to_string()),
            &format!("{:?}", runtime.display().to_string()),
        )
        .replace(
            &format!("{:?}", vm.state_dir().display().to_string()),
            &format!("{:?}", state.display().to_string()),
        );
    let path = vm.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn s1_vm_a_attests_and_pays() {
    let Some(w) = world("e2e_s1_attest_and_pay") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    assert_eq!(w.a.status_json()["bound_address"], "127.0.0.2");
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);
    assert_paid(&pay(&w.a.config_path(), &w.payments, "mtls", &[]), &payer);
    let offline = Payments::start(&w.broker, &PaymentsSetup::new(Mode::Offline));
    assert_paid(&pay(&w.a.config_path(), &offline, "jwt", &[]), &payer);
    assert_paid(&pay(&w.a.config_path(), &offline, "mtls", &[]), &payer);
}

#[test]
fn s2_a_credential_directory_copied_to_vm_b_is_refused_for_every_use() {
    let Some(w) = world("e2e_s2_copied_directory") else { return };
    w.a.attest();
    w.b.attest(); // B's own, legitimate credentials and K
    let victim = spiffe_id(&w.a);
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &victim);

    // Everything A keeps, runtime (credentials, key file) and state (AK record, K's blobs),
    // copied onto B; mooring-pay there uses B's TPM and B's address.
    let stolen_run = w.b.run.path().join("stolen");
    let stolen_state = w.b.dir.path().join("stolen-state");
    copy_dir(&w.a.runtime_dir(), &stolen_run);
    copy_dir(&w.a.state_dir(), &stolen_state);
    let stolen = config_with_dirs(&w.b, &stolen_run, &stolen_state, "stolen.toml");
    let stolen_jwt = stolen_run.join("jwt-svid");
    let stolen_jwt = stolen_jwt.to_str().unwrap();
    let at_a = ["--source-address", "127.0.0.2"];

    // K's blobs only load in A's TPM: neither a possession proof nor the mutual-TLS
    // handshake can be signed on B, from any address.
    for source in [&[][..], &at_a[..]] {
        assert_k_unusable(&pay(&stolen, &w.payments, "jwt", source));
        let out = pay(&stolen, &w.payments, "mtls", source);
        assert_k_unusable(&out);
        assert!(out.stderr_text().contains("TLS handshake"), "{}", out.stderr_text());
    }

    // From B's address, whatever the proof: the credential is bound to A's address.
    let reason = assert_refused(&pay(&stolen, &w.payments, "bearer", &[]), "address_outside_binding");
    assert!(reason.contains("127.0.0.3"), "{reason}");
    let out = pay(&w.b.config_path(), &w.payments, "jwt", &["--jwt", stolen_jwt]);
    assert_refused(&out, "address_outside_binding");
    assert_audited(&w.broker, "address_outside_binding", B);

    // Even with A's address taken over: the token alone proves nothing, and a proof by B's
    // own K is not a proof for A's credential.
    assert_refused(&pay(&stolen, &w.payments, "bearer", &at_a), "no_proof_of_possession");
    assert_audited(&w.broker, "no_proof_of_possession", A);
    let out = pay(&w.b.config_path(), &w.payments, "jwt", &["--jwt", stolen_jwt, at_a[0], at_a[1]]);
    assert_refused(&out, "proof_invalid");
    assert_audited(&w.broker, "proof_invalid", A);

    // A itself is unaffected.
    assert_paid(&pay(&w.a.config_path(), &w.payments, "mtls", &[]), &victim);
}

#[test]
fn s3_a_jwt_svid_replayed_from_another_address_is_refused() {
    let Some(w) = world("e2e_s3_replay") else { return };
    w.a.attest();
    let victim = spiffe_id(&w.a);
    let saved = w.a.dir.path().join("request.json");
    let out = pay(&w.a.config_path(), &w.payments, "jwt", &["--save-request", saved.to_str().unwrap()]);
    assert_paid(&out, &victim);

    // The request as A sent it (JWT-SVID, possession proof, body), captured and replayed.
    let request: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let body = request["body"].as_str().unwrap().as_bytes().to_vec();
    let headers: Vec<(&str, String)> = request["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "content-type")
        .map(|(name, value)| (name.as_str(), value.as_str().unwrap().to_owned()))
        .collect();
    let replay = |source: u8| w.payments.pay(&w.payments.client(loopback(source), None), &body, &headers);

    let (status, answer) = replay(B);
    assert_eq!((status, answer["code"].as_str()), (403, Some("address_outside_binding")), "{answer}");
    assert!(answer["reason"].as_str().unwrap().contains("127.0.0.3"), "{answer}");
    assert_audited(&w.broker, "address_outside_binding", B);

    // From A's own address the proof has been used already: the broker has seen that
    // statement and refuses it (and records the refusal).
    let (status, answer) = replay(A);
    assert_eq!((status, answer["code"].as_str()), (403, Some("proof_replayed")), "{answer}");
    assert_audited(&w.broker, "proof_replayed", A);

    // A fresh, valid proof by A's K does not help either from another address.
    let out = pay(&w.a.config_path(), &w.payments, "jwt", &["--source-address", "127.0.0.3"]);
    assert_refused(&out, "address_outside_binding");
}

#[test]
fn s4_a_sealed_secret_copied_to_vm_b_does_not_unseal_on_bs_tpm() {
    let Some(w) = world("e2e_s4_sealed_blob") else { return };
    // A attests with the client library, keeping the sealed blob the broker sent.
    let config = Config::load(&w.a.config_path()).unwrap();
    let Evidence::Tpm(tpm_a) = config.evidence.clone() else { panic!("tpm config") };
    let api = BrokerApi::new(&config.broker_url, &config.broker_ca, config.source_address).unwrap();
    let mut attester = TpmAttester::new(tpm_a.clone(), &config.state_dir);
    let attested = attester.attest(&api).unwrap();
    let sealed = attested.issued.secrets.first().unwrap();
    assert_eq!(sealed.name, "payment-key");

    let unseal_with = |tcti: &str| {
        let mut context = open(tcti).unwrap();
        let ek = ek::recreate(&mut context, tpm_a.ek).unwrap();
        let result = unseal::unseal(&mut context, ek.handle, sealed);
        context.flush_context(ek.handle.into()).unwrap();
        result
    };
    assert_eq!(unseal_with(&w.a.tpm.tcti()).unwrap(), PAYMENT_SECRET);
    // The same blob on B's TPM: the import is wrapped to A's EK, so B's TPM cannot take it.
    let err = unseal_with(&w.b.tpm.tcti()).unwrap_err();
    assert!(err.to_string().contains("TPM2_Import"), "{err}");
}

#[test]
fn s5_after_a_pcr_change_renewal_is_refused_and_the_credential_dies_at_expiry() {
    let Some(w) = world("e2e_s5_pcr_change") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    let expires_at = w.a.status_json()["expires_at"].as_i64().unwrap();
    let offline = Payments::start(&w.broker, &PaymentsSetup::new(Mode::Offline));
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);

    let released = || std::fs::read_dir(w.a.runtime_dir().join("secrets")).unwrap().count();
    assert_eq!(released(), 1, "the class releases one secret");

    // Another kernel measured into PCR 0: the next attestation (renewal) is refused.
    w.a.extend_pcr(0);
    let out = w.a.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("pcr_value_not_allowed"), "{}", out.stderr_text());
    assert_audited(&w.broker, "pcr_value_not_allowed", A);
    // What the broker released for the admitted state is gone from the VM.
    assert_eq!(released(), 0, "released secrets outlived the refusal");

    // The credential already issued works until it expires (its TTL is 60 s) ...
    assert!(now() < expires_at, "expired before the renewal was tried");
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);
    // ... and not after.
    let wait = u64::try_from(expires_at + 1 - now()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(wait));
    let reason = assert_refused(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), "expired");
    assert!(reason.contains("expired"), "{reason}");
    assert_audited(&w.broker, "expired", A);
    assert_refused(&pay(&w.a.config_path(), &offline, "jwt", &[]), "expired");
    // Over mutual TLS the expired X.509-SVID does not get through the handshake.
    let out = pay(&w.a.config_path(), &w.payments, "mtls", &[]);
    assert_eq!(out.status.code(), Some(4), "stdout: {}\nstderr: {}", out.stdout_text(), out.stderr_text());
}

#[test]
fn s6_a_revoked_vm_is_refused_at_once_online_and_after_the_next_fetch_offline() {
    let Some(w) = world("e2e_s6_revoked") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    let offline = Payments::start(
        &w.broker,
        &PaymentsSetup {
            revocations_seconds: 1,
            max_revocation_age_seconds: 30,
            ..PaymentsSetup::new(Mode::Offline)
        },
    );
    for mode in ["jwt", "mtls"] {
        assert_paid(&pay(&w.a.config_path(), &w.payments, mode, &[]), &payer);
        assert_paid(&pay(&w.a.config_path(), &offline, mode, &[]), &payer);
    }

    let revoke = json!({"target": {"kind": "vm", "id": payer}, "reason": "image leaked"});
    w.broker.admin_post("admin/revocations", &revoke);

    // The verify API knows at once.
    for mode in ["jwt", "mtls"] {
        let reason = assert_refused(&pay(&w.a.config_path(), &w.payments, mode, &[]), "revoked");
        assert!(reason.contains("image leaked"), "{reason}");
    }
    assert_audited(&w.broker, "revoked", A);

    // Offline: once its next revocation-list fetch (every second) has seen it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        let out = pay(&w.a.config_path(), &offline, "jwt", &[]);
        if out.status.code() != Some(0) || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_refused(&out, "revoked");
    assert_refused(&pay(&w.a.config_path(), &offline, "mtls", &[]), "revoked");
}

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

#[test]
fn s8_a_clean_shutdown_retires_the_credentials_and_relying_services_refuse_them_at_once() {
    let Some(w) = world("e2e_s8_retire") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    let offline = Payments::start(
        &w.broker,
        &PaymentsSetup {
            revocations_seconds: 20,
            max_revocation_age_seconds: 60,
            ..PaymentsSetup::new(Mode::Offline)
        },
    );
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);
    assert_paid(&pay(&w.a.config_path(), &offline, "jwt", &[]), &payer);

    // What a copy of the runtime directory keeps after the VM is gone.
    let kept = tempfile::tempdir().unwrap();
    copy_dir(&w.a.runtime_dir(), kept.path());

    // `systemctl stop`: the unit's ExecStop retires the credential, within its deadline.
    let started = Instant::now();
    let out = w.a.client(&["retire"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr_text());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(!w.a.runtime_dir().join("status.json").exists(), "the runtime directory was not cleared");
    assert!(w.broker.audit().iter().any(|r| r["code"] == "retired" && r["action"] == "retire"));

    // The kept copy is refused at once online, and offline as soon as the long poll answers
    // (no refresh interval to wait for: it is 20 s here).
    copy_dir(kept.path(), &w.a.runtime_dir());
    assert_refused(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), "retired");
    refused_offline_within_2_s(&w.a.config_path(), &offline, "jwt", "retired");

    // A broker that cannot be reached does not hold the shutdown up beyond the deadline.
    let mut gone = w.broker;
    gone.kill_9();
    let started = Instant::now();
    let out = w.a.client(&["retire"]);
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr_text());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn s9_after_a_reboot_the_earlier_boots_credentials_are_refused_online_and_offline() {
    let Some(mut w) = world("e2e_s9_reboot") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    let offline = Payments::start(
        &w.broker,
        &PaymentsSetup {
            revocations_seconds: 20,
            max_revocation_age_seconds: 60,
            ..PaymentsSetup::new(Mode::Offline)
        },
    );
    assert_paid(&pay(&w.a.config_path(), &offline, "jwt", &[]), &payer);
    // What the VM held before the reboot, kept somewhere.
    let earlier = tempfile::tempdir().unwrap();
    copy_dir(&w.a.runtime_dir(), earlier.path());

    // A reboot (the TPM is reset: resetCount moves on) and a new attestation.
    w.a.tpm.restart().unwrap();
    w.a.attest();
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);
    assert!(w.broker.audit().iter().any(|r| r["code"] == "superseded_by_reboot"));

    // The earlier boot's credentials: refused at once online, and offline within 2 s.
    copy_dir(earlier.path(), &w.a.runtime_dir());
    for mode in ["jwt", "mtls"] {
        assert_refused(&pay(&w.a.config_path(), &w.payments, mode, &[]), "superseded_by_reboot");
    }
    for mode in ["jwt", "mtls"] {
        refused_offline_within_2_s(&w.a.config_path(), &offline, mode, "superseded_by_reboot");
    }
}

#[test]
fn s10_a_cloned_vtpm_attesting_from_a_second_address_is_refused_and_both_copies_lose_their_credentials() {
    let Some(w) = world("e2e_s10_clone") else { return };
    w.a.attest();
    let payer = spiffe_id(&w.a);
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);

    // The hypervisor copies A's vTPM state and disk; the copy starts from B's address (its
    // start is a reset of the copied TPM, so it looks like A rebooted) while A runs on.
    let clone = w.a.clone_to(loopback(B));
    clone.write_config(&w.broker);
    clone.attest();
    assert_eq!(spiffe_id(&clone), payer, "one TPM, one identity");

    // A attests again from the boot it never left: an earlier boot than one seen since.
    let out = w.a.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("clone_suspected"), "{}", out.stderr_text());
    assert_audited(&w.broker, "clone_suspected", A);

    // Both copies lose their credentials, and the TPM stays blocked until an administrator acts.
    assert_refused(&pay(&clone.config_path(), &w.payments, "jwt", &[]), "clone_suspected");
    assert_refused(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), "superseded_by_reboot");
    let out = clone.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("vm_blocked"), "{}", out.stderr_text());
    let metrics = w
        .broker
        .client(loopback(A))
        .get(format!("https://localhost:{}/metrics", w.broker.address.port()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("code=\"clone_suspected\""), "{metrics}");
}

#[test]
fn s11_a_stale_vtpm_clone_attesting_from_a_second_address_gets_clone_suspected() {
    let Some(mut w) = world("e2e_s11_stale_clone") else { return };
    w.a.attest();
    // A snapshot of A's vTPM and disk, kept aside while A goes on (and reboots twice).
    let clone = w.a.clone_to(loopback(B));
    clone.write_config(&w.broker);
    w.a.tpm.restart().unwrap();
    w.a.tpm.restart().unwrap();
    w.a.attest();
    let payer = spiffe_id(&w.a);
    assert_paid(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), &payer);

    // The snapshot, restored elsewhere, attests from B's address: its TPM is in an earlier
    // boot than the one A attested from.
    let out = clone.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("clone_suspected"), "{}", out.stderr_text());
    assert_audited(&w.broker, "clone_suspected", B);

    // Both copies are out: A's credentials are revoked and its TPM is blocked.
    assert_refused(&pay(&w.a.config_path(), &w.payments, "jwt", &[]), "clone_suspected");
    let out = w.a.client(&["attest"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("vm_blocked"), "{}", out.stderr_text());
}

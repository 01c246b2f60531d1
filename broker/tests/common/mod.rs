//! Shared by the broker's integration tests: the broker process harness lives in
//! `mooring-tests`; the VM simulated with tpm2-tools on a real swtpm is here.
#![allow(dead_code, unused_imports, unreachable_pub)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

pub mod vm;

pub use mooring_tests::broker::{assert_refused, loopback, read, Broker, BrokerSetup};
use serde_json::{json, Value};

/// Challenge id to the serials of the credentials a client received for it.
pub type Accepted = std::collections::BTreeMap<String, Vec<String>>;

/// Notes that the finish of `challenge_id` was answered with the credentials in `body`.
pub fn accept(accepted: &mut Accepted, challenge_id: &str, body: &serde_json::Value) {
    let serial = body["x509_serial"].as_str().unwrap().to_owned();
    accepted.entry(challenge_id.to_owned()).or_default().push(serial);
}

/// After a crash: every finish sent again to `broker` (one it does not accept must answer
/// `refused_as`), then no challenge was accepted twice in all, and every credential a
/// client received has its `issued` audit record.
pub fn replay_all_accepting_each_once_and_audited(
    broker: &Broker,
    requests: &[mooring_attestation::protocol::TpmFinishRequest],
    accepted: &mut Accepted,
    refused_as: &str,
) {
    let client = broker.client(loopback(1));
    for request in requests {
        let (status, body) = broker.post(&client, "tpm/finish", request);
        match status {
            200 => accept(accepted, &request.challenge_id, &body),
            _ => assert_eq!(body["code"], refused_as, "{status}: {body}"),
        }
    }
    for (challenge, serials) in accepted.iter() {
        assert_eq!(serials.len(), 1, "challenge {challenge} accepted {} times", serials.len());
    }
    let audit = broker.audit();
    let audited: std::collections::BTreeSet<&str> =
        audit.iter().filter(|r| r["code"] == "issued").filter_map(|r| r["serial"].as_str()).collect();
    for serials in accepted.values() {
        assert!(audited.contains(serials[0].as_str()), "credential {} has no audit record", serials[0]);
    }
}

pub fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Asks `broker`'s verify API about a JWT-SVID presented with a fresh possession proof.
pub fn verify_jwt(broker: &Broker, vm: &vm::Vm, token: &str) -> Value {
    let (statement, signature) = vm.prove_possession("payments", now());
    let (status, answer) = broker.post(
        &broker.client(loopback(1)),
        "credentials/verify",
        &json!({
            "credential": {"type": "jwt", "token": token},
            "peer_address": loopback(1),
            "audience": "payments",
            "proof": {"type": "signature", "statement": b64(&statement), "signature": b64(&signature)},
        }),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

/// `mooring-broker audit verify --config` against the shared database (replicas running).
pub fn audit_verify_cli(broker: &Broker) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mooring-broker"))
        .args(["audit", "verify", "--config"])
        .arg(broker.config_path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), text)
}

/// A broker that admits `vm` (its EK issuer, PCR 7 all zeros) into class `web`, whose
/// credentials name the audience `payments`, with `extra_config` in its configuration.
pub fn admitting(vm: &vm::Vm, extra_config: String) -> BrokerSetup {
    let issuer = mooring_attestation::x509::bundle::parse_one_certificate(&vm.ek_certificate())
        .unwrap()
        .issuer()
        .to_owned();
    BrokerSetup {
        policy: format!(
            "version = 1\n[[class]]\nname = \"web\"\nevidence = \"tpm\"\nttl_seconds = 600\n\
             audiences = [\"payments\"]\nnetworks = [\"127.0.0.0/8\"]\n\
             [class.match]\nek_issuers = [{issuer:?}]\n[class.tpm]\npcr_bank = \"sha256\"\npcrs = [7]\n\
             [class.tpm.pcr_values]\n7 = [\"{}\"]\n",
            "00".repeat(32)
        ),
        ek_roots: vm.tpm.ek_cert_ca_files().all().iter().map(|p| p.to_path_buf()).collect(),
        extra_config,
        secrets: Vec::new(),
    }
}

/// `begin` and `finish` of `vm` on `broker`: its credentials.
pub fn attest(broker: &Broker, vm: &vm::Vm) -> mooring_attestation::protocol::IssuedCredentials {
    let client = broker.client(loopback(1));
    let (status, body) = broker.post(&client, "tpm/begin", &vm.begin_request());
    assert_eq!(status, 200, "{body}");
    let challenge: mooring_attestation::protocol::TpmChallenge = serde_json::from_value(body).unwrap();
    let (status, body) = broker.post(&client, "tpm/finish", &vm.finish_request(&challenge));
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

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

//! The example payment service in front of the real broker: a confidential VM (SEV-SNP
//! path, test signer) attests from 127.0.0.2 and pays with its JWT-SVID and a proof of
//! possession of K, or with its X.509-SVID over mutual TLS; the same credential from
//! another address, without the proof, or after revocation is refused with the broker's
//! reason code. Both modes: per-request broker verify API, and offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use mooring_attestation::protocol::IssuedCredentials;
use mooring_attestation::snp::sim::TestSigner;
use mooring_attestation::svid::{request_digest, POSSESSION_HEADER};
use mooring_tests::broker::{loopback, Broker};
use mooring_tests::cvm::{now, snp_broker_setup, Cvm, MEASUREMENT};
use mooring_tests::payments::{Mode, Payments, PaymentsSetup};
use serde_json::{json, Value};

/// The VM's own address; the thief's.
const VM: u8 = 2;
const ELSEWHERE: u8 = 3;

fn policy(vm: &Cvm) -> String {
    format!(
        "version = 1\n\
         [[class]]\nname = \"cvm\"\nevidence = \"snp\"\nttl_seconds = 600\naudiences = [\"payments\"]\n\
         networks = [\"127.0.0.2/32\", \"127.0.0.3/32\"]\n\
         [class.snp]\nmeasurements = [\"{}\"]\n\
         min_tcb = {{ bootloader = 0, tee = 0, snp = {}, microcode = 0 }}\n\
         allow_debug = false\nmax_vmpl = 0\n",
        hex::encode(MEASUREMENT),
        vm.signer.tcb().snp
    )
}

/// A broker trusting the VM's platform, and the VM's credentials from 127.0.0.2.
fn attested() -> (Cvm, Broker, IssuedCredentials) {
    let vm = Cvm::new(TestSigner::generate());
    let broker = Broker::start(&snp_broker_setup(&vm.signer, policy(&vm)));
    let issued = vm.attest(&broker, VM);
    assert_eq!(issued.bound_address, loopback(VM));
    (vm, broker, issued)
}

fn payment(reference: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"amount_cents": 1250, "currency": "EUR", "reference": reference})).unwrap()
}

/// The headers of a JWT-SVID payment with a fresh proof for `body`.
fn jwt_headers(vm: &Cvm, issued: &IssuedCredentials, body: &[u8]) -> Vec<(&'static str, String)> {
    let proof = vm.possession_header("payments", &request_digest("POST", "/pay", body), now());
    vec![("authorization", format!("Bearer {}", issued.jwt_svid)), (POSSESSION_HEADER, proof)]
}

fn assert_refused(answer: &(u16, Value), code: &str) {
    assert_eq!(answer.0, 403, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
    assert!(!answer.1["reason"].as_str().unwrap_or_default().is_empty(), "{}", answer.1);
}

fn assert_paid(answer: &(u16, Value), issued: &IssuedCredentials) {
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["status"], "accepted", "{}", answer.1);
    assert_eq!(answer.1["payer"], issued.spiffe_id.as_str(), "{}", answer.1);
}

#[test]
fn a_jwt_svid_with_its_proof_pays_only_from_its_address() {
    let (vm, broker, issued) = attested();
    for mode in [Mode::Broker, Mode::Offline] {
        let payments = Payments::start(&broker, &PaymentsSetup::new(mode));
        let at_home = payments.client(loopback(VM), None);
        let elsewhere = payments.client(loopback(ELSEWHERE), None);

        let body = payment(&format!("{mode:?}-1"));
        let headers = jwt_headers(&vm, &issued, &body);
        assert_paid(&payments.pay(&at_home, &body, &headers), &issued);

        // The same proof again (a replay by whoever saw the request): refused, by the broker
        // (on any of its replicas) or by the service's own memory offline.
        assert_refused(&payments.pay(&at_home, &body, &headers), "proof_replayed");

        // The whole credential and a valid fresh proof, but from another address.
        let body = payment(&format!("{mode:?}-2"));
        let answer = payments.pay(&elsewhere, &body, &jwt_headers(&vm, &issued, &body));
        assert_refused(&answer, "address_outside_binding");
        assert!(answer.1["reason"].as_str().unwrap().contains("127.0.0.3"), "{}", answer.1);

        // The token alone (copied from the VM's disk): no proof of possession.
        let bearer_only = [("authorization", format!("Bearer {}", issued.jwt_svid))];
        assert_refused(&payments.pay(&at_home, &body, &bearer_only), "no_proof_of_possession");

        // A proof made for another request body (the amount changed in flight).
        let mut headers = jwt_headers(&vm, &issued, &body);
        let tampered = payment(&format!("{mode:?}-3"));
        assert_refused(&payments.pay(&at_home, &tampered, &headers), "proof_invalid");

        // A proof by another key (the thief's own VM) for this very request.
        let thief = Cvm::new(TestSigner::generate());
        headers[1].1 = thief.possession_header("payments", &request_digest("POST", "/pay", &body), now());
        assert_refused(&payments.pay(&at_home, &body, &headers), "proof_invalid");

        // No credential at all.
        let answer = payments.pay(&at_home, &body, &[]);
        assert_eq!(answer.0, 401, "{}", answer.1);
        assert_eq!(answer.1["code"], "no_credential", "{}", answer.1);
    }
    // In broker mode each refusal the broker made is in its audit log with its reason.
    let audit = broker.audit();
    for code in ["address_outside_binding", "no_proof_of_possession", "proof_invalid"] {
        assert!(
            audit
                .iter()
                .any(|r| r["code"] == code && r["outcome"] == "refused" && r["reason"].as_str().is_some()),
            "{code} not audited"
        );
    }
}

#[test]
fn the_x509_svid_over_mutual_tls_pays_only_from_its_address() {
    let (vm, broker, issued) = attested();
    for mode in [Mode::Broker, Mode::Offline] {
        let payments = Payments::start(&broker, &PaymentsSetup::new(mode));
        let body = payment(&format!("mtls-{mode:?}"));

        let at_home = payments.client(loopback(VM), Some(vm.tls_identity(&issued.x509_svid)));
        assert_paid(&payments.pay(&at_home, &body, &[]), &issued);

        let elsewhere = payments.client(loopback(ELSEWHERE), Some(vm.tls_identity(&issued.x509_svid)));
        assert_refused(&payments.pay(&elsewhere, &body, &[]), "address_outside_binding");
    }
    // A client certificate from a CA outside the trust bundle does not get through TLS.
    let stranger = Cvm::new(TestSigner::generate());
    let other_broker = Broker::start(&snp_broker_setup(&stranger.signer, policy(&stranger)));
    let foreign = stranger.attest(&other_broker, VM);
    let payments = Payments::start(&broker, &PaymentsSetup::new(Mode::Offline));
    let client = payments.client(loopback(VM), Some(stranger.tls_identity(&foreign.x509_svid)));
    let sent = client
        .post(format!("https://localhost:{}/pay", payments.address.port()))
        .body(payment("foreign"))
        .send();
    assert!(sent.is_err(), "a foreign client certificate must fail the handshake: {sent:?}");
}

#[test]
fn a_revoked_credential_is_refused_at_once_by_the_broker_and_after_the_next_fetch_offline() {
    let (vm, broker, issued) = attested();
    let online = Payments::start(&broker, &PaymentsSetup::new(Mode::Broker));
    let offline = Payments::start(
        &broker,
        &PaymentsSetup {
            revocations_seconds: 1,
            max_revocation_age_seconds: 30,
            ..PaymentsSetup::new(Mode::Offline)
        },
    );
    let pay = |payments: &Payments, reference: &str| {
        let body = payment(reference);
        payments.pay(&payments.client(loopback(VM), None), &body, &jwt_headers(&vm, &issued, &body))
    };
    assert_paid(&pay(&online, "before-online"), &issued);
    assert_paid(&pay(&offline, "before-offline"), &issued);

    let revoke =
        json!({"target": {"kind": "credential", "id": issued.x509_serial}, "reason": "image leaked"});
    broker.admin_post("admin/revocations", &revoke);

    // The broker knows at once.
    let answer = pay(&online, "after-online");
    assert_refused(&answer, "revoked");
    assert!(answer.1["reason"].as_str().unwrap().contains("image leaked"), "{}", answer.1);

    // The offline service refuses once its next revocation fetch (every second) saw it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    let answer = loop {
        attempt += 1;
        let answer = pay(&offline, &format!("after-offline-{attempt}"));
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_refused(&answer, "revoked");
    assert!(answer.1["reason"].as_str().unwrap().contains("image leaked"), "{}", answer.1);

    // The mutual TLS path is refused the same way.
    let client = offline.client(loopback(VM), Some(vm.tls_identity(&issued.x509_svid)));
    assert_refused(&offline.pay(&client, &payment("mtls-after"), &[]), "revoked");
    let audit = broker.audit();
    assert!(
        audit.iter().any(|r| r["code"] == "revoked" && r["outcome"] == "refused"),
        "revocation refusal not audited"
    );
}

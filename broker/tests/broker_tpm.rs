//! The broker over HTTPS with VMs simulated on real swtpm instances: attestation,
//! credentials, sealed secrets, and every refusal of the TPM threat table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::vm::Vm;
use common::{assert_refused, attest, begin, loopback, now, Broker, BrokerSetup};
use mooring_attestation::protocol::TpmChallenge;
use mooring_attestation::x509::bundle::parse_one_certificate;
use mooring_tests::client::tpm_policy_with_ttl;
use mooring_tests::{measured_boot, SwtpmOptions};
use serde_json::json;

/// The harness's TPM policy with a 600 s TTL, admitting EKs from this VM's manufacturer CA,
/// from 127.0.0.1 and .2.
fn policy(vm: &Vm) -> String {
    let issuer = parse_one_certificate(&vm.ek_certificate()).unwrap().issuer().to_owned();
    tpm_policy_with_ttl(&[issuer], &["127.0.0.1/32", "127.0.0.2/32"], 600)
}

fn broker_for(vm: &Vm, extra_config: &str) -> Broker {
    Broker::start(&BrokerSetup {
        policy: policy(vm),
        ek_roots: vm.tpm.ek_cert_ca_files().all().iter().map(|p| p.to_path_buf()).collect(),
        extra_config: extra_config.into(),
        secrets: vec![("payment.key".into(), b"pay-4242-secret".to_vec())],
    })
}

#[test]
fn a_vm_attests_and_gets_bound_credentials_and_a_sealed_secret() {
    let Some(vm) = Vm::start("broker_attest", SwtpmOptions::default()) else { return };
    let broker = broker_for(&vm, "");
    let issued = attest(&broker, &vm, 1);

    assert!(issued.spiffe_id.starts_with("spiffe://test.mooring/vm/web/"), "{}", issued.spiffe_id);
    assert_eq!(issued.bound_address, loopback(1));
    assert!(issued.x509_svid.matches("BEGIN CERTIFICATE").count() == 2);
    let leaf =
        mooring_attestation::x509::bundle::parse_certificates(issued.x509_svid.as_bytes()).unwrap().remove(0);
    assert!(!leaf.is_ca());
    assert_eq!(issued.renew_after - (issued.expires_at - 600), 300);

    // The secret opens in this TPM, in this boot state.
    assert_eq!(vm.unseal(&issued).unwrap(), b"pay-4242-secret");

    // A relying service checks the JWT-SVID presented from the bound address with a
    // proof signed by K inside the TPM.
    let (statement, signature) = vm.prove_possession("payments", now());
    let verify = |peer: u8, proof: serde_json::Value| {
        broker.post(
            &broker.client(loopback(1)),
            "credentials/verify",
            &json!({
                "credential": {"type": "jwt", "token": issued.jwt_svid},
                "peer_address": loopback(peer),
                "audience": "payments",
                "proof": proof,
            }),
        )
    };
    let signed = json!({"type": "signature", "statement": b64(&statement), "signature": b64(&signature)});
    let (status, answer) = verify(1, signed.clone());
    assert_eq!(status, 200);
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["claims"]["spiffe_id"], issued.spiffe_id.as_str());

    // The same token and proof from another address, or without a proof, are refused.
    let (_, answer) = verify(2, signed);
    assert_eq!(answer["code"], "address_outside_binding", "{answer}");
    let (_, answer) = verify(1, serde_json::Value::Null);
    assert_eq!(answer["code"], "no_proof_of_possession", "{answer}");

    // The X.509-SVID with mutual TLS at the relying service, for an audience of its class
    // only (an X.509-SVID names none; its class does).
    let x509 = |audience: serde_json::Value| {
        broker
            .post(
                &broker.client(loopback(1)),
                "credentials/verify",
                &json!({"credential": {"type": "x509", "chain": issued.x509_svid}, "peer_address": loopback(1),
                        "audience": audience, "proof": {"type": "mutual_tls"}}),
            )
            .1
    };
    let answer = x509(json!("payments"));
    assert_eq!(answer["valid"], true, "{answer}");
    for other in [json!("billing"), serde_json::Value::Null] {
        let answer = x509(other);
        assert_eq!(answer["code"], "wrong_audience", "{answer}");
    }

    let audit = broker.audit();
    assert!(audit.iter().any(|r| r["code"] == "issued" && r["serial"] == issued.x509_serial.as_str()));
    assert!(audit.iter().any(|r| r["code"] == "address_outside_binding"));
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn finish(broker: &Broker, source: u8, request: &impl serde::Serialize) -> (u16, serde_json::Value) {
    broker.post(&broker.client(loopback(source)), "tpm/finish", request)
}

fn audited(broker: &Broker, code: &str) -> bool {
    broker.refusal_recorded(code)
}

#[test]
fn each_tpm_threat_is_refused_with_its_code_and_audited() {
    let Some(vm) = Vm::start("broker_refusals", SwtpmOptions::default()) else { return };
    let broker = broker_for(&vm, "");

    // Replayed finish: the second use of a challenge.
    let challenge = begin(&broker, &vm, 1);
    let request = vm.finish_request(&challenge);
    assert_eq!(finish(&broker, 1, &request).0, 200);
    assert_refused(&finish(&broker, 1, &request), 409, "challenge_used");

    // Unbound AK: the activation secret is wrong.
    let challenge = begin(&broker, &vm, 1);
    let mut request = vm.finish_request(&challenge);
    request.activated_secret[0] ^= 1;
    assert_refused(&finish(&broker, 1, &request), 403, "activation_failed");

    // Wrong nonce: a quote over another challenge's qualifying data.
    let challenge = begin(&broker, &vm, 1);
    let other = begin(&broker, &vm, 1);
    let mut request = vm.finish_request(&challenge);
    let stale = vm.finish_request(&other);
    request.quote = stale.quote;
    request.quote_signature = stale.quote_signature;
    assert_refused(&finish(&broker, 1, &request), 403, "nonce_mismatch");

    // An event log that does not replay to the quoted PCRs.
    let challenge = begin(&broker, &vm, 1);
    let mut request = vm.finish_request(&challenge);
    request.event_log =
        Some(mooring_testdata::testdata("tpm/eventlogs/go-tpm-tools/ubuntu-2404-amd-sevsnp.bin"));
    assert_refused(&finish(&broker, 1, &request), 403, "event_log_mismatch");

    // An address outside the class's networks, at begin.
    let answer = broker.post(&broker.client(loopback(9)), "tpm/begin", &vm.begin_request());
    assert_refused(&answer, 403, "address_not_allowed");

    // Oversized and malformed input.
    let huge = json!({ "challenge_id": "x".repeat(300 * 1024) });
    assert_refused(&finish(&broker, 1, &huge), 413, "body_too_large");
    let bad_base64 = json!({"ek_public": "not base64!", "ak_public": "", "key_public": ""});
    assert_refused(
        &broker.post(&broker.client(loopback(1)), "tpm/begin", &bad_base64),
        400,
        "malformed_request",
    );
    let response =
        broker.client(loopback(1)).post(broker.url("tpm/begin")).body("{\"ek_public\":").send().unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.json::<serde_json::Value>().unwrap()["code"], "malformed_request");

    for code in [
        "challenge_used",
        "activation_failed",
        "nonce_mismatch",
        "event_log_mismatch",
        "address_not_allowed",
        "body_too_large",
        "malformed_request",
    ] {
        assert!(audited(&broker, code), "no audit record for {code}");
    }
    // One record per refusal only once the TPM proved itself (the activated secret); what
    // anyone can send (a public EK certificate at begin, a wrong activation) is only counted.
    let audit = broker.audit();
    let one_by_one = |code: &str| audit.iter().any(|r| r["code"] == code && r["outcome"] == "refused");
    for code in ["nonce_mismatch", "event_log_mismatch"] {
        assert!(one_by_one(code), "{code} not recorded one by one");
    }
    for code in ["activation_failed", "address_not_allowed"] {
        assert!(!one_by_one(code), "{code} recorded one by one before the TPM proved itself");
    }
    // Refusals stored nothing but their audit records: only the first attestation issued.
    let vms: Vec<serde_json::Value> =
        broker.admin().get(broker.url("admin/vms")).send().unwrap().json().unwrap();
    assert_eq!(vms.len(), 1);
    let verified = broker.audit_verify();
    assert_eq!(verified["valid"], true, "{verified}");
}

#[test]
fn a_changed_pcr_refuses_renewal_and_the_sealed_secret_stays_shut() {
    let Some(vm) = Vm::start("broker_pcr_change", SwtpmOptions::default()) else { return };
    let Some(other) = Vm::start("broker_pcr_change_other", SwtpmOptions::default()) else { return };
    let broker = broker_for(&vm, "");
    let issued = attest(&broker, &vm, 1);

    // Another TPM cannot import the blob sealed to this VM's EK.
    let err = other.unseal(&issued).unwrap_err();
    assert!(err.contains("tpm2_import"), "{err}");

    // A different kernel: PCR 7 changes. Renewal is refused and the secret stays shut.
    vm.extend(7);
    let challenge = begin(&broker, &vm, 1);
    assert_refused(&finish(&broker, 1, &vm.finish_request(&challenge)), 403, "pcr_value_not_allowed");
    let err = vm.unseal(&issued).unwrap_err();
    assert!(err.contains("tpm2_unseal"), "{err}");
    assert!(audited(&broker, "pcr_value_not_allowed"));
}

#[test]
fn an_expired_challenge_is_refused() {
    let Some(vm) = Vm::start("broker_expiry", SwtpmOptions::default()) else { return };
    let broker = broker_for(&vm, "[challenge]\nttl_seconds = 1");
    let challenge = begin(&broker, &vm, 1);
    let request = vm.finish_request(&challenge);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_refused(&finish(&broker, 1, &request), 409, "challenge_expired");
    assert!(audited(&broker, "challenge_expired"));
}

#[test]
fn an_ek_from_an_untrusted_manufacturer_is_refused() {
    let Some(trusted) = Vm::start("broker_ek_trusted", SwtpmOptions::default()) else { return };
    let Some(foreign) = Vm::start("broker_ek_foreign", SwtpmOptions::default().with_private_ca()) else {
        return;
    };
    let broker = broker_for(&trusted, "");
    let answer = broker.post(&broker.client(loopback(1)), "tpm/begin", &foreign.begin_request());
    assert_refused(&answer, 403, "ek_untrusted");
    // Its certificate with the trusted VM's EK public area does not fit either.
    let mut request = trusted.begin_request();
    request.ek_public = foreign.begin_request().ek_public;
    let answer = broker.post(&broker.client(loopback(1)), "tpm/begin", &request);
    assert_refused(&answer, 403, "ek_mismatch");
    assert!(audited(&broker, "ek_untrusted"));
}

#[test]
fn evidence_checks_at_begin_and_finish_refuse_with_their_codes() {
    let Some(vm) = Vm::start("broker_evidence_checks", SwtpmOptions::default()) else { return };
    let broker = broker_for(&vm, "");
    let client = broker.client(loopback(1));

    // A non-restricted key offered as the AK; a decryption key offered as K.
    let mut request = vm.begin_request();
    request.ak_public = request.key_public.clone();
    assert_refused(&broker.post(&client, "tpm/begin", &request), 403, "ak_invalid");
    let mut request = vm.begin_request();
    request.key_public = request.ek_public.clone();
    assert_refused(&broker.post(&client, "tpm/begin", &request), 403, "key_invalid");

    // A quote over fewer PCRs than the class selects.
    let challenge = begin(&broker, &vm, 1);
    let mut request = vm.finish_request(&challenge);
    let qualifying =
        mooring_attestation::protocol::tpm_qualifying_data(&challenge.nonce, &vm.begin_request().key_public);
    let fewer = std::collections::BTreeMap::from([("sha256".to_owned(), vec![0u8, 7])]);
    (request.quote, request.quote_signature, request.pcrs) = vm.quote(&fewer, &qualifying);
    assert_refused(&finish(&broker, 1, &request), 403, "pcr_selection_mismatch");

    // The quote presented as the certification of K.
    let challenge = begin(&broker, &vm, 1);
    let mut request = vm.finish_request(&challenge);
    request.certify = request.quote.clone();
    request.certify_signature = request.quote_signature.clone();
    assert_refused(&finish(&broker, 1, &request), 403, "certify_invalid");
}

#[test]
fn the_verify_api_names_each_reason_a_credential_is_no_good() {
    let Some(vm) = Vm::start("broker_verify_reasons", SwtpmOptions::default()) else { return };
    let broker = broker_for(&vm, "");
    let issued = attest(&broker, &vm, 1);
    let ask = |audience: &str, proof: serde_json::Value| {
        let (status, answer) = broker.post(
            &broker.client(loopback(1)),
            "credentials/verify",
            &json!({
                "credential": {"type": "jwt", "token": issued.jwt_svid},
                "peer_address": loopback(1),
                "audience": audience,
                "proof": proof,
            }),
        );
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let signed = |statement: &[u8], signature: &[u8]| json!({"type": "signature", "statement": b64(statement), "signature": b64(signature)});
    let (statement, signature) = vm.prove_possession("payments", now());
    let fresh = || {
        let (statement, signature) = vm.prove_possession("payments", now());
        signed(&statement, &signature)
    };
    assert_eq!(ask("payments", signed(&statement, &signature))["valid"], true);

    // The same statement again (a replay, whatever the caller): refused, while a new one
    // for the next request passes.
    assert_eq!(ask("payments", signed(&statement, &signature))["code"], "proof_replayed");
    assert_eq!(ask("payments", fresh())["valid"], true);

    // Bound to one request: the broker checks the statement was made for it.
    let for_request = |request: &str, statement: &[u8], signature: &[u8]| {
        broker
            .post(
                &broker.client(loopback(1)),
                "credentials/verify",
                &json!({"credential": {"type": "jwt", "token": issued.jwt_svid}, "peer_address": loopback(1),
                        "audience": "payments", "request": request, "proof": signed(statement, signature)}),
            )
            .1
    };
    let (bound, bound_sig) = vm.prove_possession("payments", now());
    let made_for: serde_json::Value = serde_json::from_slice(&bound).unwrap();
    let answer = for_request("a-digest-of-another-request", &bound, &bound_sig);
    assert_eq!(answer["code"], "proof_invalid", "{answer}");
    assert!(answer["reason"].as_str().unwrap().contains("another request"), "{answer}");
    let answer = for_request(made_for["request"].as_str().unwrap(), &bound, &bound_sig);
    assert_eq!(answer["valid"], true, "{answer}");

    // Another audience; a proof made for another audience, long ago, or altered after
    // signing; mutual TLS claimed for a bearer token.
    assert_eq!(ask("billing", fresh())["code"], "wrong_audience");
    let (other, other_sig) = vm.prove_possession("billing", now());
    assert_eq!(ask("payments", signed(&other, &other_sig))["code"], "proof_invalid");
    let (stale, stale_sig) = vm.prove_possession("payments", now() - 3600);
    assert_eq!(ask("payments", signed(&stale, &stale_sig))["code"], "proof_invalid");
    let mut altered = statement.clone();
    altered[10] ^= 1;
    assert_eq!(ask("payments", signed(&altered, &signature))["code"], "proof_invalid");
    assert_eq!(ask("payments", json!({"type": "mutual_tls"}))["code"], "no_proof_of_possession");

    // The hardware blocked, then (unblocked) the credential revoked: refused at once.
    let hardware_id = ask("payments", fresh())["claims"]["hardware_id"].clone();
    let change = |status: &str| {
        broker.admin_post(
            "admin/identities",
            &json!({"identity": {"kind": "ek", "id": hardware_id}, "status": status}),
        );
    };
    change("blocked");
    assert_eq!(ask("payments", fresh())["code"], "vm_blocked");
    change("enrolled");
    assert_eq!(ask("payments", fresh())["valid"], true);
    // Revoking nothing (a mistyped serial or SPIFFE ID) is not answered as if it worked.
    for target in [
        json!({"kind": "credential", "id": "ab".repeat(16)}),
        json!({"kind": "vm", "id": "spiffe://x/vm/none"}),
    ] {
        let answer =
            broker.post(&broker.admin(), "admin/revocations", &json!({"target": target, "reason": "typo"}));
        assert_refused(&answer, 404, "not_found");
    }
    // An offline verifier waiting on the list (long poll) hears of the revocation at once.
    let list = |query: &str| -> serde_json::Value {
        broker
            .client(loopback(1))
            .get(broker.url(&format!("revocations{query}")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let before = list("");
    let version = before["version"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let waiting = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| list(&format!("?version={version}&wait=20")));
        std::thread::sleep(std::time::Duration::from_millis(500));
        broker.admin_post(
            "admin/revocations",
            &json!({"target": {"kind": "credential", "id": issued.x509_serial}, "reason": "key compromise drill"}),
        );
        waiter.join().unwrap()
    });
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    assert_ne!(waiting["version"], before["version"]);
    assert_eq!(waiting["revocations"][0]["target"]["id"], issued.x509_serial.as_str());
    // Nothing changes: the wait runs out and the same version comes back.
    let started = std::time::Instant::now();
    let unchanged = list(&format!("?version={}&wait=1", waiting["version"].as_str().unwrap()));
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "{:?}", started.elapsed());
    assert_eq!(unchanged["version"], waiting["version"]);
    let answer = ask("payments", fresh());
    assert_eq!(answer["code"], "revoked");
    assert!(answer["reason"].as_str().unwrap().contains("key compromise drill"), "{answer}");
    let list: serde_json::Value =
        broker.client(loopback(1)).get(broker.url("revocations")).send().unwrap().json().unwrap();
    assert_eq!(list["revocations"][0]["target"]["id"], issued.x509_serial.as_str());
}

/// The address a credential binds is the one that attested: both steps come from it, and a
/// trusted proxy's forwarded address is used only when it reads as one.
#[test]
fn the_bound_address_is_the_one_that_attested() {
    let Some(vm) = Vm::start("broker_binding", SwtpmOptions::default()) else { return };
    let broker = broker_for(&vm, "[network]\ntrusted_proxies = [\"127.0.0.5/32\"]\n");

    // Begun from one address, finished from another.
    let challenge = begin(&broker, &vm, 1);
    let request = vm.finish_request(&challenge);
    let answer = broker.post(&broker.client(loopback(2)), "tpm/finish", &request);
    assert_refused(&answer, 403, "challenge_address_mismatch");
    assert!(answer.1["reason"].as_str().unwrap().contains("127.0.0.1"), "{}", answer.1);

    // Through the trusted proxy: the forwarded address, with or without a port, is bound.
    let proxied = |forwarded: Option<&str>, path: &str, body: &serde_json::Value| {
        let mut request = broker.client(loopback(5)).post(broker.url(path)).json(body);
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().unwrap())
    };
    let begin_body = serde_json::to_value(vm.begin_request()).unwrap();
    for forwarded in ["unknown", "127.0.0.1:x", "", "10.0.0.1, garbage"] {
        let answer = proxied(Some(forwarded), "tpm/begin", &begin_body);
        assert_refused(&answer, 400, "forwarded_address_invalid");
    }
    assert_refused(&proxied(None, "tpm/begin", &begin_body), 400, "forwarded_address_invalid");
    let (status, challenge) = proxied(Some("192.0.2.9, 127.0.0.2:40000"), "tpm/begin", &begin_body);
    assert_eq!(status, 200, "{challenge}");
    let challenge: TpmChallenge = serde_json::from_value(challenge).unwrap();
    let finish_body = serde_json::to_value(vm.finish_request(&challenge)).unwrap();
    let (status, issued) = proxied(Some("127.0.0.2"), "tpm/finish", &finish_body);
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["bound_address"], "127.0.0.2");
}

#[test]
fn an_admin_dry_run_judges_recent_attestations_by_a_proposed_policy() {
    let Some(vm) = Vm::start("broker_dry_run", SwtpmOptions::default()) else { return };
    let setup = common::admitting(&vm, String::new());
    let broker = Broker::start(&setup);
    attest(&broker, &vm, 1);
    // A finish refused at the live boundary (wrong activation) is not kept: only evidence
    // that proved a live TPM is.
    let challenge = begin(&broker, &vm, 2);
    let mut request = vm.finish_request(&challenge);
    request.activated_secret[0] ^= 1;
    assert_refused(&finish(&broker, 2, &request), 403, "activation_failed");

    let dry_run =
        |policy: &str| broker.post(&broker.admin(), "admin/policy/dry-run", &json!({ "policy": policy }));
    let (status, report) = dry_run(&setup.policy);
    assert_eq!(status, 200, "{report}");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{report}");
    assert_eq!(results[0]["kind"], "tpm");
    assert_eq!(results[0]["address"], "127.0.0.1");
    assert_eq!(results[0]["in_force"]["decision"], "admitted", "{report}");
    assert_eq!(results[0]["proposed"], results[0]["in_force"]);
    assert!(results[0]["proposed"]["not_checked"].as_str().unwrap().contains("activation"), "{report}");

    // A policy pinning PCR 7 to another value would refuse this VM, and says why.
    let stricter = setup.policy.replace(&"00".repeat(32), &"11".repeat(32));
    let (status, report) = dry_run(&stricter);
    assert_eq!(status, 200, "{report}");
    let result = &report["results"][0];
    assert_eq!(result["in_force"]["decision"], "admitted", "{report}");
    assert_eq!(result["proposed"]["decision"], "refused", "{report}");
    assert_eq!(result["proposed"]["code"], "pcr_value_not_allowed", "{report}");
    // So would one that only admits it from another network.
    let (_, elsewhere) = dry_run(&setup.policy.replace("127.0.0.0/8", "10.0.0.0/8"));
    assert_eq!(elsewhere["results"][0]["proposed"]["code"], "address_not_allowed", "{elsewhere}");

    // A proposed policy that does not load is refused with its line; nothing changes.
    assert_refused(&dry_run("version = 1\n[[class]]\nname = 3\n"), 400, "policy_invalid");
    assert_eq!(dry_run(&setup.policy).1["results"][0]["in_force"]["decision"], "admitted");
    // Not without the admin certificate.
    let (status, _) =
        broker.post(&broker.client(loopback(1)), "admin/policy/dry-run", &json!({ "policy": "" }));
    assert_eq!(status, 401);
    // Each dry run is on the audit record, with the proposed policy's digest.
    let audit = broker.audit();
    let digest = report["policy"].as_str().unwrap();
    assert!(
        audit.iter().any(|r| r["code"] == "policy_dry_run" && r["reason"].as_str().unwrap().contains(digest)),
        "{audit:?}"
    );
}

#[test]
fn a_blocked_tpm_with_an_ek_certificate_is_refused_at_finish_on_the_record() {
    let Some(vm) = Vm::start("broker_blocked_finish", SwtpmOptions::default()) else { return };
    let broker = Broker::start(&common::admitting(&vm, String::new()));
    let issued = attest(&broker, &vm, 1);
    let hardware_id = common::verify_jwt(&broker, &vm, &issued.jwt_svid)["claims"]["hardware_id"].clone();
    broker.admin_post(
        "admin/identities",
        &json!({"identity": {"kind": "ek", "id": hardware_id}, "status": "blocked"}),
    );
    // No class matches on enrollment, so `begin` does not read the administrator's word;
    // `finish` does, once the TPM proved itself, and refuses on the record.
    let challenge = begin(&broker, &vm, 1);
    assert_refused(&finish(&broker, 1, &vm.finish_request(&challenge)), 403, "vm_blocked");
    let audit = broker.audit();
    assert!(
        audit.iter().any(|r| r["code"] == "vm_blocked"
            && r["outcome"] == "refused"
            && r["hardware_id"] == hardware_id),
        "{audit:?}"
    );

    // With a class that matches on enrollment, `begin` reads it and refuses at once.
    let mut setup = common::admitting(&vm, String::new());
    setup.policy.push_str(
        &setup
            .policy
            .replace("version = 1\n", "")
            .replace("\"web\"", "\"enrolled\"")
            .replace("[class.match]\n", "[class.match]\nenrolled = true\n"),
    );
    let broker = Broker::start(&setup);
    attest(&broker, &vm, 1);
    broker.admin_post(
        "admin/identities",
        &json!({"identity": {"kind": "ek", "id": hardware_id}, "status": "blocked"}),
    );
    let (status, body) = broker.post(&broker.client(loopback(1)), "tpm/begin", &vm.begin_request());
    assert_refused(&(status, body), 403, "vm_blocked");
}

#[test]
fn a_finish_is_refused_when_its_class_no_longer_admits_the_ek() {
    let Some(vm) = Vm::start("broker_class_changed", SwtpmOptions::default()) else { return };
    let setup = common::admitting(&vm, String::new());
    let broker = Broker::start(&setup);
    let challenge = begin(&broker, &vm, 1);
    // Between begin and finish, the class is changed to admit another manufacturer's EKs.
    let issuer = setup.policy.lines().find(|l| l.starts_with("ek_issuers")).unwrap();
    std::fs::write(
        broker.dir.path().join("policy.toml"),
        setup.policy.replace(issuer, "ek_issuers = [\"CN=Another Vendor CA\"]"),
    )
    .unwrap();
    broker.admin_post("admin/policy/reload", &json!({}));
    let answer = finish(&broker, 1, &vm.finish_request(&challenge));
    assert_refused(&answer, 403, "no_matching_class");
    assert!(answer.1["reason"].as_str().unwrap().contains("no longer admits"), "{answer:?}");
}

/// A TPM policy pinning `pcrs` to what a firmware that measured `log` leaves there.
fn policy_for_log(vm: &Vm, log: &[u8], pcrs: &[u8]) -> String {
    let issuer = parse_one_certificate(&vm.ek_certificate()).unwrap().issuer().to_owned();
    format!(
        "version = 1\n\n[[class]]\nname = \"web\"\nevidence = \"tpm\"\nttl_seconds = 600\naudiences = [\"payments\"]\n\
         networks = [\"127.0.0.1/32\"]\n\n[class.match]\nek_issuers = [{issuer:?}]\n\n[class.tpm]\n\
         pcr_bank = \"sha256\"\npcrs = {pcrs:?}\n\n[class.tpm.pcr_values]\n{}",
        measured_boot::pcr_values(log, pcrs)
    )
}

#[test]
fn an_event_log_named_by_digest_is_one_an_admitted_vm_sent_and_still_must_replay() {
    use sha2::{Digest as _, Sha256};
    let Some(vm) = Vm::start("broker_log_by_digest", SwtpmOptions::default()) else { return };
    let Some(unbooted) = Vm::start("broker_log_by_digest_other", SwtpmOptions::default()) else { return };
    let log = mooring_testdata::testdata("tpm/eventlogs/keylime/binary_bios_measurements-secureboot");
    let digest = hex::encode(Sha256::digest(&log));
    let pcrs = [1, 2, 3, 4, 5, 6, 7];
    measured_boot::measure(&vm.tools, &log, &pcrs);
    let broker = Broker::start(&BrokerSetup {
        policy: policy_for_log(&vm, &log, &pcrs),
        ek_roots: vm.tpm.ek_cert_ca_files().all().iter().map(|p| p.to_path_buf()).collect(),
        extra_config: String::new(),
        secrets: Vec::new(),
    });

    // A fresh broker holds no logs: naming one is refused before the challenge is used up.
    let challenge = begin(&broker, &vm, 1);
    let mut request = vm.finish_request(&challenge);
    request.event_log_sha256 = Some(digest.clone());
    assert_refused(&finish(&broker, 1, &request), 409, "event_log_unknown");
    // Without a challenge of this address, no lookup at all.
    let probe = json!({"challenge_id": "forged", "activated_secret": "", "quote": "", "quote_signature": "",
                       "pcrs": {}, "event_log_sha256": digest, "certify": "", "certify_signature": ""});
    assert_refused(&finish(&broker, 1, &probe), 404, "challenge_unknown");
    // A digest that is not the log's, sent with it, is refused (the same challenge again).
    request.event_log = Some(log.clone());
    request.event_log_sha256 = Some(hex::encode(Sha256::digest(b"another log")));
    assert_refused(&finish(&broker, 1, &request), 403, "event_log_mismatch");
    for malformed in ["not hex".to_owned(), digest.to_uppercase()] {
        request.event_log_sha256 = Some(malformed);
        assert_refused(&finish(&broker, 1, &request), 400, "malformed_request");
    }
    // The log with its digest: admitted on the challenge the refusals left unused.
    request.event_log_sha256 = Some(digest.clone());
    let (status, answer) = finish(&broker, 1, &request);
    assert_eq!(status, 200, "{answer}");

    // Now the VM names it and is admitted without sending it.
    let challenge = begin(&broker, &vm, 1);
    let mut named = vm.finish_request(&challenge);
    named.event_log_sha256 = Some(digest.clone());
    assert!(named.event_log.is_none());
    let (status, answer) = finish(&broker, 1, &named);
    assert_eq!(status, 200, "{answer}");

    // A VM whose TPM measured nothing names the same log: it still replays against that
    // VM's own quote, and does not.
    let challenge = begin(&broker, &unbooted, 1);
    let mut borrowed = unbooted.finish_request(&challenge);
    borrowed.event_log_sha256 = Some(digest.clone());
    assert_refused(&finish(&broker, 1, &borrowed), 403, "event_log_mismatch");

    // Without the activated secret, nothing is looked up: naming a log the broker holds
    // or one it does not is refused alike, and uses the challenge up.
    for named in [digest.clone(), hex::encode(Sha256::digest(b"a log nobody sent"))] {
        let challenge = begin(&broker, &vm, 1);
        let mut probe = vm.finish_request(&challenge);
        probe.activated_secret[0] ^= 1;
        probe.event_log_sha256 = Some(named);
        assert_refused(&finish(&broker, 1, &probe), 403, "activation_failed");
        probe.activated_secret[0] ^= 1;
        probe.event_log_sha256 = Some(digest.clone());
        assert_refused(&finish(&broker, 1, &probe), 409, "challenge_used");
    }

    // A log sent with its digest in a refused attestation is not kept.
    let refused_log = mooring_testdata::testdata("tpm/eventlogs/go-tpm-tools/ubuntu-2404-amd-sevsnp.bin");
    let refused_digest = hex::encode(Sha256::digest(&refused_log));
    let challenge = begin(&broker, &unbooted, 1);
    let mut request = unbooted.finish_request(&challenge);
    request.event_log = Some(refused_log);
    request.event_log_sha256 = Some(refused_digest.clone());
    assert_refused(&finish(&broker, 1, &request), 403, "event_log_mismatch");
    let challenge = begin(&broker, &vm, 1);
    let mut request = vm.finish_request(&challenge);
    request.event_log_sha256 = Some(refused_digest);
    assert_refused(&finish(&broker, 1, &request), 409, "event_log_unknown");

    // Naming a log is not a decision about the VM: counted, never recorded one by one.
    let audit = broker.audit();
    assert!(!audit.iter().any(|r| r["code"] == "event_log_unknown" && r["outcome"] == "refused"));
    assert_eq!(audit.iter().filter(|r| r["code"] == "issued").count(), 2);
    assert_eq!(broker.audit_verify()["valid"], true);
}

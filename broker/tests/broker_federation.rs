//! Federation with a VM on a real swtpm: the token exchange (RFC 8693) of its JWT-SVID for
//! a short token for a downstream audience, each refusal on its own, the audit record of
//! every exchange that proved possession, the OIDC issuer's documents, and revocation
//! reaching what was exchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::vm::Vm;
use common::{admitting, assert_refused, attest, b64, loopback, now, Broker};
use mooring_attestation::protocol::{
    exchange_request, IssuedCredentials, EXCHANGE_AUDIENCE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT,
};
use mooring_tests::SwtpmOptions;
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.test.mooring";
const AWS: &str = "sts.amazonaws.com";
const VAULT: &str = "https://vault.test.mooring";

/// A broker admitting `vm` (class `web`, JWT-SVID audience `payments`, 600 s) that
/// federates the class with AWS (default 300 s, scope `s3:read`) and Vault (3600 s, longer
/// than the JWT-SVID).
fn broker(vm: &Vm) -> Broker {
    let mut setup = admitting(vm, format!("[federation]\nissuer = \"{ISSUER}\"\n"));
    setup.policy.push_str(&format!(
        "[[class.federation]]\naudience = \"{AWS}\"\nscopes = [\"s3:read\"]\n\n\
         [[class.federation]]\naudience = \"{VAULT}\"\nttl_seconds = 3600\n"
    ));
    Broker::start(&setup)
}

/// A nonce, a possession statement for an exchange and K's signature over it.
struct Signed {
    nonce: String,
    statement: Vec<u8>,
    signature: Vec<u8>,
}

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    hex::encode(bytes)
}

/// An exchange request for `audience` and `scope` with `proof`.
fn request(token: &str, audience: &str, scope: Option<&str>, proof: &Signed) -> Value {
    let mut body = json!({
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": token,
        "subject_token_type": JWT_TOKEN_TYPE,
        "audience": audience,
        "nonce": proof.nonce,
        "statement": b64(&proof.statement),
        "signature": b64(&proof.signature),
    });
    if let Some(scope) = scope {
        body["scope"] = scope.into();
    }
    body
}

/// `vm`'s K signs a possession statement for exchanging for `audience` and `scope`, now,
/// with a new nonce.
fn proof(vm: &Vm, audience: &str, scope: Option<&str>) -> Signed {
    let nonce = nonce();
    let (statement, signature) =
        vm.sign_statement(EXCHANGE_AUDIENCE, &exchange_request(audience, scope, &nonce), now());
    Signed { nonce, statement, signature }
}

/// `POST /v1/credentials/exchange` from 127.0.0.`source`.
fn exchange(broker: &Broker, source: u8, body: &Value) -> (u16, Value) {
    broker.post(&broker.client(loopback(source)), "credentials/exchange", body)
}

/// An honest exchange by `vm` (bound to 127.0.0.1): the answer, which must be 200.
fn exchanged(
    broker: &Broker,
    vm: &Vm,
    issued: &IssuedCredentials,
    audience: &str,
    scope: Option<&str>,
) -> Value {
    let (status, answer) =
        exchange(broker, 1, &request(&issued.jwt_svid, audience, scope, &proof(vm, audience, scope)));
    assert_eq!(status, 200, "{answer}");
    answer
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The broker's verify API on an exchanged token for `audience`.
fn verify(broker: &Broker, token: &str, audience: &str) -> Value {
    let (status, answer) = broker.post(
        &broker.client(loopback(9)),
        "credentials/verify",
        &json!({"credential": {"type": "exchanged", "token": token}, "peer_address": loopback(9), "audience": audience}),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The exchange records of the audit log.
fn exchange_records(broker: &Broker) -> Vec<Value> {
    broker.audit().into_iter().filter(|r| r["action"] == "exchange").collect()
}

#[test]
fn a_vm_exchanges_its_jwt_svid_for_a_short_token_on_the_record() {
    let Some(vm) = Vm::start("federation_exchange", SwtpmOptions::default()) else { return };
    let broker = broker(&vm);
    let issued = attest(&broker, &vm, 1);

    let answer = exchanged(&broker, &vm, &issued, AWS, None);
    assert_eq!(answer["issued_token_type"], JWT_TOKEN_TYPE);
    assert_eq!(answer["token_type"], "N_A");
    let expires_in = answer["expires_in"].as_i64().unwrap();
    assert!((295..=300).contains(&expires_in), "{answer}");
    assert!(answer.get("scope").is_none(), "no scope asked, none granted: {answer}");
    let token = answer["access_token"].as_str().unwrap();
    let aws = claims(token);
    assert_eq!(aws["iss"], ISSUER);
    assert_eq!(aws["sub"], issued.spiffe_id.as_str());
    assert_eq!(aws["aud"], AWS);
    assert_eq!(aws["class"], "web");
    assert_eq!(aws["svid_serial"], issued.x509_serial.as_str());
    assert_eq!(aws["exp"].as_i64().unwrap() - aws["iat"].as_i64().unwrap(), 300);
    // A bearer token: no key to prove, no address.
    assert!(aws.get("cnf").is_none() && aws.get("bound_address").is_none(), "{aws}");
    // The same exchange again at once: a new nonce, a new statement, a new token.
    let again = exchanged(&broker, &vm, &issued, AWS, None);
    assert_ne!(claims(again["access_token"].as_str().unwrap())["jti"], aws["jti"]);

    // The scope granted for the audience; a lifetime never beyond the JWT-SVID's.
    let scoped = exchanged(&broker, &vm, &issued, AWS, Some("s3:read"));
    assert_eq!(scoped["scope"], "s3:read");
    assert_eq!(claims(scoped["access_token"].as_str().unwrap())["scope"], "s3:read");
    let vault = exchanged(&broker, &vm, &issued, VAULT, None);
    assert_eq!(claims(vault["access_token"].as_str().unwrap())["exp"], issued.expires_at);

    // Each exchange is on the record: subject, serial, audience, the token's id.
    let records = exchange_records(&broker);
    assert_eq!(records.len(), 4, "{records:?}");
    for (record, audience) in records.iter().zip([AWS, AWS, AWS, VAULT]) {
        assert_eq!(record["outcome"], "accepted", "{record}");
        assert_eq!(record["code"], "exchanged", "{record}");
        assert_eq!(record["spiffe_id"], issued.spiffe_id.as_str(), "{record}");
        assert_eq!(record["serial"], issued.x509_serial.as_str(), "{record}");
        assert_eq!(record["audience"], audience, "{record}");
        assert_eq!(record["peer"], "127.0.0.1", "{record}");
        assert!(record["hardware_id"].as_str().is_some_and(|h| h.len() == 64), "{record}");
    }
    assert!(records[0]["reason"].as_str().unwrap().contains(aws["jti"].as_str().unwrap()), "{}", records[0]);
    assert_eq!(broker.audit_verify()["valid"], true);

    // The broker's verify API takes it for its audience only, and names the credential.
    let valid = verify(&broker, token, AWS);
    assert_eq!(valid["valid"], true, "{valid}");
    assert_eq!(valid["claims"]["serial"], issued.x509_serial.as_str());
    assert_eq!(valid["claims"]["spiffe_id"], issued.spiffe_id.as_str());
    assert_eq!(verify(&broker, token, VAULT)["code"], "wrong_audience");
    // Neither passes for the other: an exchanged token as a JWT-SVID, a JWT-SVID as an
    // exchanged token.
    let (_, as_svid) = broker.post(
        &broker.client(loopback(1)),
        "credentials/verify",
        &json!({"credential": {"type": "jwt", "token": token}, "peer_address": loopback(1), "audience": AWS}),
    );
    assert_eq!(as_svid["code"], "credential_malformed", "{as_svid}");
    assert_eq!(verify(&broker, &issued.jwt_svid, "payments")["code"], "credential_malformed");
}

#[test]
fn each_exchange_refusal_answers_its_code_and_those_after_the_proof_are_audited() {
    let Some(vm) = Vm::start("federation_refusals", SwtpmOptions::default()) else { return };
    let broker = broker(&vm);
    let issued = attest(&broker, &vm, 1);
    let token = issued.jwt_svid.as_str();

    // A copied JWT-SVID without K, even from the bound address: no proof at all, or a
    // proof signed by another VM's K in another TPM.
    let none = Signed { nonce: nonce(), statement: Vec::new(), signature: Vec::new() };
    assert_refused(&exchange(&broker, 1, &request(token, AWS, None, &none)), 403, "proof_invalid");
    let Some(thief) = Vm::start("federation_thief", SwtpmOptions::default()) else { return };
    let forged = proof(&thief, AWS, None);
    assert_refused(&exchange(&broker, 1, &request(token, AWS, None, &forged)), 403, "proof_invalid");
    // A good proof from another address.
    let good = proof(&vm, AWS, None);
    assert_refused(&exchange(&broker, 2, &request(token, AWS, None, &good)), 403, "address_outside_binding");
    // A proof made for another audience, or another scope, than the one asked for.
    let for_vault = proof(&vm, VAULT, None);
    assert_refused(&exchange(&broker, 1, &request(token, AWS, None, &for_vault)), 403, "proof_invalid");
    let unscoped = proof(&vm, AWS, None);
    assert_refused(
        &exchange(&broker, 1, &request(token, AWS, Some("s3:read"), &unscoped)),
        403,
        "proof_invalid",
    );
    let mut renonced = request(token, AWS, None, &proof(&vm, AWS, None));
    renonced["nonce"] = nonce().into();
    assert_refused(&exchange(&broker, 1, &renonced), 403, "proof_invalid");
    // A proof used twice.
    let once = proof(&vm, AWS, None);
    assert_eq!(exchange(&broker, 1, &request(token, AWS, None, &once)).0, 200);
    assert_refused(&exchange(&broker, 1, &request(token, AWS, None, &once)), 403, "proof_replayed");
    // Not a token exchange of a JWT; a member the route does not know.
    let mut wrong = request(token, AWS, None, &proof(&vm, AWS, None));
    wrong["grant_type"] = "client_credentials".into();
    assert_refused(&exchange(&broker, 1, &wrong), 400, "malformed_request");
    let mut wrong = request(token, AWS, None, &proof(&vm, AWS, None));
    wrong["subject_token_type"] = "urn:ietf:params:oauth:token-type:access_token".into();
    assert_refused(&exchange(&broker, 1, &wrong), 400, "malformed_request");
    let mut wrong = request(token, AWS, None, &proof(&vm, AWS, None));
    wrong["requested_token_type"] = "urn:ietf:params:oauth:token-type:access_token".into();
    assert_refused(&exchange(&broker, 1, &wrong), 400, "malformed_request");
    let mut wrong = request(token, AWS, None, &proof(&vm, AWS, None));
    wrong["resource"] = "https://s3.amazonaws.com".into();
    assert_refused(&exchange(&broker, 1, &wrong), 400, "malformed_request");
    let mut wrong = request(token, AWS, None, &proof(&vm, AWS, None));
    wrong["nonce"] = "0123".into();
    assert_refused(&exchange(&broker, 1, &wrong), 400, "malformed_request");
    let long = "a".repeat(300);
    assert_refused(
        &exchange(&broker, 1, &request(token, &long, None, &proof(&vm, &long, None))),
        400,
        "malformed_request",
    );
    let before_proof = exchange_records(&broker);
    assert_eq!(before_proof.len(), 1, "only the accepted exchange is a record of its own: {before_proof:?}");
    for code in ["proof_invalid", "address_outside_binding", "proof_replayed", "malformed_request"] {
        assert!(broker.refusal_recorded(code), "{code} is counted in a summary");
    }

    // After the proof: an audience the class does not federate with (its JWT-SVID audience
    // included), a scope it is not granted, a revoked credential. Each is a record.
    let refused = |audience: &str, scope: Option<&str>| {
        exchange(&broker, 1, &request(token, audience, scope, &proof(&vm, audience, scope)))
    };
    assert_refused(&refused("elsewhere", None), 403, "wrong_audience");
    assert_refused(&refused("payments", None), 403, "wrong_audience");
    assert_refused(&refused(AWS, Some("s3:write")), 403, "scope_not_allowed");
    assert_refused(&refused(VAULT, Some("s3:read")), 403, "scope_not_allowed");
    broker.admin_post(
        "admin/revocations",
        &json!({"target": {"kind": "credential", "id": issued.x509_serial}, "reason": "test"}),
    );
    assert_refused(&refused(AWS, None), 403, "revoked");

    let records = exchange_records(&broker);
    let refused: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "refused").collect();
    let seen: Vec<(&str, &str)> =
        refused.iter().map(|r| (r["code"].as_str().unwrap(), r["audience"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [
            ("wrong_audience", "elsewhere"),
            ("wrong_audience", "payments"),
            ("scope_not_allowed", AWS),
            ("scope_not_allowed", VAULT),
            ("revoked", AWS)
        ]
    );
    for record in refused {
        assert_eq!(record["spiffe_id"], issued.spiffe_id.as_str(), "{record}");
        assert_eq!(record["serial"], issued.x509_serial.as_str(), "{record}");
    }
    assert_eq!(broker.audit_verify()["valid"], true);
}

#[test]
fn revoking_the_credential_or_the_vm_or_blocking_its_hardware_revokes_what_it_exchanged() {
    let Some(vm) = Vm::start("federation_revocation", SwtpmOptions::default()) else { return };
    let broker = broker(&vm);

    // The credential, by serial.
    let first = attest(&broker, &vm, 1);
    let token = exchanged(&broker, &vm, &first, AWS, None)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&broker, &token, AWS)["valid"], true);
    // Asked without an audience: refused, and only counted (a flood of such requests, from
    // anyone, must not grow the audit log).
    let before = broker.audit().len();
    for _ in 0..3 {
        let (status, answer) = broker.post(
            &broker.client(loopback(9)),
            "credentials/verify",
            &json!({"credential": {"type": "exchanged", "token": "x"}, "peer_address": loopback(9)}),
        );
        assert_eq!((status, answer["code"].as_str()), (200, Some("malformed_request")), "{answer}");
    }
    // Nor does an audience of attacker-chosen size (refusal reasons repeat it).
    let (status, answer) = broker.post(
        &broker.client(loopback(9)),
        "credentials/verify",
        &json!({"credential": {"type": "exchanged", "token": token}, "peer_address": loopback(9),
                "audience": "a".repeat(10_000)}),
    );
    assert_eq!((status, answer["code"].as_str()), (200, Some("malformed_request")), "{answer}");
    // A proof sent with a bearer token is refused, not silently ignored.
    let (status, answer) = broker.post(
        &broker.client(loopback(9)),
        "credentials/verify",
        &json!({"credential": {"type": "exchanged", "token": token}, "peer_address": loopback(9),
                "audience": AWS, "proof": {"type": "mutual_tls"}}),
    );
    assert_eq!((status, answer["code"].as_str()), (200, Some("malformed_request")), "{answer}");
    assert!(answer["reason"].as_str().unwrap().contains("bearer token"), "{answer}");
    assert_eq!(broker.audit().len(), before);
    broker.admin_post(
        "admin/revocations",
        &json!({"target": {"kind": "credential", "id": first.x509_serial}, "reason": "compromised"}),
    );
    assert_eq!(verify(&broker, &token, AWS)["code"], "revoked");

    // The hardware, blocked (then enrolled again).
    let second = attest(&broker, &vm, 1);
    let token = exchanged(&broker, &vm, &second, AWS, None)["access_token"].as_str().unwrap().to_owned();
    let answer = verify(&broker, &token, AWS);
    assert_eq!(answer["valid"], true, "{answer}");
    let identity = json!({"kind": "ek", "id": answer["claims"]["hardware_id"]});
    broker.admin_post("admin/identities", &json!({"identity": identity, "status": "blocked"}));
    assert_eq!(verify(&broker, &token, AWS)["code"], "vm_blocked");
    // A blocked VM exchanges nothing either, on the record.
    let (status, refused) =
        exchange(&broker, 1, &request(&second.jwt_svid, AWS, None, &proof(&vm, AWS, None)));
    assert_refused(&(status, refused), 403, "vm_blocked");
    broker.admin_post("admin/identities", &json!({"identity": identity, "status": "enrolled"}));
    assert_eq!(verify(&broker, &token, AWS)["valid"], true);

    // The VM, by SPIFFE ID.
    broker.admin_post(
        "admin/revocations",
        &json!({"target": {"kind": "vm", "id": second.spiffe_id}, "reason": "decommissioned"}),
    );
    assert_eq!(verify(&broker, &token, AWS)["code"], "revoked");
    let records = exchange_records(&broker);
    assert!(records.iter().any(|r| r["code"] == "vm_blocked" && r["audience"] == AWS), "{records:?}");
}

#[test]
fn the_oidc_issuer_documents_are_served_only_when_configured() {
    let Some(vm) = Vm::start("federation_documents", SwtpmOptions::default()) else { return };
    let broker = broker(&vm);
    let get = |path: &str| -> (u16, Value) {
        let url = format!("https://localhost:{}{path}", broker.address.port());
        let response = broker.client(loopback(1)).get(url).send().unwrap();
        (response.status().as_u16(), response.json().unwrap())
    };
    let (status, discovery) = get("/.well-known/openid-configuration");
    assert_eq!(status, 200, "{discovery}");
    assert_eq!(discovery["issuer"], ISSUER);
    assert_eq!(discovery["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    assert_eq!(discovery["id_token_signing_alg_values_supported"], json!(["ES256"]));
    let (status, jwks) = get("/.well-known/jwks.json");
    assert_eq!(status, 200, "{jwks}");
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let mut members: Vec<&str> = keys[0].as_object().unwrap().keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"], "nothing SPIFFE-specific");
    assert_eq!((keys[0]["use"].as_str(), keys[0]["alg"].as_str()), (Some("sig"), Some("ES256")));
    // The same key signs JWT-SVIDs (in the SPIFFE form of /v1/bundle/jwks).
    let spiffe: Value =
        broker.client(loopback(1)).get(broker.url("bundle/jwks")).send().unwrap().json().unwrap();
    assert_eq!(spiffe["keys"][0]["kid"], keys[0]["kid"]);
    assert_eq!(spiffe["keys"][0]["use"], "jwt-svid");

    // Without [federation]: no documents, no exchange.
    let plain = Broker::start(&admitting(&vm, String::new()));
    let url = format!("https://localhost:{}/.well-known/openid-configuration", plain.address.port());
    let response = plain.client(loopback(1)).get(url).send().unwrap();
    let answer = (response.status().as_u16(), response.json().unwrap());
    assert_refused(&answer, 404, "not_found");
    let issued = attest(&plain, &vm, 1);
    let body = request(&issued.jwt_svid, AWS, None, &proof(&vm, AWS, None));
    assert_refused(&exchange(&plain, 1, &body), 404, "not_found");
    // Nor does it take a token exchanged elsewhere.
    let federated = attest(&broker, &vm, 1);
    let token = exchanged(&broker, &vm, &federated, AWS, None)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&plain, &token, AWS)["code"], "credential_malformed");
}

/// A grant the policy withdraws stops the tokens exchanged under it at once, at the
/// broker's verify API (not only new exchanges); the class gone, likewise.
#[test]
fn a_withdrawn_grant_stops_the_tokens_exchanged_under_it() {
    let Some(vm) = Vm::start("federation_withdrawn", SwtpmOptions::default()) else { return };
    let broker = broker(&vm);
    let issued = attest(&broker, &vm, 1);
    let aws =
        exchanged(&broker, &vm, &issued, AWS, Some("s3:read"))["access_token"].as_str().unwrap().to_owned();
    let vault = exchanged(&broker, &vm, &issued, VAULT, None)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&broker, &aws, AWS)["valid"], true);

    let policy_file = broker.dir.path().join("policy.toml");
    let policy = std::fs::read_to_string(&policy_file).unwrap();
    let reload = |text: &str| {
        std::fs::write(&policy_file, text).unwrap();
        broker.admin_post("admin/policy/reload", &json!({}));
    };
    // The scope withdrawn: the AWS token that carries it is refused; Vault's still holds.
    reload(&policy.replace("scopes = [\"s3:read\"]", "scopes = []"));
    assert_eq!(verify(&broker, &aws, AWS)["code"], "scope_not_allowed");
    assert_eq!(verify(&broker, &vault, VAULT)["valid"], true);
    // The audience withdrawn.
    let without_aws =
        policy.replace(&format!("[[class.federation]]\naudience = \"{AWS}\"\nscopes = [\"s3:read\"]\n"), "");
    assert_ne!(without_aws, policy);
    reload(&without_aws);
    assert_eq!(verify(&broker, &aws, AWS)["code"], "wrong_audience");
    // The class renamed: no class grants anything to the tokens of the old one.
    reload(&policy.replace("name = \"web\"", "name = \"web2\""));
    assert_eq!(verify(&broker, &vault, VAULT)["code"], "no_matching_class");
    // Restored: valid again (nothing else was revoked).
    reload(&policy);
    assert_eq!(verify(&broker, &aws, AWS)["valid"], true);
}

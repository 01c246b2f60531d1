//! Federation with the real client: `mooring-client exchange` trades VM A's JWT-SVID for a
//! token for a downstream audience (K signs in A's TPM); the broker's verify API takes the
//! token until the VM is revoked; a copy of A's directories on VM B exchanges nothing.

use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::{copy_dir, tpm_broker_setup, ClientVm, OutputText as _, CLIENT_EXIT_REFUSED};
use serde_json::{json, Value};

use crate::theft::config_with_dirs;
use crate::{spiffe_id, A, B, NETWORKS};

const AWS: &str = "sts.amazonaws.com";

/// `broker`'s verify API on an exchanged token for [`AWS`].
fn verify(broker: &Broker, token: &str) -> Value {
    let body = json!({"credential": {"type": "exchanged", "token": token}, "peer_address": loopback(9), "audience": AWS});
    let (status, answer) = broker.post(&broker.client(loopback(1)), "credentials/verify", &body);
    assert_eq!(status, 200, "{answer}");
    answer
}

#[test]
fn s12_a_vm_exchanges_its_jwt_svid_with_the_client_and_a_copy_of_it_cannot() {
    let Some(a) = ClientVm::start_or_skip("e2e_s12_exchange", loopback(A)) else { return };
    let Some(b) = ClientVm::start_or_skip("e2e_s12_exchange", loopback(B)) else { return };
    let mut setup = tpm_broker_setup(&[&a.tpm, &b.tpm], NETWORKS);
    setup.policy.push_str(&format!("\n[[class.federation]]\naudience = \"{AWS}\"\nscopes = [\"s3:read\"]\n"));
    setup.extra_config.push_str("[federation]\nissuer = \"https://issuer.test.mooring\"\n");
    let broker = Broker::start(&setup);
    a.write_config(&broker);
    b.write_config(&broker);
    // Before any attestation: nothing to exchange, and the client says what to do.
    let out = a.client(&["exchange", AWS]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("no credential held: attest first"), "{}", out.stderr_text());
    a.attest();
    b.attest();

    // The token alone on stdout, or the RFC 8693 answer.
    let out = a.client(&["exchange", AWS]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let token = out.stdout_text().trim().to_owned();
    assert_eq!(verify(&broker, &token)["valid"], true);
    let out = a.client(&["exchange", AWS, "--scope", "s3:read", "--json"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let answer: Value = serde_json::from_str(&out.stdout_text()).unwrap();
    assert_eq!((answer["token_type"].as_str(), answer["scope"].as_str()), (Some("N_A"), Some("s3:read")));
    // An audience the class does not federate with: refused, named, on the record.
    let out = a.client(&["exchange", "vault"]);
    assert_eq!(out.status.code(), Some(CLIENT_EXIT_REFUSED), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("wrong_audience"), "{}", out.stderr_text());
    let audit = broker.audit();
    let exchanges: Vec<(&str, &str)> = audit
        .iter()
        .filter(|r| r["action"] == "exchange")
        .map(|r| (r["code"].as_str().unwrap(), r["audience"].as_str().unwrap()))
        .collect();
    assert_eq!(exchanges, [("exchanged", AWS), ("exchanged", AWS), ("wrong_audience", "vault")]);

    // A's directories copied onto B: K's blobs do not load in B's TPM, so no statement can be
    // signed, whatever address B claims.
    let stolen_run = b.run.path().join("stolen");
    let stolen_state = b.dir.path().join("stolen-state");
    copy_dir(&a.runtime_dir(), &stolen_run);
    copy_dir(&a.state_dir(), &stolen_state);
    let stolen = config_with_dirs(&b, &stolen_run, &stolen_state, "stolen.toml");
    for source in [&[][..], &["--source-address", "127.0.0.2"][..]] {
        let out = std::process::Command::new(mooring_tests::workspace_binary("mooring-client"))
            .arg("--config")
            .arg(&stolen)
            .args(source)
            .args(["exchange", AWS])
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
        assert!(out.stderr_text().contains("signing with the credential key"), "{}", out.stderr_text());
    }

    // Revoking the VM: its token is refused at once.
    broker.admin_post(
        "admin/revocations",
        &json!({"target": {"kind": "vm", "id": spiffe_id(&a)}, "reason": "test"}),
    );
    assert_eq!(verify(&broker, &token)["code"], "revoked");
}

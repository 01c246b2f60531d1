//! Stolen credentials: a VM's directories copied to another VM, a request replayed from
//! another address, a sealed secret taken to another TPM.

use std::path::{Path, PathBuf};

use mooring_client::api::BrokerApi;
use mooring_client::config::{Config, Evidence};
use mooring_client::service::Attester as _;
use mooring_client::tpm::attest::TpmAttester;
use mooring_client::tpm::{ek, open, unseal};
use mooring_tests::broker::loopback;
use mooring_tests::client::{copy_dir, ClientVm, OutputText as _, PAYMENT_SECRET};
use serde_json::Value;

use crate::checks::{assert_audited, assert_k_unusable, assert_paid, assert_refused};
use crate::{pay, spiffe_id, world, A, B};

/// A configuration file for mooring-pay on `vm`'s TPM with other runtime and state directories
/// (what a thief who copied them there would point it at).
pub(crate) fn config_with_dirs(vm: &ClientVm, runtime: &Path, state: &Path, name: &str) -> PathBuf {
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

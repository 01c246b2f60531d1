//! The SEV-SNP path against the running broker over HTTPS, with the test signer as the
//! platform (configured as a test root): a VM attests, receives its credentials and an
//! HPKE-sealed secret only its sealing key opens; each SNP refusal of the threat table
//! answers its own code and lands in the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{assert_refused, loopback, Broker};
use mooring_attestation::protocol::{
    hpke_secret_aad, snp_report_data, IssuedCredentials, Possession, PresentedCredential, Sealed,
    SnpFinishRequest, VerifyRequest, HPKE_SECRET_INFO,
};
use mooring_attestation::seal::{open, SealedBox, SealingKeyPair};
use mooring_attestation::snp::sim::{ReportFields, TestSigner};
use mooring_tests::cvm::{begin, now, snp_broker_setup, Cvm, MEASUREMENT};
use serde_json::{json, Value};

const SECRET: &[u8] = b"card-vault-token-for-the-cvm";

fn policy(min_snp: u8) -> String {
    format!(
        "version = 1\n\
         [[class]]\nname = \"cvm\"\nevidence = \"snp\"\nttl_seconds = 600\naudiences = [\"payments\"]\n\
         networks = [\"127.0.0.1/32\", \"127.0.0.2/32\"]\n\
         [class.snp]\nmeasurements = [\"{}\"]\n\
         min_tcb = {{ bootloader = 0, tee = 0, snp = {min_snp}, microcode = 0 }}\n\
         allow_debug = false\nmax_vmpl = 0\n\
         [[class.secrets]]\nname = \"vault\"\nfile = \"vault.secret\"\n",
        hex::encode(MEASUREMENT)
    )
}

/// The broker trusting `signer`'s chain as a test root, with `policy` and the secret file.
fn broker(signer: &TestSigner, policy: String) -> Broker {
    let mut setup = snp_broker_setup(signer, policy);
    setup.secrets.push(("vault.secret".into(), SECRET.to_vec()));
    Broker::start(&setup)
}

#[test]
fn an_snp_vm_attests_and_only_its_sealing_key_opens_the_secret() {
    let vm = Cvm::new(TestSigner::generate());
    let tcb = vm.signer.tcb();
    let broker = broker(&vm.signer, policy(tcb.snp));
    let client = broker.client(loopback(1));

    let challenge = begin(&broker, &client);
    let fields = vm.fields(&challenge);
    let request = vm.finish_request(&challenge, &fields);
    let (status, body) = broker.post(&client, "snp/finish", &request);
    assert_eq!(status, 200, "{body}");
    let issued: IssuedCredentials = serde_json::from_value(body).unwrap();
    // The credential names the chip (blocks apply to it); the SPIFFE ID the guest: its chip
    // and the REPORT_ID of its launch.
    let chip = hex::encode(&vm.signer.chip_id()[..vm.signer.product().hw_id_len()]);
    use sha2::Digest as _;
    let guest = hex::encode(sha2::Sha256::digest(
        [b"mooring snp guest v1".as_slice(), vm.signer.chip_id().as_slice(), &fields.report_id].concat(),
    ));
    assert_eq!(issued.spiffe_id, format!("spiffe://test.mooring/vm/cvm/{}", &guest[..16]));
    assert_eq!(issued.bound_address, loopback(1));
    assert!(issued.x509_svid.starts_with("-----BEGIN CERTIFICATE-----"));

    // The secret opens with this VM's sealing key, as this secret, for this VM only.
    let [secret] = issued.secrets.as_slice() else { panic!("one secret expected: {:?}", issued.secrets) };
    assert_eq!(secret.name, "vault");
    let Sealed::Hpke { enc, ciphertext } = &secret.sealed else { panic!("HPKE expected") };
    let sealed = SealedBox::from_parts(enc, ciphertext.clone()).unwrap();
    let aad = hpke_secret_aad("vault", &issued.spiffe_id);
    assert_eq!(open(&vm.sealing, &sealed, HPKE_SECRET_INFO, &aad).unwrap(), SECRET);
    let other = SealingKeyPair::generate().unwrap();
    assert!(open(&other, &sealed, HPKE_SECRET_INFO, &aad).is_err(), "another key must not open it");
    let other_vm = hpke_secret_aad("vault", "spiffe://test.mooring/vm/cvm/00");
    assert!(open(&vm.sealing, &sealed, HPKE_SECRET_INFO, &other_vm).is_err(), "bound to the SPIFFE ID");

    // The JWT-SVID verifies with a possession proof made with K in guest memory.
    let (statement, signature) = vm.sign_statement("payments", "00", now());
    let verify = VerifyRequest {
        credential: PresentedCredential::Jwt { token: issued.jwt_svid.clone() },
        peer_address: loopback(1),
        audience: Some("payments".into()),
        proof: Some(Possession::Signature { statement, signature }),
        request: None,
    };
    let (status, answer) = broker.post(&client, "credentials/verify", &verify);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["claims"]["hardware_id"], chip, "{answer}");

    // A second finish of the same challenge is refused.
    assert_refused(&broker.post(&client, "snp/finish", &request), 409, "challenge_used");

    // An administrator blocks the chip: the credential stops verifying at once and the VM
    // cannot attest again.
    let block = json!({"identity": {"kind": "chip", "id": chip}, "status": "blocked"});
    broker.admin_post("admin/identities", &block);
    let (_, answer) = broker.post(&client, "credentials/verify", &verify);
    assert_eq!(answer["valid"], false, "{answer}");
    assert_eq!(answer["code"], "vm_blocked", "{answer}");
    let challenge = begin(&broker, &client);
    let again = vm.finish_request(&challenge, &vm.fields(&challenge));
    assert_refused(&broker.post(&client, "snp/finish", &again), 403, "vm_blocked");

    let audit = broker.audit();
    let issued_record = audit.iter().find(|r| r["serial"] == issued.x509_serial.as_str()).unwrap();
    assert!(issued_record["reason"].as_str().unwrap().contains("TEST root"), "{issued_record}");
    assert!(broker.refusal_recorded("challenge_used"));
}

/// One refusal: the report fields changed by `tamper`, finished from `source`.
fn refused_with(
    broker: &Broker,
    vm: &Cvm,
    source: u8,
    tamper: impl FnOnce(&mut ReportFields, &mut SnpFinishRequest),
) -> (u16, Value) {
    let client = broker.client(loopback(source));
    let challenge = begin(broker, &client);
    let mut fields = vm.fields(&challenge);
    let mut request = vm.finish_request(&challenge, &fields);
    tamper(&mut fields, &mut request);
    if request.report.is_empty() {
        request.report = vm.signer.sign(&fields);
    }
    broker.post(&client, "snp/finish", &request)
}

#[test]
fn each_snp_refusal_answers_its_code_and_is_audited() {
    let vm = Cvm::new(TestSigner::generate());
    let tcb = vm.signer.tcb();
    let broker = broker(&vm.signer, policy(tcb.snp));

    // Guest policy allows debugging.
    let answer = refused_with(&broker, &vm, 1, |fields, request| {
        fields.policy |= 1 << 19;
        request.report.clear();
    });
    assert_refused(&answer, 403, "snp_debug");

    // Report from VMPL 1; the class allows 0.
    let answer = refused_with(&broker, &vm, 1, |fields, request| {
        fields.vmpl = 1;
        request.report.clear();
    });
    assert_refused(&answer, 403, "snp_vmpl");

    // A launch measurement no class lists.
    let answer = refused_with(&broker, &vm, 1, |fields, request| {
        fields.measurement = [0x11; 48];
        request.report.clear();
    });
    assert_refused(&answer, 403, "snp_measurement");

    // REPORT_DATA for another nonce (a stale report).
    let answer = refused_with(&broker, &vm, 1, |fields, request| {
        fields.report_data = snp_report_data(&[0; 32], &vm.key_spki, vm.sealing.public_key_bytes());
        request.report.clear();
    });
    assert_refused(&answer, 403, "report_data_mismatch");

    // The report commits to K, but the request swaps in another credential key.
    let answer = refused_with(&broker, &vm, 1, |_, request| {
        request.key_spki = Cvm::new(TestSigner::generate()).key_spki;
    });
    assert_refused(&answer, 403, "report_data_mismatch");

    // ... or another sealing key (secrets would go to whoever holds it).
    let answer = refused_with(&broker, &vm, 1, |_, request| {
        request.sealing_key = SealingKeyPair::generate().unwrap().public_key_bytes().to_vec();
    });
    assert_refused(&answer, 403, "report_data_mismatch");

    // One flipped bit of the signed report.
    let answer = refused_with(&broker, &vm, 1, |_, request| request.report[0x50] ^= 1);
    assert_refused(&answer, 403, "snp_report_invalid");

    // A VLEK-signed report with a masked (zero) CHIP_ID: no hardware identity to bind.
    let answer = refused_with(&broker, &vm, 1, |fields, request| {
        fields.signing_key = 1;
        fields.chip_id = [0; 64];
        request.report.clear();
        request.certificate_table = Some(vm.signer.vlek_cert_table());
    });
    assert_refused(&answer, 403, "snp_report_invalid");
    assert!(answer.1["reason"].as_str().unwrap().contains("CHIP_ID is zero"), "{}", answer.1);

    // A platform whose chain the broker does not trust.
    let stranger = Cvm::new(TestSigner::generate());
    let answer = refused_with(&broker, &stranger, 1, |_, _| {});
    assert_refused(&answer, 403, "snp_report_invalid");
    assert!(answer.1["reason"].as_str().unwrap().contains("SEV-SNP report"), "{}", answer.1);

    // Finishing from an address outside the class's networks.
    let answer = refused_with(&broker, &vm, 7, |_, _| {});
    assert_refused(&answer, 403, "address_not_allowed");

    // A sealing key that is not an X25519 public key.
    let answer = refused_with(&broker, &vm, 1, |_, request| request.sealing_key.truncate(31));
    assert_refused(&answer, 403, "key_invalid");

    // Every refusal is in the audit log with its reason; nothing was issued.
    let audit = broker.audit();
    for code in [
        "snp_debug",
        "snp_vmpl",
        "snp_measurement",
        "report_data_mismatch",
        "snp_report_invalid",
        "address_not_allowed",
        "key_invalid",
    ] {
        assert!(broker.refusal_recorded(code), "{code} not on the record");
    }
    // Refused before the report verified (a bad sealing key): it proved nothing, so it is
    // counted in a summary, not recorded one by one.
    assert!(!audit.iter().any(|r| r["code"] == "key_invalid"), "key_invalid recorded one by one");
    // A genuine report proves nothing until its REPORT_DATA answers the challenge (reports
    // can be replayed): refusals before that are counted; policy refusals after it recorded.
    let one_by_one = |code: &str| audit.iter().any(|r| r["code"] == code && r["outcome"] == "refused");
    for code in ["report_data_mismatch", "snp_report_invalid"] {
        assert!(!one_by_one(code), "{code} recorded one by one before the report answered the challenge");
    }
    for code in ["snp_debug", "snp_vmpl", "snp_measurement", "address_not_allowed"] {
        assert!(one_by_one(code), "{code} not recorded one by one");
    }
    assert!(audit.iter().all(|r| r["serial"].is_null()), "nothing may be issued");
}

#[test]
fn a_platform_below_the_minimum_tcb_is_told_to_update_firmware() {
    let vm = Cvm::new(TestSigner::generate());
    let tcb = vm.signer.tcb();
    let broker = broker(&vm.signer, policy(tcb.snp + 1));
    let answer = refused_with(&broker, &vm, 1, |_, _| {});
    assert_refused(&answer, 403, "snp_tcb_too_low");
    assert!(answer.1["reason"].as_str().unwrap().contains("update the host firmware"), "{}", answer.1);
}

/// Two guests on one chip are two VMs: each has its own SPIFFE ID (from CHIP_ID and the
/// REPORT_ID the firmware drew at its launch), kept across its renewals.
#[test]
fn two_guests_on_one_chip_get_their_own_identities() {
    let vm = Cvm::new(TestSigner::generate());
    let tcb = vm.signer.tcb();
    let broker = broker(&vm.signer, policy(tcb.snp));
    let client = broker.client(loopback(1));
    let attest_as = |report_id: [u8; 32]| -> IssuedCredentials {
        let challenge = begin(&broker, &client);
        let mut fields = vm.fields(&challenge);
        fields.report_id = report_id;
        let (status, body) = broker.post(&client, "snp/finish", &vm.finish_request(&challenge, &fields));
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    };
    let first = attest_as([1; 32]);
    let renewed = attest_as([1; 32]);
    let second = attest_as([2; 32]);
    assert_eq!(first.spiffe_id, renewed.spiffe_id, "a guest keeps its identity across renewals");
    assert_ne!(first.spiffe_id, second.spiffe_id, "another guest on the same chip is another VM");
    let vms: Vec<Value> = broker.admin().get(broker.url("admin/vms")).send().unwrap().json().unwrap();
    let ids: std::collections::BTreeSet<&str> = vms.iter().filter_map(|v| v["spiffe_id"].as_str()).collect();
    assert!(ids.contains(first.spiffe_id.as_str()) && ids.contains(second.spiffe_id.as_str()), "{vms:?}");
}

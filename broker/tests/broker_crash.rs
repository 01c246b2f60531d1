//! Crash guarantee of the sled store: kill -9 the broker while finishes stream in,
//! restart it, and check that no challenge was accepted twice and that every credential
//! a client received has its audit record in an intact chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};

use common::vm::Vm;
use common::{accept, loopback, replay_all_accepting_each_once_and_audited, Accepted, Broker, BrokerSetup};
use mooring_attestation::protocol::{TpmChallenge, TpmFinishRequest};
use mooring_attestation::x509::bundle::parse_one_certificate;
use mooring_tests::SwtpmOptions;

const CHALLENGES: usize = 16;

/// A broker that admits `vm` (its EK issuer, PCR 7 all zeros) on the embedded store.
fn admitting(vm: &Vm) -> BrokerSetup {
    let issuer = parse_one_certificate(&vm.ek_certificate()).unwrap().issuer().to_owned();
    let policy = format!(
        "version = 1\n[[class]]\nname = \"web\"\nevidence = \"tpm\"\nttl_seconds = 600\nnetworks = [\"127.0.0.0/8\"]\n\
         [class.match]\nek_issuers = [{issuer:?}]\n[class.tpm]\npcr_bank = \"sha256\"\npcrs = [7]\n\
         [class.tpm.pcr_values]\n7 = [\"{}\"]\n",
        "00".repeat(32)
    );
    BrokerSetup {
        policy,
        ek_roots: vm.tpm.ek_cert_ca_files().all().iter().map(|p| p.to_path_buf()).collect(),
        extra_config: String::new(),
        secrets: Vec::new(),
    }
}

#[test]
fn kill_9_during_attestations_loses_no_audit_record_and_accepts_no_challenge_twice() {
    let Some(vm) = Vm::start("broker_crash", SwtpmOptions::default()) else { return };
    let mut broker = Broker::start(&admitting(&vm));

    // Evidence for many challenges, prepared before the stream starts.
    let client = broker.client(loopback(1));
    let requests: Vec<TpmFinishRequest> = (0..CHALLENGES)
        .map(|_| {
            let (status, body) = broker.post(&client, "tpm/begin", &vm.begin_request());
            assert_eq!(status, 200, "{body}");
            let challenge: TpmChallenge = serde_json::from_value(body).unwrap();
            vm.finish_request(&challenge)
        })
        .collect();

    // Stream the finishes from four threads; kill -9 after the first answers arrive.
    let accepted: Arc<Mutex<Accepted>> = Arc::default();
    let url = broker.url("tpm/finish");
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = requests
        .chunks(CHALLENGES / 4)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let client = client.clone();
            let url = url.clone();
            let accepted = Arc::clone(&accepted);
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                for request in chunk {
                    if let Ok(response) = client.post(&url).json(&request).send() {
                        if response.status().as_u16() == 200 {
                            let body: serde_json::Value = response.json().unwrap();
                            accept(&mut accepted.lock().unwrap(), &request.challenge_id, &body);
                        }
                        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    broker.kill_9();
    for thread in threads {
        thread.join().unwrap();
    }
    let before_crash = accepted.lock().unwrap().len();
    assert!((1..CHALLENGES).contains(&before_crash), "the kill landed mid-stream ({before_crash} accepted)");

    // Restart on the same store and replay every finish: the embedded store holds
    // challenges in memory, so the restarted broker knows none of them and accepts none.
    broker.restart();
    let before_replay = accepted.lock().unwrap().clone();
    // Every credential a client received has its audit record; the chain is intact.
    replay_all_accepting_each_once_and_audited(
        &broker,
        &requests,
        &mut accepted.lock().unwrap(),
        "challenge_unknown",
    );
    assert_eq!(*accepted.lock().unwrap(), before_replay, "a challenge begun before the crash was accepted");
    let verified = broker.audit_verify();
    assert_eq!(verified["valid"], true, "{verified}");
}

/// `mooring-broker audit verify` on a stopped broker finds a modified and a removed record.
#[test]
fn audit_verify_detects_a_modified_or_removed_record() {
    let Some(vm) = Vm::start("broker_audit_verify", SwtpmOptions::default()) else { return };
    let mut broker = Broker::start(&BrokerSetup {
        policy: "version = 1\n".into(),
        ek_roots: vm.tpm.ek_cert_ca_files().all().iter().map(|p| p.to_path_buf()).collect(),
        extra_config: String::new(),
        secrets: Vec::new(),
    });
    // Three refusals (no class admits anything) make three records.
    for _ in 0..3 {
        let (status, _) = broker.post(&broker.client(loopback(1)), "tpm/begin", &vm.begin_request());
        assert_eq!(status, 403);
    }
    broker.kill_9();
    let verify = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mooring-broker"))
            .args(["audit", "verify", "--config"])
            .arg(broker.config_path())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (code, text) = verify();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 records"), "{text}");

    let edit = |f: &dyn Fn(&sled::Tree)| {
        let db = sled::open(broker.data_dir().join("store")).unwrap();
        f(&db.open_tree("audit").unwrap());
        db.flush().unwrap();
    };
    edit(&|tree| {
        let key = 2u64.to_be_bytes();
        let text = String::from_utf8(tree.get(key).unwrap().unwrap().to_vec()).unwrap();
        tree.insert(key, text.replace("no TPM class", "some TPM class").into_bytes()).unwrap();
    });
    let (code, text) = verify();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("record 2 was modified"), "{text}");

    edit(&|tree| {
        tree.remove(2u64.to_be_bytes()).unwrap();
    });
    let (code, text) = verify();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("record 3 follows record 1"), "{text}");
}

/// systemd stops a service with SIGTERM: a broker on the embedded store that has served
/// attestations exits 0, and its audit chain is intact when it starts again.
#[test]
fn sigterm_stops_the_broker_cleanly_and_the_chain_holds() {
    let Some(vm) = Vm::start("broker_sigterm", SwtpmOptions::default()) else { return };
    let mut broker = Broker::start(&admitting(&vm));
    common::attest(&broker, &vm);
    let exit =
        broker.terminate(std::time::Duration::from_secs(15)).expect("still running 15 s after SIGTERM");
    assert!(exit.success(), "SIGTERM: {exit}");
    broker.restart();
    let verified = broker.audit_verify();
    assert_eq!(verified["valid"], true, "{verified}");
}

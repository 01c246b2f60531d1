//! Several broker processes on one real PostgreSQL server (started by the test, no mocks):
//! challenges cross replicas and are accepted once across all of them, revocations and
//! blocks reach every replica's verify API at once, credentials from any replica verify
//! on every other, and killing a replica mid-load loses no audit record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::vm::Vm;
use common::{
    accept, admitting, assert_refused, audit_verify_cli, b64, begin, loopback, now,
    replay_all_accepting_each_once_and_audited, verify_jwt, Accepted, Broker, BrokerSetup,
};
use mooring_attestation::protocol::{IssuedCredentials, TpmChallenge, TpmFinishRequest};
use mooring_tests::{Postgres, SwtpmOptions};
use serde_json::{json, Value};

/// Brokers for `vm` on `postgres`: the first generates the TLS material, the others
/// serve the same certificate (as replicas behind one name do).
fn replicas(vm: &Vm, postgres: &Postgres, count: usize) -> Vec<Broker> {
    // No refusal summaries while the audit log is counted below.
    let setup =
        admitting(vm, format!("{}\n[audit]\nsummary_seconds = 3600\n", postgres.broker_config().unwrap()));
    let first = Broker::start(&setup);
    let mut all: Vec<Broker> = (1..count).map(|_| Broker::start_replica(&setup, &first)).collect();
    all.insert(0, first);
    all
}

#[test]
fn challenges_cross_replicas_once_and_revocations_reach_every_replica() {
    let Some(vm) = Vm::start("broker_replicas", SwtpmOptions::default()) else { return };
    let Some(postgres) = Postgres::start_or_skip("broker_replicas") else { return };
    let brokers = replicas(&vm, &postgres, 3);

    // One signing key generation for all: every replica publishes the same bundle, with the
    // same spiffe_sequence.
    let bundles: Vec<Value> = brokers
        .iter()
        .map(|b| b.client(loopback(1)).get(b.url("bundle")).send().unwrap().json::<Value>().unwrap())
        .collect();
    assert!(bundles[0]["spiffe_sequence"].as_u64().is_some(), "{}", bundles[0]);
    assert_eq!(bundles[0], bundles[1]);
    assert_eq!(bundles[0], bundles[2]);

    // Begun on replica 1, finished on replica 2.
    let challenge = begin(&brokers[0], &vm, 1);
    let (status, body) =
        brokers[1].post(&brokers[1].client(loopback(1)), "tpm/finish", &vm.finish_request(&challenge));
    assert_eq!(status, 200, "{body}");
    let issued: IssuedCredentials = serde_json::from_value(body).unwrap();
    // The same finish again, on the replica that began it: used.
    let replay =
        brokers[0].post(&brokers[0].client(loopback(1)), "tpm/finish", &vm.finish_request(&challenge));
    assert_refused(&replay, 409, "challenge_used");

    // Issued by replica 2, good on every replica's verify API.
    for broker in &brokers {
        assert_eq!(verify_jwt(broker, &vm, &issued.jwt_svid)["valid"], true);
    }
    // One possession statement, presented to one replica and replayed to another: refused.
    let (statement, signature) = vm.prove_possession("payments", now());
    let present = |broker: &Broker| {
        broker
            .post(
                &broker.client(loopback(1)),
                "credentials/verify",
                &json!({
                    "credential": {"type": "jwt", "token": issued.jwt_svid},
                    "peer_address": loopback(1),
                    "audience": "payments",
                    "proof": {"type": "signature", "statement": b64(&statement), "signature": b64(&signature)},
                }),
            )
            .1
    };
    assert_eq!(present(&brokers[0])["valid"], true);
    assert_eq!(present(&brokers[1])["code"], "proof_replayed");

    // One finish replayed concurrently against all replicas: accepted exactly once.
    let challenge = begin(&brokers[2], &vm, 1);
    let request = vm.finish_request(&challenge);
    let attempts = 3 * brokers.len();
    let barrier = Arc::new(Barrier::new(attempts));
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..attempts)
            .map(|i| {
                let broker = &brokers[i % brokers.len()];
                let client = broker.client(loopback(1));
                let (barrier, request) = (Arc::clone(&barrier), &request);
                scope.spawn(move || {
                    barrier.wait();
                    broker.post(&client, "tpm/finish", request)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(accepted, 1, "{answers:?}");
    for answer in answers.iter().filter(|(status, _)| *status != 200) {
        assert_refused(answer, 409, "challenge_used");
    }

    // A block made on replica 2 and a revocation made on replica 1 are refused at once
    // by the other replicas' verify APIs.
    let hardware_id = verify_jwt(&brokers[2], &vm, &issued.jwt_svid)["claims"]["hardware_id"].clone();
    let set_status = |broker: &Broker, status: &str| {
        broker.admin_post(
            "admin/identities",
            &json!({"identity": {"kind": "ek", "id": hardware_id}, "status": status}),
        );
    };
    set_status(&brokers[1], "blocked");
    assert_eq!(verify_jwt(&brokers[0], &vm, &issued.jwt_svid)["code"], "vm_blocked");
    assert_eq!(verify_jwt(&brokers[2], &vm, &issued.jwt_svid)["code"], "vm_blocked");
    set_status(&brokers[1], "enrolled");
    assert_eq!(verify_jwt(&brokers[2], &vm, &issued.jwt_svid)["valid"], true);
    brokers[0].admin_post(
        "admin/revocations",
        &json!({"target": {"kind": "credential", "id": issued.x509_serial}, "reason": "replica drill"}),
    );
    for broker in &brokers[1..] {
        let answer = verify_jwt(broker, &vm, &issued.jwt_svid);
        assert_eq!(answer["code"], "revoked", "{answer}");
        assert!(answer["reason"].as_str().unwrap().contains("replica drill"), "{answer}");
    }

    // One audit chain, whichever replica wrote each record; it verifies through every
    // replica and with the CLI, while they run.
    let audit = brokers[2].audit();
    let issued_records = audit.iter().filter(|r| r["code"] == "issued").count();
    assert_eq!(issued_records, 2, "two credentials issued across the replicas");
    for broker in &brokers {
        let verified = broker.audit_verify();
        assert_eq!(verified["valid"], true, "{verified}");
    }
    let (code, text) = audit_verify_cli(&brokers[0]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("{} records", audit.len())), "{text}");

    // A modified record is found by the CLI (the database is shared, so is tampering).
    postgres.psql("UPDATE audit SET record = replace(record, 'replica drill', 'other drill') WHERE record LIKE '%replica drill%'").unwrap();
    let (code, text) = audit_verify_cli(&brokers[1]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("was modified"), "{text}");
}

const CHALLENGES: usize = 16;

#[test]
fn killing_a_replica_mid_load_loses_no_audit_record_and_the_other_keeps_serving() {
    let Some(vm) = Vm::start("broker_replicas_kill", SwtpmOptions::default()) else { return };
    let Some(postgres) = Postgres::start_or_skip("broker_replicas_kill") else { return };
    let mut brokers = replicas(&vm, &postgres, 2);

    // Evidence for many challenges, begun on both replicas, prepared before the load.
    let requests: Vec<TpmFinishRequest> =
        (0..CHALLENGES).map(|i| vm.finish_request(&begin(&brokers[i % 2], &vm, 1))).collect();

    // Four threads send finishes, alternating between the replicas; replica 1 is killed
    // with SIGKILL once a few answers are in. A finish that replica 1 does not answer is
    // sent to replica 2, as a load balancer would retry it.
    let urls: Vec<String> = brokers.iter().map(|b| b.url("tpm/finish")).collect();
    let clients: Vec<_> = brokers.iter().map(|b| b.client(loopback(1))).collect();
    let accepted: Arc<Mutex<Accepted>> = Arc::default();
    let retried: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let chunk: Vec<(usize, TpmFinishRequest)> =
                requests.iter().cloned().enumerate().skip(t).step_by(4).collect();
            let (urls, clients) = (urls.clone(), clients.clone());
            let (accepted, retried, answered) =
                (Arc::clone(&accepted), Arc::clone(&retried), Arc::clone(&answered));
            std::thread::spawn(move || {
                for (i, request) in chunk {
                    let target = (i / 4 + t) % 2;
                    let record =
                        |body: Value| accept(&mut accepted.lock().unwrap(), &request.challenge_id, &body);
                    match clients[target].post(&urls[target]).json(&request).send() {
                        Ok(response) => {
                            if response.status().as_u16() == 200 {
                                record(response.json().unwrap());
                            }
                        }
                        Err(_) => {
                            // Replica 1 is gone: the other one answers.
                            assert_eq!(target, 0, "replica 2 failed a request");
                            let response = clients[1].post(&urls[1]).json(&request).send().unwrap();
                            let status = response.status().as_u16();
                            let body: Value = response.json().unwrap();
                            if status == 200 {
                                record(body.clone());
                            }
                            retried.lock().unwrap().push((status, body));
                        }
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    while answered.load(Ordering::SeqCst) < 3 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    brokers[0].kill_9();
    for thread in threads {
        thread.join().unwrap();
    }
    let accepted_during_load = accepted.lock().unwrap().len();
    assert!(accepted_during_load >= 3, "{accepted_during_load} accepted");
    // Retried finishes were answered by replica 2: issued, or refused as used because
    // replica 1 consumed the challenge before it died.
    for answer in retried.lock().unwrap().iter().filter(|(status, _)| *status != 200) {
        assert_refused(answer, 409, "challenge_used");
    }

    // Every finish replayed on the surviving replica: none is accepted a second time.
    let survivor = &brokers[1];
    // Every credential a client received has its audit record in one intact chain.
    replay_all_accepting_each_once_and_audited(
        survivor,
        &requests,
        &mut accepted.lock().unwrap(),
        "challenge_used",
    );
    let verified = survivor.audit_verify();
    assert_eq!(verified["valid"], true, "{verified}");

    // The killed replica comes back on the same database and agrees.
    brokers[0].restart();
    let verified = brokers[0].audit_verify();
    assert_eq!(verified["valid"], true, "{verified}");
    let (code, text) = audit_verify_cli(&brokers[0]);
    assert_eq!(code, Some(0), "{text}");
}

/// systemd stops a service with SIGTERM: a replica that has served attestations (its
/// connection pool open) finishes and exits 0, within the drain time.
#[test]
fn a_replica_on_postgres_stops_on_sigterm_with_exit_0() {
    let Some(vm) = Vm::start("broker_replicas_sigterm", SwtpmOptions::default()) else { return };
    let Some(postgres) = Postgres::start_or_skip("broker_replicas_sigterm") else { return };
    let mut brokers = replicas(&vm, &postgres, 1);
    let broker = &mut brokers[0];
    let (status, body) =
        broker.post(&broker.client(loopback(1)), "tpm/finish", &vm.finish_request(&begin(broker, &vm, 1)));
    assert_eq!(status, 200, "{body}");
    let exit = broker.terminate(Duration::from_secs(15)).expect("still running 15 s after SIGTERM");
    assert!(exit.success(), "SIGTERM: {exit}");
}

/// Many decisions at once on two replicas (administrators enrolling and blocking from
/// eight threads): each replica commits them in groups, and the result is one chain,
/// intact through either replica and the CLI, with the record of every decision.
#[test]
fn concurrent_decisions_on_two_replicas_make_one_intact_chain_with_every_record() {
    let Some(postgres) = Postgres::start_or_skip("broker_replicas_group_commit") else { return };
    let setup = BrokerSetup {
        policy: "version = 1\n".into(),
        ek_roots: Vec::new(),
        extra_config: format!("{}\n[audit]\nsummary_seconds = 3600\n", postgres.broker_config().unwrap()),
        secrets: Vec::new(),
    };
    let first = Broker::start(&setup);
    let brokers = [Broker::start_replica(&setup, &first), first];
    let (threads, each) = (8, 20);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let broker = &brokers[t % 2];
            scope.spawn(move || {
                let admin = broker.admin();
                for i in 0..each {
                    let status = if i % 2 == 0 { "enrolled" } else { "blocked" };
                    let body = json!({"identity": {"kind": "ek", "id": format!("{t:02x}{i:02x}")}, "status": status});
                    let (code, answer) = broker.post(&admin, "admin/identities", &body);
                    assert_eq!(code, 200, "{answer}");
                }
            });
        }
    });
    let audit = brokers[1].audit();
    let recorded: std::collections::BTreeSet<&str> =
        audit.iter().filter_map(|record| record["hardware_id"].as_str()).collect();
    for t in 0..threads {
        for i in 0..each {
            assert!(recorded.contains(format!("{t:02x}{i:02x}").as_str()), "decision {t}/{i} has no record");
        }
    }
    assert_eq!(audit.len(), threads * each, "one record per decision, nothing else");
    for broker in &brokers {
        let verified = broker.audit_verify();
        assert_eq!(verified["valid"], true, "{verified}");
    }
    let (code, text) = audit_verify_cli(&brokers[0]);
    assert_eq!(code, Some(0), "{text}");
}

/// `begin` writes nothing to the database: the challenge is sealed into its id, and single
/// use is decided when it is finished. Many begins on both replicas leave every table and
/// the write-ahead log as they were; the finish of one of them writes (so the check sees
/// writes).
#[test]
fn begins_on_replicas_write_nothing_to_the_database() {
    let Some(vm) = Vm::start("broker_replicas_begin", SwtpmOptions::default()) else { return };
    let Some(postgres) = Postgres::start_or_skip("broker_replicas_begin") else { return };
    let brokers = replicas(&vm, &postgres, 2);
    let state = || {
        postgres
            .psql(
                "SELECT (SELECT count(*) FROM used_challenges), (SELECT count(*) FROM audit), \
                 (SELECT count(*) FROM credentials), (SELECT count(*) FROM vms), \
                 (SELECT count(*) FROM identities), (SELECT count(*) FROM revocations), \
                 (SELECT count(*) FROM signing_keys), (SELECT seq FROM audit_head), pg_current_wal_insert_lsn()",
            )
            .unwrap()
    };
    let before = state();
    let challenges: Vec<TpmChallenge> = (0..20).map(|i| begin(&brokers[i % 2], &vm, 1)).collect();
    assert_eq!(state(), before, "begin wrote to the database");
    let (status, body) =
        brokers[1].post(&brokers[1].client(loopback(1)), "tpm/finish", &vm.finish_request(&challenges[0]));
    assert_eq!(status, 200, "{body}");
    let after: Vec<String> = state().trim().split('|').map(str::to_owned).collect();
    let before: Vec<String> = before.trim().split('|').map(str::to_owned).collect();
    assert_eq!((after[0].as_str(), after[2].as_str()), ("1", "1"), "the finish was recorded: {after:?}");
    assert_ne!(after[8], before[8], "the finish moved the write-ahead log");
}

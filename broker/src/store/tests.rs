//! One set of checks every `Store` must pass, run on sled and on a real PostgreSQL server
//! (two connections pools standing for two replicas), plus PostgreSQL's own: settings
//! refused, migrations, shared signing keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mooring_attestation::protocol::{HardwareId, IdentityStatus};
use std::path::Path;
use std::sync::{Arc, Barrier};

use super::*;
use crate::audit::{verify_chain, Action, Outcome};
use crate::config::PostgresConfig;
use crate::issuer::keys::KeySet;
use crate::records::{BootCounters, CredentialRecord};

/// Finished challenges the embedded store remembers in these tests.
const MAX_USED: usize = 1000;

fn event(code: &str) -> AuditEvent {
    AuditEvent::new(1_800_000_000, Action::Admin, Outcome::Accepted, code, "test")
}

fn credential(serial: &str, spiffe_id: &str) -> CredentialRecord {
    CredentialRecord {
        serial: serial.into(),
        hardware_id: HardwareId::Ek("ab".repeat(32)),
        spiffe_id: spiffe_id.into(),
        class: "web".into(),
        bound_address: "127.0.0.1".parse().unwrap(),
        issued_at: 100,
        expires_at: 700,
        boot: Some(BootCounters { reset_count: 3, restart_count: 0 }),
        tpm_clock: Some(5000),
    }
}

/// Runs `write` on `store` and waits until what it wrote is durable (and so read by every
/// handle), as the broker waits before it answers.
fn durably(store: &Arc<dyn Store>, write: impl FnOnce(&dyn Store) -> Result<(), StoreError>) {
    settle(store, store.mark(), write(&**store));
}

/// Waits for `store`'s writes since `since`; `written` is what the write itself returned.
fn settle(store: &Arc<dyn Store>, since: WriteMark, written: Result<(), StoreError>) {
    written.unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(store.durable(since)).unwrap();
}

/// The checks, on `stores` (several handles on one backend, as replicas are).
fn conformance(stores: &[Arc<dyn Store>]) {
    let (a, b) = (&stores[0], &stores[stores.len() - 1]);

    // Single use, across handles.
    assert_eq!(a.use_once("c1", 500).unwrap(), Consumed::First);
    assert_eq!(b.use_once("c1", 500).unwrap(), Consumed::AlreadyUsed);
    assert_eq!(a.use_once("c1", 500).unwrap(), Consumed::AlreadyUsed);

    // Many concurrent consumers of one challenge: exactly one gets it.
    let racers = 8;
    let barrier = Arc::new(Barrier::new(racers));
    let first = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..racers)
            .map(|i| {
                let (store, barrier) = (Arc::clone(&stores[i % stores.len()]), Arc::clone(&barrier));
                scope.spawn(move || {
                    barrier.wait();
                    store.use_once("c2", 500).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).filter(|c| *c == Consumed::First).count()
    });
    assert_eq!(first, 1);

    // Pruning forgets used challenges that expired (they can no longer be presented).
    assert_eq!(a.use_once("c3", 900).unwrap(), Consumed::First);
    assert_eq!(a.prune_used(600).unwrap(), 2);
    assert_eq!(b.use_once("c3", 900).unwrap(), Consumed::AlreadyUsed);

    // Credentials, VMs, enrollment, revocations: written on one handle, read on another.
    let hardware = HardwareId::Ek("ab".repeat(32));
    durably(a, |a| a.issue(&credential("01", "spiffe://t/vm/web/ab"), event("issued")));
    assert_eq!(b.credential("01").unwrap(), Some(credential("01", "spiffe://t/vm/web/ab")));
    assert_eq!(b.credential("02").unwrap(), None);
    // The VM record keeps the live credentials of its boot: a renewal adds to them, a
    // newer boot starts again.
    let key = vm_key(&HardwareId::Ek("ab".repeat(32)), "spiffe://t/vm/web/ab");
    let renewal = CredentialRecord {
        serial: "02".into(),
        issued_at: 400,
        expires_at: 1000,
        ..credential("02", "spiffe://t/vm/web/ab")
    };
    durably(a, |a| a.issue(&renewal, event("issued")));
    let live: Vec<String> = b.vm(&key).unwrap().unwrap().live.into_iter().map(|l| l.serial).collect();
    assert_eq!(live, ["01", "02"]);
    let rebooted = CredentialRecord {
        boot: Some(BootCounters { reset_count: 4, restart_count: 0 }),
        ..credential("03", "spiffe://t/vm/web/ab")
    };
    durably(a, |a| a.issue(&rebooted, event("issued")));
    let vm = b.vm(&key).unwrap().unwrap();
    assert_eq!(vm.boot, Some(BootCounters { reset_count: 4, restart_count: 0 }));
    assert_eq!(vm.live.iter().map(|l| l.serial.as_str()).collect::<Vec<_>>(), ["03"]);
    assert_eq!(b.identity_status(&hardware).unwrap(), None);
    durably(a, |a| a.set_identity_status(&hardware, IdentityStatus::Blocked, event("blocked")));
    assert_eq!(b.identity_status(&hardware).unwrap(), Some(IdentityStatus::Blocked));
    assert_eq!(b.revocation_for("01", "spiffe://t/vm/web/ab").unwrap(), None);
    let vm_revocation = Revocation {
        target: RevocationTarget::Vm("spiffe://t/vm/web/ab".into()),
        revoked_at: 5,
        reason: "vm".into(),
        code: mooring_attestation::protocol::RevocationCode::Revoked,
    };
    let credential_revocation = Revocation {
        target: RevocationTarget::Credential("01".into()),
        revoked_at: 6,
        reason: "one".into(),
        code: mooring_attestation::protocol::RevocationCode::Retired,
    };
    durably(a, |a| {
        a.revoke(&vm_revocation, event("revoked"))?;
        a.revoke(&credential_revocation, event("revoked"))
    });
    assert_eq!(b.revocation_for("01", "spiffe://t/vm/web/ab").unwrap(), Some(credential_revocation.clone()));
    assert_eq!(b.revocation_for("09", "spiffe://t/vm/web/ab").unwrap(), Some(vm_revocation.clone()));
    assert_eq!(b.revocations().unwrap(), vec![credential_revocation, vm_revocation]);
    let vms = b.vms().unwrap();
    assert_eq!(vms.len(), 1);
    assert_eq!(
        (vms[0].status, vms[0].revoked, vms[0].last_serial.as_str()),
        (Some(IdentityStatus::Blocked), true, "03")
    );

    // One audit chain, appended from every handle at once.
    let appenders = 8;
    std::thread::scope(|scope| {
        for i in 0..appenders {
            let store = Arc::clone(&stores[i % stores.len()]);
            scope.spawn(move || {
                for _ in 0..5 {
                    durably(&store, |store| store.audit(event("concurrent")));
                }
            });
        }
    });
    let head = b.audit_head().unwrap();
    // Three issuances, one block and two revocations before, then the concurrent ones.
    let expected = 6 + 5 * u64::try_from(appenders).unwrap();
    assert_eq!(head.seq, expected);
    assert_eq!(verify_chain(a.audit_scan(head.seq), head).unwrap().records, expected);
    // A scan stops at the head it was asked for, whatever was appended since.
    durably(a, |a| a.audit(event("later")));
    assert_eq!(verify_chain(b.audit_scan(head.seq), head).unwrap().records, expected);
    let page = b.audit_records(3, 2).unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(b.audit_records(expected, 10).unwrap().len(), 1);
}

#[test]
fn sled_passes_the_store_checks() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), MAX_USED).unwrap());
    conformance(&[store]);
}

/// What a crash between an audit record and its head leaves: the record past the stored
/// head. Reopening takes it if it chains, and refuses to open if it does not.
#[test]
fn sled_recovers_records_written_past_the_head_and_refuses_ones_that_do_not_chain() {
    let dir = tempfile::tempdir().unwrap();
    let head = {
        let store = SledStore::open(dir.path(), MAX_USED).unwrap();
        store.audit(event("first")).unwrap();
        store.audit_head().unwrap()
    };
    let write_past_head = |event: AuditEvent, from: ChainHead| {
        let db = ::sled::open(dir.path()).unwrap();
        let (record, next) = from.append(event);
        let value = codec::encode(&record).unwrap().into_bytes();
        db.open_tree("audit").unwrap().insert(record.seq.to_be_bytes(), value).unwrap();
        db.flush().unwrap();
        next
    };
    let next = write_past_head(event("second"), head);
    {
        let store = SledStore::open(dir.path(), MAX_USED).unwrap();
        assert_eq!(store.audit_head().unwrap(), next);
        assert_eq!(verify_chain(store.audit_scan(next.seq), next).unwrap().records, 2);
    }
    // A record past the head that links to nothing.
    write_past_head(event("forged"), ChainHead { seq: next.seq, hash: [9; 32] });
    let refused = SledStore::open(dir.path(), MAX_USED).unwrap_err();
    assert!(
        matches!(&refused, StoreError::Corrupt { key, reason } if key == "audit record 3" && reason.contains("does not link")),
        "{refused}"
    );
}

fn settings(postgres: &mooring_tests::Postgres, dir: &Path) -> PostgresConfig {
    let kek = dir.join("kek");
    if !kek.exists() {
        std::fs::write(&kek, "11".repeat(32)).unwrap();
        std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    PostgresConfig {
        url: postgres.url(),
        password_file: Some(postgres.password_file()),
        password_env: None,
        pool_size: 4,
        key_encryption_key_file: kek,
    }
}

#[test]
fn postgres_passes_the_store_checks_across_replicas() {
    let Some(postgres) = mooring_tests::Postgres::start_or_skip("postgres_store_checks") else { return };
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&postgres, dir.path());
    let replicas: Vec<Arc<dyn Store>> =
        (0..2).map(|_| Arc::new(PgStore::connect(&settings).unwrap()) as Arc<dyn Store>).collect();
    conformance(&replicas);
}

#[test]
fn postgres_settings_that_would_leak_or_mismatch_are_refused() {
    let Some(postgres) = mooring_tests::Postgres::start_or_skip("postgres_settings") else { return };
    let dir = tempfile::tempdir().unwrap();
    let good = settings(&postgres, dir.path());
    let refused = |settings: &PostgresConfig| PgStore::connect(settings).unwrap_err().to_string();

    let mut with_password = good.clone();
    with_password.url = format!("{} password=hunter2", good.url);
    let message = refused(&with_password);
    assert!(message.contains("holds a password") && !message.contains("hunter2"), "{message}");

    let open_kek = dir.path().join("open-kek");
    std::fs::write(&open_kek, "22".repeat(32)).unwrap();
    std::fs::set_permissions(&open_kek, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let message = refused(&PostgresConfig { key_encryption_key_file: open_kek.clone(), ..good.clone() });
    assert!(message.contains("chmod 600"), "{message}");

    let mut no_password = good.clone();
    no_password.password_file = None;
    assert!(refused(&no_password).contains("connecting to PostgreSQL"));

    // Migrating twice is a no-op; a schema from a newer broker is refused.
    PgStore::connect(&good).unwrap();
    PgStore::connect(&good).unwrap();
    postgres.psql("INSERT INTO mooring_schema (version) VALUES (999)").unwrap();
    assert!(refused(&good).contains("newer than this broker"));
    postgres.psql("DELETE FROM mooring_schema WHERE version = 999").unwrap();

    // Signing keys sealed under one key-encryption key do not open under another.
    let store: Arc<dyn KeyVault> = Arc::new(PgStore::connect(&good).unwrap());
    KeySet::open(Arc::clone(&store), "test", 24, 1_800_000_000).unwrap();
    std::fs::set_permissions(&open_kek, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let other: Arc<dyn KeyVault> =
        Arc::new(PgStore::connect(&PostgresConfig { key_encryption_key_file: open_kek, ..good }).unwrap());
    let message = format!("{:#}", KeySet::open(other, "test", 24, 1_800_000_000).unwrap_err());
    assert!(message.contains("does not decrypt"), "{message}");
    let sealed = postgres.psql("SELECT encode(sealed_jwt_key, 'hex') FROM signing_keys").unwrap();
    assert!(sealed.trim().len() > 64, "the JWT key is stored sealed: {sealed}");
}

#[test]
fn replicas_share_one_signing_key_generation_and_rotate_to_the_same_next_one() {
    let Some(postgres) = mooring_tests::Postgres::start_or_skip("postgres_shared_keys") else { return };
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&postgres, dir.path());
    let now = 1_800_000_000;
    let vault = || Arc::new(PgStore::connect(&settings).unwrap()) as Arc<dyn KeyVault>;
    // Three replicas starting at once on an empty database: one generation is made.
    let sets: Vec<KeySet> = std::thread::scope(|scope| {
        let threads: Vec<_> =
            (0..3).map(|_| scope.spawn(|| KeySet::open(vault(), "test", 24, now).unwrap())).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let kid = sets[0].current(now).unwrap().kid.clone();
    assert!(sets.iter().all(|set| set.current(now).unwrap().kid == kid));

    // Rotation due on all of them at once: they agree on one new generation.
    let later = now + 24 * 3600 + 1;
    let rotated: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> =
            sets.iter().map(|set| scope.spawn(move || set.current(later).unwrap().kid.clone())).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_ne!(rotated[0], kid);
    assert!(rotated.iter().all(|k| *k == rotated[0]), "{rotated:?}");
    assert_eq!(sets[2].all(later).len(), 2, "the old generation stays for verification");
    let stored = postgres.psql("SELECT count(*) FROM signing_keys").unwrap();
    assert_eq!(stored.trim(), "2");
}

/// Many decisions at once on two replicas: each replica's group commit writes several per
/// transaction, and the result is one chain, intact, with every decision's record and
/// effect in it.
#[test]
fn postgres_replicas_commit_concurrent_decisions_in_groups_into_one_intact_chain() {
    let Some(postgres) = mooring_tests::Postgres::start_or_skip("postgres_group_commit") else { return };
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&postgres, dir.path());
    let pg: Vec<Arc<PgStore>> = (0..2).map(|_| Arc::new(PgStore::connect(&settings).unwrap())).collect();
    let replicas: Vec<Arc<dyn Store>> = pg.iter().map(|s| Arc::clone(s) as Arc<dyn Store>).collect();
    let (threads, each) = (16, 25);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = Arc::clone(&replicas[t % 2]);
            scope.spawn(move || {
                for i in 0..each {
                    let serial = format!("{t:02x}{i:02x}");
                    let since = store.mark();
                    let written = match i % 3 {
                        0 => store.issue(
                            &credential(&serial, &format!("spiffe://t/vm/web/{serial}")),
                            event(&serial),
                        ),
                        1 => store.set_identity_status(
                            &HardwareId::Ek(serial.clone()),
                            IdentityStatus::Enrolled,
                            event(&serial),
                        ),
                        _ => store.audit(event(&serial)),
                    };
                    settle(&store, since, written);
                }
            });
        }
    });
    let decisions = u64::try_from(threads * each).unwrap();
    let head = replicas[0].audit_head().unwrap();
    assert_eq!(head.seq, decisions);
    assert_eq!(verify_chain(replicas[1].audit_scan(head.seq), head).unwrap().records, decisions);
    let codes: std::collections::BTreeSet<String> =
        replicas[1].audit_records(0, 10_000).unwrap().into_iter().map(|r| r.event.code).collect();
    for t in 0..threads {
        for i in 0..each {
            let serial = format!("{t:02x}{i:02x}");
            assert!(codes.contains(&serial), "no record of decision {serial}");
            match i % 3 {
                0 => {
                    assert!(replicas[0].credential(&serial).unwrap().is_some(), "credential {serial} missing")
                }
                1 => assert_eq!(
                    replicas[0].identity_status(&HardwareId::Ek(serial.clone())).unwrap(),
                    Some(IdentityStatus::Enrolled)
                ),
                _ => {}
            }
        }
    }
    // Grouped: fewer commits than decisions.
    let passes: u64 = pg.iter().map(|store| store.commits()).sum();
    assert!(passes < decisions, "{passes} commits for {decisions} decisions");
}

/// A decision that cannot be written fails its own answer only: a VM record that does not
/// read (left out of its group), and a value the server refuses (the group is retried one
/// decision at a time). The chain stays intact and holds the others.
#[test]
fn postgres_a_decision_that_cannot_be_written_fails_alone() {
    let Some(postgres) = mooring_tests::Postgres::start_or_skip("postgres_write_fails_alone") else { return };
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&settings(&postgres, dir.path())).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let wait = |since| runtime.block_on(store.durable(since));

    durably(&store, |s| s.issue(&credential("01", "spiffe://t/vm/web/ab"), event("issued")));
    postgres.psql("UPDATE vms SET record = 'not json'").unwrap();
    let before = store.mark();
    store.issue(&credential("02", "spiffe://t/vm/web/ab"), event("issued")).unwrap();
    let refused = wait(before).unwrap_err().to_string();
    assert!(refused.contains("unreadable"), "{refused}");
    assert_eq!(store.credential("02").unwrap(), None, "left out with its record");

    // The server refuses a NUL in text; sent with a good decision before and after it.
    let first = store.mark();
    store.audit(event("kept before")).unwrap();
    let bad = store.mark();
    let nul = Revocation {
        target: RevocationTarget::Credential("0\u{0}1".into()),
        revoked_at: 5,
        reason: "nul".into(),
        code: mooring_attestation::protocol::RevocationCode::Revoked,
    };
    store.revoke(&nul, event("refused")).unwrap();
    let after = store.mark();
    store.audit(event("kept after")).unwrap();
    assert!(wait(after).is_ok());
    let refused = wait(bad).unwrap_err().to_string();
    assert!(refused.contains("0x00"), "{refused}");
    assert!(wait(first).is_err(), "a wait covering the refused decision fails");

    let head = store.audit_head().unwrap();
    let records: Vec<String> =
        store.audit_records(0, 100).unwrap().into_iter().map(|r| r.event.code).collect();
    assert_eq!(records, ["issued", "kept before", "kept after"]);
    assert_eq!(verify_chain(store.audit_scan(head.seq), head).unwrap().records, 3);
}

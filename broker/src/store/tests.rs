//! One set of checks every `Store` must pass, run on sled and on a real PostgreSQL server
//! (two connections pools standing for two replicas); sled's own. PostgreSQL's own are in
//! `postgres/tests.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mooring_attestation::protocol::{HardwareId, IdentityStatus};
use std::path::Path;
use std::sync::{Arc, Barrier};

use super::*;
use crate::audit::{verify_chain, Action, Outcome};
use crate::config::PostgresConfig;
use crate::records::{BootCounters, CredentialRecord};

/// Finished challenges the embedded store remembers in these tests.
const MAX_USED: usize = 1000;

pub(super) fn event(code: &str) -> AuditEvent {
    AuditEvent::new(1_800_000_000, Action::Admin, Outcome::Accepted, code, "test")
}

pub(super) fn credential(serial: &str, spiffe_id: &str) -> CredentialRecord {
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
pub(super) fn durably(store: &Arc<dyn Store>, write: impl FnOnce(&dyn Store) -> Result<(), StoreError>) {
    settle(store, store.mark(), write(&**store));
}

/// Waits for `store`'s writes since `since`; `written` is what the write itself returned.
pub(super) fn settle(store: &Arc<dyn Store>, since: WriteMark, written: Result<(), StoreError>) {
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

    // A TPM finish uses its challenge up and reads the EK's standing in one step; a used
    // challenge reads nothing.
    let (consumed, standing) = a.use_once_reading("c4", 900, &hardware).unwrap();
    assert_eq!(consumed, Consumed::First);
    assert_eq!(standing.status, Some(IdentityStatus::Blocked));
    assert_eq!(standing.vm.map(|vm| vm.last_serial), Some("03".to_owned()));
    assert_eq!(
        b.use_once_reading("c4", 900, &hardware).unwrap(),
        (Consumed::AlreadyUsed, Standing::default())
    );
    let unknown = HardwareId::Ek("cd".repeat(32));
    assert_eq!(b.use_once_reading("c5", 900, &unknown).unwrap(), (Consumed::First, Standing::default()));

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

pub(super) fn settings(postgres: &mooring_tests::Postgres, dir: &Path) -> PostgresConfig {
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
        tls: None,
        ca_file: None,
        allow_plaintext: false,
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

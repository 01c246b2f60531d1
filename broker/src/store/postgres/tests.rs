//! PostgreSQL's own checks, on real servers: settings refused, migrations, shared signing
//! keys, group commit across replicas, a write that fails alone, TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use mooring_attestation::protocol::{HardwareId, IdentityStatus, Revocation, RevocationTarget};

use super::PgStore;
use crate::audit::verify_chain;
use crate::config::{PostgresConfig, PostgresTls};
use crate::issuer::keys::KeySet;
use crate::store::tests::{credential, durably, event, settings, settle};
use crate::store::{KeyVault, Store};

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

/// A replica cut off inside its group commit (holding the audit chain's head lock, then
/// silent) does not stop the others for good: the server ends the idle transaction, and
/// the waiting append goes through.
#[test]
fn postgres_a_session_idle_in_its_transaction_releases_the_head_lock() {
    let Some(postgres) = mooring_tests::Postgres::start_or_skip("postgres_idle_holder") else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = settings(&postgres, dir.path());
    let cut_off = PgStore::connect(&config).unwrap();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&config).unwrap());
    let mut holder = cut_off.client().unwrap();
    holder.client().batch_execute("BEGIN; SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE").unwrap();

    let started = std::time::Instant::now();
    let before = store.mark();
    store.audit(event("after the holder")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(store.durable(before)).unwrap();
    let waited = started.elapsed();
    let idle = std::time::Duration::from_millis(u64::from(super::settings::IDLE_IN_TRANSACTION_MS));
    assert!(waited >= idle - std::time::Duration::from_millis(500), "waited only {waited:?}");
    assert!(waited < idle * 3, "waited {waited:?}");
    // The holder's session was ended by the server.
    assert!(holder.client().batch_execute("SELECT 1").is_err());
    assert_eq!(store.audit_records(0, 10).unwrap().len(), 1);
}

/// While the database holds a group commit up, a replica stops taking requests once
/// [`super::WAITING_AT_MOST`] writes wait, and takes them again once they are through.
#[test]
fn postgres_a_replica_takes_no_new_work_while_too_many_writes_wait() {
    let Some(postgres) = mooring_tests::Postgres::start_or_skip("postgres_backlog") else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = settings(&postgres, dir.path());
    let other = PgStore::connect(&config).unwrap();
    let store = PgStore::connect(&config).unwrap();
    // Another session holds the chain head (released when the server ends it, idle).
    let mut holder = other.client().unwrap();
    holder.client().batch_execute("BEGIN; SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE").unwrap();
    let before = store.mark();
    store.audit(event("first")).unwrap();
    while store.writer.waiting() > 0 {
        std::thread::yield_now();
    }
    for n in 0..super::WAITING_AT_MOST {
        assert!(store.accepting().is_ok(), "refused with {n} waiting");
        store.audit(event("queued")).unwrap();
    }
    let Err(crate::store::StoreError::Busy(reason)) = store.accepting() else { panic!("took new work") };
    assert!(reason.contains("16384 writes are waiting"), "{reason}");
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(store.durable(before)).unwrap();
    assert!(store.accepting().is_ok());
    assert_eq!(store.audit_head().unwrap().seq, 1 + super::WAITING_AT_MOST as u64);
}

/// TLS to a server whose certificate names `localhost`, issued by a test CA.
fn over_tls(postgres: &mooring_tests::Postgres, dir: &std::path::Path, host: &str) -> PostgresConfig {
    PostgresConfig {
        url: postgres.tcp_url(host),
        tls: Some(PostgresTls::VerifyFull),
        ca_file: Some(postgres.ca_file()),
        ..settings(postgres, dir)
    }
}

/// Over TLS the store works (the server says the broker's sessions are encrypted); a CA
/// that did not issue the server's certificate, or a host name the certificate does not
/// carry, is refused before any password is sent.
#[test]
fn postgres_over_tls_verifies_the_server_certificate_and_its_name() {
    let Some(postgres) = mooring_tests::Postgres::start_tls_or_skip("postgres_tls", &["localhost"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(PgStore::connect(&over_tls(&postgres, dir.path(), "localhost")).unwrap());
    durably(&store, |s| s.audit(event("over tls")));
    assert_eq!(store.audit_head().unwrap().seq, 1);
    let encrypted = postgres
        .psql(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'mooring-broker' AND ssl",
        )
        .unwrap();
    assert!(encrypted.trim().parse::<u32>().unwrap() >= 2, "pool and writer over TLS: {encrypted}");

    // Another CA's file: the server's certificate does not chain to it.
    let other = mooring_tests::Postgres::start_tls_or_skip("postgres_tls_other_ca", &["localhost"]).unwrap();
    let wrong_ca =
        PostgresConfig { ca_file: Some(other.ca_file()), ..over_tls(&postgres, dir.path(), "localhost") };
    let refused = PgStore::connect(&wrong_ca).unwrap_err().to_string();
    assert!(
        refused.contains("invalid peer certificate") && refused.contains("must chain to postgres.ca_file"),
        "{refused}"
    );

    // The right CA, but a name the certificate does not carry (it names localhost only).
    for host in ["127.0.0.1", "db.example"] {
        let refused = PgStore::connect(&over_tls(&postgres, dir.path(), host)).unwrap_err().to_string();
        assert!(refused.contains(&format!("not valid for name \"{host}\"")), "{host}: {refused}");
    }
}

/// Plaintext is only for this machine unless the operator vouches for the link; settings
/// that contradict each other are refused, before anything connects.
#[test]
fn postgres_tls_settings_that_would_send_plaintext_or_contradict_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "33".repeat(32)).unwrap();
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let base = PostgresConfig {
        url: "host=db.internal user=mooring dbname=mooring".into(),
        password_file: None,
        password_env: None,
        pool_size: 1,
        key_encryption_key_file: kek,
        tls: None,
        ca_file: None,
        allow_plaintext: false,
    };
    let refused = |settings: PostgresConfig| PgStore::connect(&settings).unwrap_err().to_string();

    // A remote host: TLS by default, which needs a CA file.
    assert!(refused(base.clone()).contains("needs postgres.ca_file"));
    // Plaintext to it: only when allowed (then it fails later, connecting).
    let off = PostgresConfig { tls: Some(PostgresTls::Off), ..base.clone() };
    let message = refused(off.clone());
    assert!(message.contains("not this machine") && message.contains("allow_plaintext"), "{message}");
    let allowed = refused(PostgresConfig { allow_plaintext: true, ..off.clone() });
    assert!(allowed.contains("connecting to PostgreSQL"), "{allowed}");
    // A hostaddr elsewhere counts as remote even under a loopback name.
    let message =
        refused(PostgresConfig { url: "host=localhost hostaddr=10.1.2.3 user=m".into(), ..off.clone() });
    assert!(message.contains("10.1.2.3"), "{message}");
    // A Unix socket has no TLS; a CA file with TLS off; sslmode in the URL; a bad CA file.
    let socket = PostgresConfig {
        url: "host=/run/postgresql user=m".into(),
        tls: Some(PostgresTls::VerifyFull),
        ca_file: Some(ca.clone()),
        ..base.clone()
    };
    assert!(refused(socket).contains("Unix socket"));
    let contradiction =
        PostgresConfig { url: "host=localhost user=m".into(), ca_file: Some(ca.clone()), ..off.clone() };
    assert!(refused(contradiction).contains("say which one"));
    let sslmode = PostgresConfig { url: "host=localhost sslmode=require user=m".into(), ..base.clone() };
    assert!(refused(sslmode).contains("sslmode"));
    let bad_ca = PostgresConfig { tls: Some(PostgresTls::VerifyFull), ca_file: Some(ca), ..base };
    assert!(refused(bad_ca).contains("postgres.ca_file"));
}

/// A server (or someone on the path) that answers the TLS request with `N`: with
/// `verify-full` the broker gives up there, and sends nothing in plaintext after it (no
/// startup message, so no user name, no password exchange).
#[test]
fn postgres_verify_full_never_falls_back_to_plaintext() {
    use std::io::{Read as _, Write as _};
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    // Each connection: what came before the `N`, and what came after it.
    let stub = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut socket, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            };
            socket.set_nonblocking(false).unwrap();
            socket.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
            let mut request = [0u8; 8];
            let asked = socket.read_exact(&mut request).is_ok();
            socket.write_all(b"N").unwrap();
            let mut after = Vec::new();
            let _ = socket.read_to_end(&mut after);
            seen.push((asked.then_some(request), after));
        }
        seen
    });

    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "33".repeat(32)).unwrap();
    std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let settings = PostgresConfig {
        url: format!("host=localhost port={port} user=mooring dbname=mooring"),
        password_file: None,
        password_env: None,
        pool_size: 1,
        key_encryption_key_file: kek,
        tls: Some(PostgresTls::VerifyFull),
        ca_file: Some(
            mooring_testdata::testdata_dir().join("tpm/ek-certs/gce-vtpm/pca_tpm_ecc_enc_cert.pem"),
        ),
        allow_plaintext: false,
    };
    let refused = PgStore::connect(&settings).unwrap_err().to_string();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = stub.join().unwrap();
    assert!(refused.contains("TLS"), "{refused}");
    assert!(!seen.is_empty(), "the broker never connected");
    for (request, after) in seen {
        assert_eq!(request, Some(SSL_REQUEST), "the first bytes are not a TLS request");
        assert!(after.is_empty(), "sent in plaintext after the server declined TLS: {after:?}");
    }
}

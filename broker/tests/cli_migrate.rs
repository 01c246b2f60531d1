//! `mooring-broker store migrate`: a broker on the embedded store issues real credentials
//! (swtpm), enrolls an identity and revokes one credential; it stops, its store moves into
//! a real PostgreSQL server, and a broker on PostgreSQL then verifies the credential issued
//! before the move, refuses the revoked one, and its audit chain verifies. Moving again
//! into the now non-empty database, or moving a store whose chain was tampered with, is
//! refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::vm::Vm;
use common::{admitting, attest, audit_verify_cli, verify_jwt, Broker};
use mooring_tests::{Postgres, SwtpmOptions};
use serde_json::json;

/// `mooring-broker store migrate --from --to`: exit code and output.
fn migrate(from: &Path, to: &Path) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mooring-broker"))
        .args(["store", "migrate", "--from"])
        .arg(from)
        .arg("--to")
        .arg(to)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), text)
}

#[test]
fn a_store_with_real_credentials_moves_to_postgres_and_they_still_verify() {
    let Some(vm) = Vm::start("cli_migrate", SwtpmOptions::default()) else { return };
    let Some(postgres) = Postgres::start_or_skip("cli_migrate") else { return };
    let mut sled = Broker::start(&admitting(&vm, String::new()));
    let revoked = attest(&sled, &vm);
    let kept = attest(&sled, &vm);
    sled.admin_post(
        "admin/identities",
        &json!({"identity": {"kind": "ek", "id": "ab".repeat(32)}, "status": "enrolled"}),
    );
    sled.admin_post(
        "admin/revocations",
        &json!({"target": {"kind": "credential", "id": revoked.x509_serial}, "reason": "before the move"}),
    );
    assert_eq!(verify_jwt(&sled, &vm, &kept.jwt_svid)["valid"], true);
    let records = sled.audit().len();
    sled.terminate(Duration::from_secs(15)).expect("the sled broker stops on SIGTERM");

    // The replicas' configuration, written before any of them starts.
    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("policy.toml"), "version = 1\n").unwrap();
    let to = target.path().join("broker.toml");
    std::fs::write(
        &to,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ntrust_domain = \"test.mooring\"\npolicy = \"policy.toml\"\n{}",
            postgres.broker_config().unwrap()
        ),
    )
    .unwrap();
    let (code, text) = migrate(&sled.config_path(), &to);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("2 credentials") && text.contains("1 revocations") && text.contains("1 identities"),
        "{text}"
    );
    assert!(text.contains(&format!("audit chain intact in PostgreSQL: {records} records")), "{text}");

    // A broker on PostgreSQL: the credential from before the move verifies, the revoked
    // one stays revoked, the chain verifies (API and CLI) and holds every record.
    let pg = Broker::start(&admitting(&vm, postgres.broker_config().unwrap()));
    assert_eq!(verify_jwt(&pg, &vm, &kept.jwt_svid)["valid"], true);
    let answer = verify_jwt(&pg, &vm, &revoked.jwt_svid);
    assert_eq!(answer["code"], "revoked", "{answer}");
    assert_eq!(pg.audit_verify()["valid"], true);
    let (code, text) = audit_verify_cli(&pg);
    assert_eq!(code, Some(0), "{text}");
    assert!(pg.audit().iter().any(|r| r["serial"] == kept.x509_serial.as_str() && r["code"] == "issued"));

    // Again, into the database now in use: refused, nothing written.
    let (code, text) = migrate(&sled.config_path(), &to);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("not empty"), "{text}");

    // A source whose chain was changed is refused before anything is written.
    {
        let db = sled::open(sled.data_dir().join("store")).unwrap();
        let tree = db.open_tree("audit").unwrap();
        let key = 1u64.to_be_bytes();
        let text = String::from_utf8(tree.get(key).unwrap().unwrap().to_vec()).unwrap();
        tree.insert(key, text.replacen("class", "klass", 1).into_bytes()).unwrap();
        db.flush().unwrap();
    }
    let (code, text) = migrate(&sled.config_path(), &to);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("record 1 was modified") && !text.contains("not empty"), "{text}");
}

//! The Vagrant lab cannot boot here (no KVM, no vagrant), so CI checks that what it would
//! run parses: the Vagrantfile with `ruby -c`, every provisioning and helper script with
//! shellcheck. Skipped with a message when ruby or shellcheck is missing, a failure in CI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use mooring_testdata::workspace_root;
use mooring_tests::prereq::require_tools;

fn lab() -> PathBuf {
    workspace_root().join("vagrant")
}

fn scripts() -> Vec<PathBuf> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(lab())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    scripts
}

fn run(program: &str, args: &[PathBuf]) {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_vagrantfile_is_valid_ruby() {
    if !require_tools("the_vagrantfile_is_valid_ruby", &["ruby"]) {
        return;
    }
    run("ruby", &["-c".into(), lab().join("Vagrantfile")]);
}

#[test]
fn the_lab_scripts_pass_shellcheck() {
    if !require_tools("the_lab_scripts_pass_shellcheck", &["shellcheck"]) {
        return;
    }
    let scripts = scripts();
    for expected in
        ["stage.sh", "common.sh", "broker.sh", "client.sh", "payments.sh", "pay.sh", "pcrs-json.sh"]
    {
        assert!(scripts.iter().any(|s| s.ends_with(expected)), "vagrant/{expected} is missing");
    }
    run("shellcheck", &scripts);
}

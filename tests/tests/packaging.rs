//! What the repository ships to run Mooring: the systemd units in `packaging/` (installed
//! by the Debian packages; `scripts/package-check.sh` builds and installs those) pass
//! `systemd-analyze verify` (with the binaries this build made in place of `/usr/bin`) and
//! are hardened to an exposure of at most 2.0 by `systemd-analyze security`; the
//! repository's own scripts and the packages' maintainer scripts pass shellcheck. Each check is also shown to fail on a broken
//! unit. Skipped with a message when the tools are missing, a failure in CI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mooring_testdata::workspace_root;
use mooring_tests::prereq::require_tools;
use mooring_tests::workspace_binary;

/// The units (in `packaging/<directory>/`), and the binary each starts.
const UNITS: &[(&str, &str)] =
    &[("mooring-broker.service", "mooring-broker"), ("mooring-client.service", "mooring-client")];

fn unit_dir(binary: &str) -> &str {
    binary.strip_prefix("mooring-").unwrap()
}

/// Highest `systemd-analyze security` exposure allowed, in its tenths (2.0).
const MAX_EXPOSURE_TENTHS: &str = "20";

fn unit_text(name: &str, binary: &str) -> String {
    std::fs::read_to_string(workspace_root().join("packaging").join(unit_dir(binary)).join(name)).unwrap()
}

/// `text` as unit `name` in a directory of its own, with `/usr/bin/<binary>` pointing at
/// `binary`.
fn staged(dir: &Path, name: &str, text: &str, binary: &str, path: &Path) -> PathBuf {
    let unit = dir.join(name);
    std::fs::write(&unit, text.replace(&format!("/usr/bin/{binary}"), &path.display().to_string())).unwrap();
    unit
}

/// `systemd-analyze ARGS`: whether it succeeded, and everything it printed.
fn analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let output = Command::new("systemd-analyze").args(args).arg(unit).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    if !require_tools("the_units_pass_systemd_analyze_verify", &["systemd-analyze"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, binary) in UNITS {
        let text = unit_text(name, binary);
        let unit = staged(dir.path(), name, &text, binary, &workspace_binary(binary));
        let (ok, output) = analyze(&["verify"], &unit);
        assert!(ok && output.trim().is_empty(), "systemd-analyze verify {name}:\n{output}");
        println!("systemd-analyze verify {name}: no complaint");

        // A directive systemd does not know is a warning (exit status 0): any output fails.
        let typo = text.replace("ProtectSystem=strict", "ProtectSytem=strict");
        let (_, output) =
            analyze(&["verify"], &staged(dir.path(), name, &typo, binary, &workspace_binary(binary)));
        assert!(output.contains("Unknown key"), "a misspelt directive passed:\n{output}");
        // A binary that is not there fails it.
        let missing = staged(dir.path(), name, &text, binary, &dir.path().join("no-such-binary"));
        assert!(!analyze(&["verify"], &missing).0, "{name} with a missing binary passed");
    }
}

#[test]
fn the_units_are_hardened_to_an_exposure_of_two_or_less() {
    if !require_tools("the_units_are_hardened_to_an_exposure_of_two_or_less", &["systemd-analyze"]) {
        return;
    }
    let threshold = format!("--threshold={MAX_EXPOSURE_TENTHS}");
    let dir = tempfile::tempdir().unwrap();
    for (name, binary) in UNITS {
        let text = unit_text(name, binary);
        let unit = dir.path().join(name);
        std::fs::write(&unit, &text).unwrap();
        let (ok, output) = analyze(&["security", "--offline=yes", &threshold], &unit);
        let score = output.lines().find(|line| line.contains("Overall exposure level")).unwrap_or_default();
        println!("systemd-analyze security {name}: {score}");
        assert!(ok, "{name} is exposed above 2.0:\n{output}");

        // Without its hardening section the same unit is over the threshold.
        let bare: String = text.split("\n# Hardening").next().unwrap().to_owned()
            + "\n[Install]\nWantedBy=multi-user.target\n";
        std::fs::write(&unit, bare).unwrap();
        let (ok, output) = analyze(&["security", "--offline=yes", &threshold], &unit);
        assert!(!ok, "{name} without its hardening passed the threshold:\n{output}");
    }
}

#[test]
fn the_repository_scripts_pass_shellcheck() {
    if !require_tools("the_repository_scripts_pass_shellcheck", &["shellcheck"]) {
        return;
    }
    let root = workspace_root();
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("scripts"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(scripts.iter().any(|s| s.ends_with("test.sh")), "scripts/test.sh is missing");
    scripts.extend([root.join(".ci/run"), root.join("fuzz/seeds.sh")]);
    for package in ["broker", "client"] {
        scripts
            .extend(["postinst", "postrm"].map(|script| root.join("packaging").join(package).join(script)));
    }
    let output = Command::new("shellcheck").arg("-x").args(&scripts).current_dir(&root).output().unwrap();
    assert!(
        output.status.success(),
        "shellcheck: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

//! `mooring-broker policy check` on the shipped example and on broken copies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::process::Command;

fn check(path: &std::path::Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mooring-broker"))
        .args(["policy", "check"])
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.code(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

#[test]
fn the_example_policy_loads_and_a_broken_copy_names_its_line() {
    let example = mooring_testdata::workspace_root().join("policies/example.toml");
    let (code, text) = check(&example);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2 classes"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("policy.toml");
    let original = std::fs::read_to_string(&example).unwrap();
    let line = original.lines().position(|l| l.starts_with("networks = [\"10.20.0.0/16\"]")).unwrap() + 1;
    std::fs::write(&broken, original.replace("10.20.0.0/16", "10.20.0.0/99")).unwrap();
    let (code, text) = check(&broken);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("policy.toml:{line}:")), "{text}");
}

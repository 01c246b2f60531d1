//! Which host programs the TPM tests need, and what to do when they are missing: skip with
//! a message on a developer's machine, fail in CI (`CI` set), so a CI image without swtpm
//! can never pass by skipping everything.

use std::path::{Path, PathBuf};

/// Programs every swtpm-backed test needs: swtpm itself, its setup tool and local CA
/// (Debian packages `swtpm`, `swtpm-tools`), and the tpm2-tools the harness drives
/// (`tpm2-tools`).
pub const TPM_TOOLS: &[&str] = &[
    "swtpm",
    "swtpm_setup",
    "swtpm_localca",
    "tpm2_getrandom",
    "tpm2_createek",
    "tpm2_flushcontext",
    "tpm2_nvread",
    "tpm2_pcrextend",
    "tpm2_pcrread",
];

/// The Debian packages that provide [`TPM_TOOLS`].
pub const TPM_PACKAGES: &str = "swtpm swtpm-tools tpm2-tools";

/// The Debian 12 package that installs `tool` (the tool's name when unknown).
#[must_use]
pub fn debian_package(tool: &str) -> &str {
    if tool == "swtpm" {
        "swtpm"
    } else if tool.starts_with("swtpm_") {
        "swtpm-tools"
    } else if tool == "tpm2" || tool.starts_with("tpm2_") {
        "tpm2-tools"
    } else {
        tool
    }
}

/// `apt-get install ...` for the packages that provide `tools`.
fn install_hint(tools: &[String]) -> String {
    let mut packages: Vec<&str> = Vec::new();
    for package in tools.iter().map(|t| debian_package(t)) {
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    format!("Debian: apt-get install {}", packages.join(" "))
}

/// The full path of `program` on `PATH`, if it is there and executable.
#[must_use]
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The programs of `tools` that are not on `PATH`.
#[must_use]
pub fn missing_tools(tools: &[&str]) -> Vec<String> {
    tools.iter().filter(|tool| find_program(tool).is_none()).map(|tool| (*tool).to_owned()).collect()
}

/// Whether this is a CI run: `CI` is set to anything but empty, `0` or `false`.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Test helper: `true` when all of `tools` are installed. Otherwise, outside CI, prints why
/// `test` is skipped and returns `false`; in CI, panics (missing tools are a broken image
/// there, not a reason to skip).
#[must_use]
#[allow(clippy::panic)]
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing = missing_tools(tools);
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: missing {} ({})", missing.join(", "), install_hint(&missing));
    assert!(!in_ci(), "CI is set, so this is a failure, not a skip: {message}");
    eprintln!("SKIPPED {message}; set CI=true to make this a failure");
    false
}

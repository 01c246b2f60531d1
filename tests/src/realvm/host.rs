//! What the host must provide for a real VM: programs and firmware files (with their Debian
//! packages), the release client, and the target directory the boot media are built in.

use std::path::{Path, PathBuf};

use super::{OVMF_CODE, OVMF_VARS_MICROSOFT, OVMF_VARS_SNAKEOIL};
use crate::prereq::{self, find_program};

/// Programs the real-VM test runs (here and in build.sh), with their Debian packages.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("swtpm", "swtpm"),
    ("swtpm_setup", "swtpm-tools"),
    ("swtpm_localca", "swtpm-tools"),
    ("socat", "socat"),
    ("sbsign", "sbsigntool"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("sfdisk", "fdisk"),
    ("cpio", "cpio"),
    ("objcopy", "binutils"),
    ("openssl", "openssl"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
];

/// Files the test needs, with their Debian packages.
const FILES: &[(&str, &str)] = &[
    (OVMF_CODE, "ovmf"),
    (OVMF_VARS_SNAKEOIL, "ovmf"),
    (OVMF_VARS_MICROSOFT, "ovmf"),
    ("/usr/share/ovmf/PkKek-1-snakeoil.key", "ovmf"),
    ("/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "systemd-boot-efi"),
    ("/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "systemd-boot-efi"),
    ("/bin/busybox", "busybox-static"),
    ("/usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0", "libtss2-tcti-device0"),
];

/// `true` when every program and file the real-VM test needs is installed. Otherwise,
/// outside CI, prints why `test` is skipped and returns `false`; in CI (`CI` set), panics.
#[must_use]
#[allow(clippy::panic)]
pub fn require_prerequisites(test: &str) -> bool {
    let mut missing: Vec<String> = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    for (tool, package) in TOOLS {
        if find_tool(tool).is_none() {
            missing.push((*tool).to_owned());
            packages.push(package);
        }
    }
    for (file, package) in FILES {
        if !Path::new(file).is_file() {
            missing.push((*file).to_owned());
            packages.push(package);
        }
    }
    if missing.is_empty() {
        return true;
    }
    packages.dedup();
    let message =
        format!("{test}: missing {} (Debian: apt-get install {})", missing.join(", "), packages.join(" "));
    assert!(!prereq::in_ci(), "CI is set, so this is a failure, not a skip: {message}");
    eprintln!("SKIPPED {message}; set CI=true to make this a failure");
    false
}

/// `tool` on `PATH`, or in the sbin directories a non-root `PATH` may lack.
fn find_tool(tool: &str) -> Option<PathBuf> {
    find_program(tool).or_else(|| {
        ["/usr/sbin", "/sbin"].iter().map(|dir| Path::new(dir).join(tool)).find(|path| path.is_file())
    })
}

/// The cargo target directory this test binary was built into (the ancestor holding
/// `CACHEDIR.TAG`), else `<workspace>/target`.
#[must_use]
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors().skip(1).find(|dir| dir.join("CACHEDIR.TAG").is_file()).map(PathBuf::from)
        })
        .unwrap_or_else(|| mooring_testdata::workspace_root().join("target"))
}

/// The release client the VMs run: `$MOORING_RELEASE_CLIENT`, else
/// `<target>/release/mooring-client` (scripts/test.sh builds it with
/// `cargo build --release -p mooring-client --locked`). `None` after printing why `test` is
/// skipped when it is missing; a panic instead in CI.
#[must_use]
#[allow(clippy::panic)]
pub fn release_client_or_skip(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("MOORING_RELEASE_CLIENT")
        .map_or_else(|| target_dir().join("release/mooring-client"), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "{test}: {} is missing (build it: cargo build --release -p mooring-client --locked)",
        path.display()
    );
    assert!(!prereq::in_ci(), "CI is set, so this is a failure, not a skip: {message}");
    eprintln!("SKIPPED {message}");
    None
}

//! Test harness shared by the workspace's tests: where the public test vectors live,
//! and (in later modules) real swtpm instances driven through tpm2-tools.

use std::path::PathBuf;

/// The directory holding the shared public test vectors: `$MOORING_TESTDATA` when set,
/// otherwise `../shared/testdata` beside the repository checkout.
#[must_use]
pub fn testdata_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MOORING_TESTDATA") {
        return PathBuf::from(dir);
    }
    workspace_root().join("../shared/testdata")
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
#[must_use]
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Reads a file below [`testdata_dir`], panicking with the path when it is missing
/// (tests only).
#[must_use]
#[allow(clippy::panic)]
pub fn testdata(relative: &str) -> Vec<u8> {
    let path = testdata_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("test vector {}: {e}", path.display()))
}

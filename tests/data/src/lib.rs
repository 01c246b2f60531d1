//! Where the shared public test vectors live (they are not in the repository) and the
//! workspace root, for tests and benchmarks that only read files. Std only, so a pure
//! library can test against the vectors without building the harness (`mooring-tests`).

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

/// The workspace root: the nearest directory holding `Cargo.lock` above the running
/// test's package (cargo and nextest set `CARGO_MANIFEST_DIR` at run time), falling back
/// to where this crate was compiled.
#[must_use]
pub fn workspace_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."), PathBuf::from)
}

/// Reads a file below [`testdata_dir`], panicking with the path when it is missing
/// (tests only).
#[must_use]
#[allow(clippy::panic)]
pub fn testdata(relative: &str) -> Vec<u8> {
    let path = testdata_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("test vector {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_holds_the_lock_file_and_the_vectors_their_manifest() {
        assert!(workspace_root().join("Cargo.lock").is_file(), "{}", workspace_root().display());
        assert!(!testdata("MANIFEST.md").is_empty());
    }
}

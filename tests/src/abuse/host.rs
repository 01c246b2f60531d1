//! The machine under abuse: the size of the broker's data directory, and the open-file
//! limit a thousand connections need.

use std::io;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

/// Size of a directory tree: bytes in its files, and bytes allocated to them on disk
/// (what `du` counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirSize {
    pub bytes: u64,
    pub allocated: u64,
}

/// [`DirSize`] of `dir`, recursively (symbolic links not followed).
///
/// # Errors
/// When a directory cannot be read.
pub fn dir_size(dir: &Path) -> anyhow::Result<DirSize> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = DirSize::default();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        // A file may vanish while we look (sled replaces its snapshot): skip it.
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        if meta.is_dir() {
            let sub = dir_size(&entry.path())?;
            total.bytes += sub.bytes;
            total.allocated += sub.allocated;
        } else {
            total.bytes += meta.len();
            total.allocated += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// Raises this process's open-file limit to `want` (at most the hard limit); processes
/// started afterwards (the broker) inherit it. Returns the limit now in force.
///
/// # Errors
/// When the limit cannot be read or set.
#[allow(unsafe_code)]
pub fn raise_fd_limit(want: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` into the struct passed, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if limit.rlim_cur >= want {
        return Ok(limit.rlim_cur);
    }
    limit.rlim_cur = want.min(limit.rlim_max);
    // SAFETY: setrlimit only reads the struct passed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
    }
    Ok(limit.rlim_cur)
}

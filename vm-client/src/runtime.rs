//! The runtime directory: what applications on the VM read. Every file is written
//! atomically (temporary file, fsync, rename, fsync of the directory), mode 0600, in a 0700
//! directory that must be on tmpfs, so unsealed secrets never reach a disk.
//!
//! ```text
//! runtime_dir/
//!   svid.pem       X.509-SVID chain (leaf for K first, then the issuing CA)
//!   svid.key       K: TSS2 PRIVATE KEY (TPM path, usable only in this TPM) or PKCS#8 (SNP path)
//!   bundle.pem     trust bundle (X.509 CA certificates)
//!   jwt-svid       JWT-SVID (compact JWS)
//!   secrets/NAME   unsealed secrets
//!   status.json    what is held and when it renews; written last
//! ```

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File names in the runtime directory.
pub const SVID_FILE: &str = "svid.pem";
/// K's key file.
pub const KEY_FILE: &str = "svid.key";
/// Trust bundle.
pub const BUNDLE_FILE: &str = "bundle.pem";
/// JWT-SVID.
pub const JWT_FILE: &str = "jwt-svid";
/// Status, written last.
pub const STATUS_FILE: &str = "status.json";
/// Directory of unsealed secrets.
pub const SECRETS_DIR: &str = "secrets";
/// Longest secret name used as a file name.
const MAX_SECRET_NAME: usize = 64;
/// Filesystems that keep data in memory only.
const MEMORY_FILESYSTEMS: [&str; 2] = ["tmpfs", "ramfs"];

/// Errors of the runtime directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The directory is not on a memory filesystem.
    #[error("runtime directory {path} is on {fs_type}, not tmpfs: unsealed secrets would reach a disk (mount a tmpfs there, e.g. systemd RuntimeDirectory=)")]
    NotTmpfs {
        /// The directory.
        path: PathBuf,
        /// Its filesystem.
        fs_type: String,
    },
    /// A secret name from the broker cannot be a file name.
    #[error(
        "secret name {0:?} is not a safe file name (1-64 of A-Z a-z 0-9 . _ -, not starting with a dot)"
    )]
    BadSecretName(String),
    /// `status.json` is malformed.
    #[error("{path}: {reason}")]
    Status {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What the client holds, as recorded in `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// `tpm` or `snp`.
    pub evidence: String,
    /// SPIFFE ID.
    pub spiffe_id: String,
    /// Policy class.
    pub class: String,
    /// X.509-SVID serial (hex).
    pub x509_serial: String,
    /// Address the credentials are bound to.
    pub bound_address: IpAddr,
    /// When the credentials were obtained (Unix seconds).
    pub attested_at: i64,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// When the broker says to renew (half of the lifetime).
    pub renew_after: i64,
    /// When this client plans to renew (with jitter), Unix seconds.
    pub renew_at: i64,
    /// Names of the unsealed secrets in `secrets/`.
    pub secrets: Vec<String>,
    /// Where the AK is kept (TPM path), e.g. `0x81010002`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak_handle: Option<String>,
}

/// What one attestation produced, to be stored. `Debug` leaves out the key file, the JWT
/// and the secrets' plaintext.
pub struct Bundle<'a> {
    /// X.509-SVID chain PEM.
    pub svid_pem: &'a str,
    /// K's key file PEM.
    pub key_pem: &'a str,
    /// Trust bundle PEM.
    pub bundle_pem: &'a str,
    /// JWT-SVID.
    pub jwt: &'a str,
    /// Unsealed secrets: name and plaintext.
    pub secrets: &'a [(String, Vec<u8>)],
    /// Status to record.
    pub status: &'a Status,
}

impl std::fmt::Debug for Bundle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets: Vec<&str> = self.secrets.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Bundle")
            .field("secrets", &secrets)
            .field("status", self.status)
            .finish_non_exhaustive()
    }
}

/// The runtime directory.
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Creates (0700) or tightens the directory; with `require_tmpfs`, refuses one that is not
    /// on tmpfs/ramfs.
    ///
    /// # Errors
    /// When it cannot be created, or is not on a memory filesystem.
    pub fn open(path: &Path, require_tmpfs: bool) -> Result<Self, RuntimeError> {
        ensure_private_dir(path).map_err(|source| RuntimeError::Io { path: path.to_owned(), source })?;
        if require_tmpfs {
            let canonical = fs::canonicalize(path)
                .map_err(|source| RuntimeError::Io { path: path.to_owned(), source })?;
            let mountinfo = fs::read_to_string("/proc/self/mountinfo")
                .map_err(|source| RuntimeError::Io { path: "/proc/self/mountinfo".into(), source })?;
            let fs_type =
                filesystem_of(&mountinfo, &canonical).unwrap_or_else(|| "an unknown filesystem".into());
            if !MEMORY_FILESYSTEMS.contains(&fs_type.as_str()) {
                return Err(RuntimeError::NotTmpfs { path: path.to_owned(), fs_type });
            }
        }
        Ok(Self { path: path.to_owned() })
    }

    /// A runtime directory to read only (status), without creating or checking it.
    #[must_use]
    pub fn existing(path: &Path) -> Self {
        Self { path: path.to_owned() }
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes everything one attestation produced; `status.json` last. Secrets no longer
    /// released are removed.
    ///
    /// # Errors
    /// On a bad secret name (before anything is written) or a failed write.
    pub fn store(&self, bundle: &Bundle<'_>) -> Result<(), RuntimeError> {
        for (name, _) in bundle.secrets {
            if !safe_file_name(name) {
                return Err(RuntimeError::BadSecretName(name.clone()));
            }
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RuntimeError::Io { path, source }
        };
        let dir = &self.path;
        write_atomic(dir, SVID_FILE, bundle.svid_pem.as_bytes()).map_err(io(&dir.join(SVID_FILE)))?;
        write_atomic(dir, KEY_FILE, bundle.key_pem.as_bytes()).map_err(io(&dir.join(KEY_FILE)))?;
        write_atomic(dir, BUNDLE_FILE, bundle.bundle_pem.as_bytes()).map_err(io(&dir.join(BUNDLE_FILE)))?;
        write_atomic(dir, JWT_FILE, bundle.jwt.as_bytes()).map_err(io(&dir.join(JWT_FILE)))?;
        let secrets_dir = dir.join(SECRETS_DIR);
        ensure_private_dir(&secrets_dir).map_err(io(&secrets_dir))?;
        let mut keep = BTreeSet::new();
        for (name, value) in bundle.secrets {
            write_atomic(&secrets_dir, name, value).map_err(io(&secrets_dir.join(name)))?;
            keep.insert(name.as_str());
        }
        remove_others(&secrets_dir, &keep).map_err(io(&secrets_dir))?;
        self.write_status(bundle.status)
    }

    /// Removes every released secret: the broker refused this VM, so what it released for
    /// an earlier, admitted state must not outlive that state on this VM's disk. Returns how
    /// many were removed.
    ///
    /// # Errors
    /// When the secrets directory cannot be read or a file removed.
    pub fn withdraw_secrets(&self) -> Result<usize, RuntimeError> {
        let secrets_dir = self.path.join(SECRETS_DIR);
        let io = |source| RuntimeError::Io { path: secrets_dir.clone(), source };
        let count = match fs::read_dir(&secrets_dir) {
            Ok(entries) => entries.count(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(e)),
        };
        remove_others(&secrets_dir, &BTreeSet::new()).map_err(io)?;
        Ok(count)
    }

    /// Removes the credentials, the key file, the released secrets and the status: the VM
    /// gave its credential up.
    ///
    /// # Errors
    /// When a file cannot be removed.
    pub fn clear(&self) -> Result<(), RuntimeError> {
        self.withdraw_secrets()?;
        for name in [STATUS_FILE, JWT_FILE, SVID_FILE, KEY_FILE, BUNDLE_FILE] {
            let path = self.path.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(RuntimeError::Io { path, source }),
            }
        }
        Ok(())
    }

    /// Rewrites `status.json` (e.g. a new renewal time).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn write_status(&self, status: &Status) -> Result<(), RuntimeError> {
        let path = self.path.join(STATUS_FILE);
        let mut json = serde_json::to_vec_pretty(status)
            .map_err(|e| RuntimeError::Status { path: path.clone(), reason: e.to_string() })?;
        json.push(b'\n');
        write_atomic(&self.path, STATUS_FILE, &json).map_err(|source| RuntimeError::Io { path, source })
    }

    /// The recorded status, `None` when nothing was stored yet.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn status(&self) -> Result<Option<Status>, RuntimeError> {
        let path = self.path.join(STATUS_FILE);
        let Some(bytes) =
            read_optional(&path).map_err(|source| RuntimeError::Io { path: path.clone(), source })?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::Status { path, reason: e.to_string() })
    }

    /// A file in the directory, `None` when absent.
    ///
    /// # Errors
    /// When it exists but cannot be read.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, RuntimeError> {
        let path = self.path.join(name);
        read_optional(&path).map_err(|source| RuntimeError::Io { path, source })
    }
}

/// Whether a broker-supplied name is usable as a file name as is.
#[must_use]
pub fn safe_file_name(name: &str) -> bool {
    (1..=MAX_SECRET_NAME).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Creates `dir` (and parents) with mode 0700, or sets an existing one to 0700.
pub(crate) fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Writes `dir/name` atomically with mode 0600, in `dir` created or tightened to 0700.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    ensure_private_dir(dir)?;
    replace_file(dir, name, bytes)
}

/// Writes `dir/name` atomically with mode 0600 (temporary file, fsync, rename, fsync of the
/// directory), leaving `dir` as it is.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, dir.join(name))?;
        fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Reads a file, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_others(dir: &Path, keep: &BTreeSet<&str>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_none_or(|n| !keep.contains(n)) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The filesystem type of the mount holding `path`, from `/proc/self/mountinfo`
/// (proc(5): field 5 is the mount point, the type follows the ` - ` separator).
fn filesystem_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let (Some(mount_point), Some(fs_type)) = (left.split(' ').nth(4), right.split(' ').next()) else {
            continue;
        };
        let mount_point = unescape_octal(mount_point);
        let mount = Path::new(&mount_point);
        if path.starts_with(mount) {
            let depth = mount.components().count();
            // Later lines win at equal depth: they are mounted on top.
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, fs_type.to_owned()));
            }
        }
    }
    best.map(|(_, fs_type)| fs_type)
}

/// Undoes mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_octal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(pos) = rest.find('\\') {
        out.push_str(rest.get(..pos).unwrap_or_default());
        let digits = rest.get(pos + 1..pos + 4).unwrap_or_default();
        match u8::from_str_radix(digits, 8) {
            Ok(byte) if digits.len() == 3 => {
                out.push(char::from(byte));
                rest = rest.get(pos + 4..).unwrap_or_default();
            }
            _ => {
                out.push('\\');
                rest = rest.get(pos + 1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,size=100k
24 23 0:22 / /run/with\\040space rw shared:6 - ramfs none rw
25 22 0:23 / /runner rw shared:7 - ext4 /dev/sdb rw
";

    #[test]
    fn the_deepest_mount_wins() {
        assert_eq!(filesystem_of(MOUNTINFO, Path::new("/run/mooring")).unwrap(), "tmpfs");
        assert_eq!(filesystem_of(MOUNTINFO, Path::new("/run/with space/x")).unwrap(), "ramfs");
        assert_eq!(filesystem_of(MOUNTINFO, Path::new("/runner/x")).unwrap(), "ext4");
        assert_eq!(filesystem_of(MOUNTINFO, Path::new("/var/lib")).unwrap(), "ext4");
    }

    #[test]
    fn a_disk_backed_runtime_directory_is_refused() {
        // The crate directory is on the build machine's disk, not tmpfs.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target-runtime-check");
        let err = RuntimeDir::open(&dir, true).unwrap_err();
        let _ = fs::remove_dir(&dir);
        assert!(matches!(err, RuntimeError::NotTmpfs { .. }), "{err}");
    }

    fn status() -> Status {
        Status {
            evidence: "tpm".into(),
            spiffe_id: "spiffe://t/vm/web/1".into(),
            class: "web".into(),
            x509_serial: "01".into(),
            bound_address: "127.0.0.1".parse().unwrap(),
            attested_at: 1,
            expires_at: 3,
            renew_after: 2,
            renew_at: 2,
            secrets: vec!["a".into()],
            ak_handle: None,
        }
    }

    /// A bundle with placeholder credentials and `secrets`.
    fn bundle<'a>(secrets: &'a [(String, Vec<u8>)], status: &'a Status) -> Bundle<'a> {
        Bundle { svid_pem: "s", key_pem: "k", bundle_pem: "b", jwt: "j", secrets, status }
    }

    #[test]
    fn files_are_private_and_stale_secrets_go() {
        let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = RuntimeDir::open(&tmp.path().join("run"), true).unwrap();
        let status = status();
        let secrets = vec![("a".to_owned(), b"1".to_vec()), ("b".to_owned(), b"2".to_vec())];
        let bundle = bundle(&secrets, &status);
        dir.store(&bundle).unwrap();
        for name in [SVID_FILE, KEY_FILE, BUNDLE_FILE, JWT_FILE, STATUS_FILE, "secrets/a", "secrets/b"] {
            let mode = fs::metadata(dir.path().join(name)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        assert_eq!(fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(dir.path().join(SECRETS_DIR)).unwrap().mode() & 0o777, 0o700);
        let secrets = vec![("a".to_owned(), b"3".to_vec())];
        dir.store(&Bundle { secrets: &secrets, ..bundle }).unwrap();
        assert!(!dir.path().join("secrets/b").exists());
        assert_eq!(fs::read(dir.path().join("secrets/a")).unwrap(), b"3");
        assert_eq!(dir.status().unwrap().unwrap(), status);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn withdrawn_secrets_are_gone_and_the_rest_stays() {
        let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = RuntimeDir::open(&tmp.path().join("run"), true).unwrap();
        assert_eq!(dir.withdraw_secrets().unwrap(), 0, "nothing released yet");
        let status = status();
        let secrets = vec![("a".to_owned(), b"1".to_vec()), ("b".to_owned(), b"2".to_vec())];
        dir.store(&bundle(&secrets, &status)).unwrap();
        assert_eq!(dir.withdraw_secrets().unwrap(), 2);
        assert_eq!(fs::read_dir(dir.path().join(SECRETS_DIR)).unwrap().count(), 0);
        assert!(dir.path().join(SVID_FILE).exists(), "credentials expire on their own");
    }

    #[test]
    fn unsafe_secret_names_are_refused_before_writing() {
        let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = RuntimeDir::open(tmp.path(), true).unwrap();
        let status = status();
        for name in ["../escape", ".hidden", "", "a/b", &"x".repeat(65)] {
            let secrets = vec![(name.to_owned(), b"1".to_vec())];
            assert!(
                matches!(dir.store(&bundle(&secrets, &status)).unwrap_err(), RuntimeError::BadSecretName(_)),
                "{name}"
            );
        }
        assert!(!tmp.path().join(SVID_FILE).exists());
        assert!(safe_file_name("payment-key.v2_1"));
    }

    #[test]
    fn a_corrupt_status_is_an_error_and_a_missing_one_is_none() {
        let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = RuntimeDir::existing(tmp.path());
        assert!(dir.status().unwrap().is_none());
        fs::write(tmp.path().join(STATUS_FILE), "{").unwrap();
        assert!(matches!(dir.status().unwrap_err(), RuntimeError::Status { .. }));
    }
}

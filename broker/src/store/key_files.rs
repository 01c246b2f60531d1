//! Signing keys as files in `data_dir/keys` (the sled deployment: one broker process).
//!
//! `manifest.json` lists the generations; per generation `<kid>.ca.pk8`, `<kid>.ca.der`,
//! `<kid>.jwt.pk8`. Private keys are 0600 in a 0700 directory: the file system's
//! permissions are what protects them. Key files are written (and synced) before the
//! manifest names them, so a crash leaves at worst unreferenced files.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{KeyVault, StoreError, StoredKeys};
use crate::files;

const MANIFEST: &str = "manifest.json";

/// One manifest entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GenerationInfo {
    kid: String,
    created_at: i64,
    retire_at: i64,
    expire_at: i64,
}

/// The key directory.
#[derive(Debug)]
pub(crate) struct KeyFiles {
    dir: PathBuf,
    /// Serializes manifest updates within the process.
    writing: Mutex<()>,
}

fn failed(what: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

impl KeyFiles {
    pub(crate) fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), writing: Mutex::new(()) }
    }

    fn manifest(&self) -> Result<Vec<GenerationInfo>, StoreError> {
        let path = self.dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt { key: path.display().to_string(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(failed(format!("cannot read {}", path.display()), e)),
        }
    }

    fn path(&self, kid: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{kid}.{suffix}"))
    }

    fn read(&self, kid: &str, suffix: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(kid, suffix);
        std::fs::read(&path).map_err(|e| failed(format!("cannot read {}", path.display()), e))
    }
}

impl KeyVault for KeyFiles {
    fn signing_keys(&self, now: i64) -> Result<Vec<StoredKeys>, StoreError> {
        files::private_dir(&self.dir).map_err(|e| failed("key directory", format!("{e:#}")))?;
        self.manifest()?
            .into_iter()
            .filter(|info| info.expire_at > now)
            .map(|info| {
                Ok(StoredKeys {
                    ca_der: self.read(&info.kid, "ca.der")?,
                    ca_pkcs8: self.read(&info.kid, "ca.pk8")?,
                    jwt_pkcs8: self.read(&info.kid, "jwt.pk8")?,
                    kid: info.kid,
                    created_at: info.created_at,
                    retire_at: info.retire_at,
                    expire_at: info.expire_at,
                })
            })
            .collect()
    }

    fn add_signing_keys(&self, keys: &StoredKeys) -> Result<bool, StoreError> {
        let _guard = self.writing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        files::private_dir(&self.dir).map_err(|e| failed("key directory", format!("{e:#}")))?;
        let mut manifest = self.manifest()?;
        if manifest.iter().any(|info| info.retire_at > keys.created_at) {
            return Ok(false);
        }
        let write = |suffix: &str, bytes: &[u8], private: bool| {
            let path = self.path(&keys.kid, suffix);
            let written =
                if private { files::write_private(&path, bytes) } else { files::write_public(&path, bytes) };
            written.map_err(|e| failed(format!("cannot write {}", path.display()), format!("{e:#}")))
        };
        write("ca.pk8", &keys.ca_pkcs8, true)?;
        write("ca.der", &keys.ca_der, false)?;
        write("jwt.pk8", &keys.jwt_pkcs8, true)?;
        manifest.retain(|info| info.expire_at > keys.created_at);
        manifest.push(GenerationInfo {
            kid: keys.kid.clone(),
            created_at: keys.created_at,
            retire_at: keys.retire_at,
            expire_at: keys.expire_at,
        });
        let text =
            serde_json::to_vec_pretty(&manifest).map_err(|e| failed("encoding the key manifest", e))?;
        let path = self.dir.join(MANIFEST);
        files::write_public(&path, &text)
            .map_err(|e| failed(format!("cannot write {}", path.display()), format!("{e:#}")))?;
        Ok(true)
    }
}

//! Signing keys in the database, shared by every replica.
//!
//! The private keys are stored encrypted (AES-256-GCM, a random nonce per key, the key id
//! and role as associated data so a sealed key cannot be moved to another row or role)
//! under the key-encryption key in `postgres.key_encryption_key_file`. Reading the
//! database, or a backup of it, is not enough to sign credentials: that also takes the
//! file every replica has. The CA certificates are public and stored as they are.
//!
//! Rotation: [`KeyVault::add_signing_keys`] runs in one transaction holding an exclusive
//! lock on the table, so of several replicas rotating at once exactly one stores its
//! generation; the others find it and sign with it.

use std::path::Path;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};

use super::{failed, read, PgStore};
use crate::store::{KeyVault, StoreError, StoredKeys};

/// The key-encryption key.
pub(super) struct KeyEncryptionKey {
    key: RandomizedNonceKey,
    challenge_key: [u8; 32],
}

/// HKDF-SHA256 (RFC 5869) of the key-encryption key, for challenges.
fn derive_challenge_key(kek: &[u8]) -> Option<[u8; 32]> {
    use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
    let mut key = [0u8; 32];
    let prk = Salt::new(HKDF_SHA256, b"mooring").extract(kek);
    prk.expand(&[b"challenge sealing key v1"], HKDF_SHA256).ok()?.fill(&mut key).ok()?;
    Some(key)
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey")
    }
}

impl KeyEncryptionKey {
    /// Reads 32 bytes written as 64 hex digits. The error never shows the file's content.
    pub(super) fn load(path: &Path) -> Result<Self, StoreError> {
        let text = super::settings::read_secret_file(path, "postgres.key_encryption_key_file")?;
        let bad = || {
            StoreError::Config(format!(
                "postgres.key_encryption_key_file {}: expected 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)",
                path.display()
            ))
        };
        let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
        if bytes.len() != 32 {
            return Err(bad());
        }
        let challenge_key = derive_challenge_key(&bytes).ok_or_else(bad)?;
        let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| bad())?;
        Ok(Self { key, challenge_key })
    }

    /// The key challenges are sealed with: derived from the key-encryption key (HKDF-SHA256,
    /// its own label), so every replica has it and it never seals signing keys.
    pub(super) fn challenge_key(&self) -> [u8; 32] {
        self.challenge_key
    }

    fn aad(kid: &str, role: &str) -> Vec<u8> {
        format!("mooring signing key {kid} {role}").into_bytes()
    }

    /// `nonce || ciphertext || tag`.
    fn seal(&self, kid: &str, role: &str, secret: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut in_out = secret.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(Self::aad(kid, role)), &mut in_out)
            .map_err(|_| StoreError::Backend(format!("cannot encrypt the {role} key of {kid}")))?;
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    fn open(&self, kid: &str, role: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let undecryptable = || {
            StoreError::Corrupt {
            key: format!("signing key {kid} ({role})"),
            reason: "does not decrypt with postgres.key_encryption_key_file (does every replica have the same file?)"
                .into(),
        }
        };
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN).ok_or_else(undecryptable)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| undecryptable())?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(kid, role)), &mut in_out)
            .map_err(|_| undecryptable())?;
        Ok(plain.to_vec())
    }
}

impl KeyVault for PgStore {
    fn signing_keys(&self, now: i64) -> Result<Vec<StoredKeys>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT kid, created_at, retire_at, expire_at, ca_der, sealed_ca_key, sealed_jwt_key
                 FROM signing_keys WHERE expire_at > $1 ORDER BY created_at, kid",
                &[&now],
            )
            .map_err(failed("reading the signing keys"))?;
        rows.iter()
            .map(|row| {
                let kid: String = read(row, 0, "signing_keys.kid")?;
                let sealed_ca: Vec<u8> = read(row, 5, "signing_keys.sealed_ca_key")?;
                let sealed_jwt: Vec<u8> = read(row, 6, "signing_keys.sealed_jwt_key")?;
                Ok(StoredKeys {
                    created_at: read(row, 1, "signing_keys.created_at")?,
                    retire_at: read(row, 2, "signing_keys.retire_at")?,
                    expire_at: read(row, 3, "signing_keys.expire_at")?,
                    ca_der: read(row, 4, "signing_keys.ca_der")?,
                    ca_pkcs8: self.kek.open(&kid, "ca", &sealed_ca)?,
                    jwt_pkcs8: self.kek.open(&kid, "jwt", &sealed_jwt)?,
                    kid,
                })
            })
            .collect()
    }

    fn add_signing_keys(&self, keys: &StoredKeys) -> Result<bool, StoreError> {
        let mut connection = self.client()?;
        let mut tx = connection.client().transaction().map_err(failed("starting a key rotation"))?;
        // Readers go on; a second rotating replica waits here, then sees this one's keys.
        tx.batch_execute("LOCK TABLE signing_keys IN EXCLUSIVE MODE")
            .map_err(failed("locking the signing keys"))?;
        let signing = tx
            .query_opt("SELECT kid FROM signing_keys WHERE retire_at > $1 LIMIT 1", &[&keys.created_at])
            .map_err(failed("reading the signing keys"))?;
        if signing.is_some() {
            return Ok(false);
        }
        tx.execute("DELETE FROM signing_keys WHERE expire_at <= $1", &[&keys.created_at])
            .map_err(failed("dropping expired signing keys"))?;
        insert(&mut tx, &self.kek, keys)?;
        tx.commit().map_err(failed("committing a signing key generation"))?;
        Ok(true)
    }
}

/// Stores a generation, its private keys sealed under `kek`.
pub(super) fn insert(
    client: &mut impl postgres::GenericClient,
    kek: &KeyEncryptionKey,
    keys: &StoredKeys,
) -> Result<(), StoreError> {
    let sealed_ca = kek.seal(&keys.kid, "ca", &keys.ca_pkcs8)?;
    let sealed_jwt = kek.seal(&keys.kid, "jwt", &keys.jwt_pkcs8)?;
    client
        .execute(
            "INSERT INTO signing_keys (kid, created_at, retire_at, expire_at, ca_der, sealed_ca_key, sealed_jwt_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&keys.kid, &keys.created_at, &keys.retire_at, &keys.expire_at, &keys.ca_der, &sealed_ca, &sealed_jwt],
        )
        .map_err(failed("storing a signing key generation"))?;
    Ok(())
}

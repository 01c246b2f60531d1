//! The broker's signing keys: one generation = an X.509 CA key with its self-signed CA
//! certificate, and a JWT signing key. A new generation is made when the current one
//! reaches its rotation age; an old one stays in the trust bundle until the last
//! credential it could have signed has expired.
//!
//! Kept in a [`KeyVault`] shared by every replica (files with sled, the database with
//! PostgreSQL). Replicas coordinate through it: the first to find the newest generation
//! retired stores a new one, the others find that one and sign with it; a key id this
//! replica does not know yet (another replica rotated first) makes it read the vault
//! again, at most once a second. The published bundle ([`KeySet::all`], answered on the
//! async runtime, so it never reads the vault itself) picks up another replica's new
//! generation when this replica next signs or at its next housekeeping (every minute).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::store::{KeyVault, StoredKeys};

/// Longest credential lifetime a policy may set; keys outlive their signing period by it.
pub(crate) const MAX_CREDENTIAL_TTL: i64 = 7 * 24 * 3600;

/// One key generation, loaded.
pub(crate) struct Generation {
    pub(crate) kid: String,
    pub(crate) created_at: i64,
    pub(crate) retire_at: i64,
    pub(crate) expire_at: i64,
    pub(crate) ca_key: KeyPair,
    pub(crate) ca_params: CertificateParams,
    pub(crate) ca_der: Vec<u8>,
    /// `ca_der`, parsed once for verifying X.509-SVIDs.
    pub(crate) ca_cert: mooring_attestation::x509::Certificate,
    pub(crate) jwt_key: EcdsaKeyPair,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("kid", &self.kid)
            .field("expire_at", &self.expire_at)
            .finish_non_exhaustive()
    }
}

impl Generation {
    /// The JWT key's public point (uncompressed SEC1).
    pub(crate) fn jwt_public(&self) -> &[u8] {
        self.jwt_key.public_key().as_ref()
    }

    /// The CA key's public point (uncompressed SEC1).
    pub(crate) fn ca_public(&self) -> &[u8] {
        self.ca_key.public_key_raw()
    }
}

/// The generations as last read from the vault.
#[derive(Debug, Default)]
struct Loaded {
    /// Changes whenever the set of generations does (not on a re-read that finds the same).
    version: u64,
    generations: Arc<Vec<Arc<Generation>>>,
}

/// All generations still in the bundle, newest last.
#[derive(Debug)]
pub(crate) struct KeySet {
    vault: Arc<dyn KeyVault>,
    trust_domain: String,
    rotate_after: i64,
    generations: Mutex<Loaded>,
    /// Serializes rotation within this process (the vault arbitrates between replicas).
    rotating: Mutex<()>,
    /// When the vault was last read (unix seconds).
    loaded_at: AtomicI64,
}

impl KeySet {
    /// Loads the generations in `vault` (creating the first one if there is none).
    pub(crate) fn open(
        vault: Arc<dyn KeyVault>,
        trust_domain: &str,
        rotate_after_hours: u32,
        now: i64,
    ) -> anyhow::Result<Self> {
        let set = Self {
            vault,
            trust_domain: trust_domain.to_owned(),
            rotate_after: i64::from(rotate_after_hours) * 3600,
            generations: Mutex::new(Loaded::default()),
            rotating: Mutex::new(()),
            loaded_at: AtomicI64::new(i64::MIN),
        };
        set.reload(now)?;
        set.current(now)?;
        Ok(set)
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Generation>>> {
        Arc::clone(&self.loaded().generations)
    }

    /// Reads the vault again (another replica may have rotated). Generations already
    /// loaded are kept as they are.
    pub(crate) fn reload(&self, now: i64) -> anyhow::Result<()> {
        self.loaded_at.store(now, Ordering::Relaxed);
        let known = self.snapshot();
        let mut loaded = Vec::new();
        for stored in self.vault.signing_keys(now).context("reading the signing keys")? {
            match known.iter().find(|g| g.kid == stored.kid) {
                Some(generation) => loaded.push(Arc::clone(generation)),
                None => loaded.push(Arc::new(load_generation(&self.trust_domain, &stored)?)),
            }
        }
        let mut current = self.loaded();
        let same = current.generations.len() == loaded.len()
            && current.generations.iter().zip(&loaded).all(|(a, b)| Arc::ptr_eq(a, b));
        if !same {
            current.version = current.version.wrapping_add(1);
            current.generations = Arc::new(loaded);
        }
        Ok(())
    }

    fn signing(&self, now: i64) -> Option<Arc<Generation>> {
        self.snapshot().last().filter(|g| g.retire_at > now).cloned()
    }

    /// The generation that signs now, rotating first if it is due.
    pub(crate) fn current(&self, now: i64) -> anyhow::Result<Arc<Generation>> {
        if let Some(generation) = self.signing(now) {
            return Ok(generation);
        }
        let _rotating = self.rotating.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another thread, or another replica, may have rotated meanwhile.
        self.reload(now)?;
        if let Some(generation) = self.signing(now) {
            return Ok(generation);
        }
        let stored = self.create(now)?;
        let kid = stored.kid.clone();
        let added = self.vault.add_signing_keys(&stored).context("storing a new signing key generation")?;
        self.reload(now)?;
        if added {
            tracing::info!(%kid, "created a new signing key generation");
        }
        self.signing(now).ok_or_else(|| anyhow::anyhow!("no signing key generation in force after rotation"))
    }

    /// Every generation still valid for verification (as last read from the vault).
    pub(crate) fn all(&self, now: i64) -> Vec<Arc<Generation>> {
        self.snapshot().iter().filter(|g| g.expire_at > now).cloned().collect()
    }

    /// Every generation as last read from the vault, expired or not, with the version of
    /// the set: the same version means the same generations.
    pub(crate) fn versioned(&self) -> (u64, Arc<Vec<Arc<Generation>>>) {
        let loaded = self.loaded();
        (loaded.version, Arc::clone(&loaded.generations))
    }

    /// Reads the vault again unless that happened this second; true when it did (so a
    /// failed verification is worth retrying).
    pub(crate) fn reload_if_stale(&self, now: i64) -> bool {
        if self.loaded_at.load(Ordering::Relaxed) >= now {
            return false;
        }
        match self.reload(now) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("re-reading the signing keys: {e:#}");
                false
            }
        }
    }

    fn create(&self, now: i64) -> anyhow::Result<StoredKeys> {
        let mut id = [0u8; 8];
        SystemRandom::new().fill(&mut id).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let kid = hex::encode(id);
        let retire_at = now + self.rotate_after;
        let expire_at = retire_at + MAX_CREDENTIAL_TTL;
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(&self.trust_domain, &kid, now, expire_at)?;
        let ca_der = params.self_signed(&ca_key)?.der().to_vec();
        let jwt_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate a JWT key"))?;
        Ok(StoredKeys {
            kid,
            created_at: now,
            retire_at,
            expire_at,
            ca_der,
            ca_pkcs8: ca_key.serialize_der(),
            jwt_pkcs8: jwt_pkcs8.as_ref().to_vec(),
        })
    }
}

fn ca_params(
    trust_domain: &str,
    kid: &str,
    created_at: i64,
    expire_at: i64,
) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, trust_domain);
    params.distinguished_name.push(DnType::CommonName, format!("Mooring VM CA {kid}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // The CA is the trust domain's own SVID (SPIFFE X.509-SVID, section 4.1: SHOULD).
    params.subject_alt_names = vec![rcgen::SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    // keyCertSign and cRLSign, not digitalSignature (SPIFFE X509-SVID, Appendix A: leaves only).
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(created_at - 300)?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(expire_at)?;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&hex::decode(kid)?));
    Ok(params)
}

fn load_generation(trust_domain: &str, stored: &StoredKeys) -> anyhow::Result<Generation> {
    let kid = &stored.kid;
    let ca_key = KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(stored.ca_pkcs8.clone()),
        &PKCS_ECDSA_P256_SHA256,
    )
    .with_context(|| format!("CA key {kid} unusable"))?;
    let jwt_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &stored.jwt_pkcs8)
        .map_err(|e| anyhow::anyhow!("JWT key {kid} unusable: {e}"))?;
    let ca_cert = mooring_attestation::x509::Certificate::from_der(&stored.ca_der)
        .map_err(|e| anyhow::anyhow!("CA certificate {kid} unreadable: {e}"))?;
    Ok(Generation {
        kid: kid.clone(),
        created_at: stored.created_at,
        retire_at: stored.retire_at,
        expire_at: stored.expire_at,
        ca_params: ca_params(trust_domain, kid, stored.created_at, stored.expire_at)?,
        ca_der: stored.ca_der.clone(),
        ca_cert,
        ca_key,
        jwt_key,
    })
}

//! The broker's signing keys: one generation = an X.509 CA key with its self-signed CA
//! certificate, and a JWT signing key. A new generation is made when the current one
//! reaches its rotation age; an old one stays in the trust bundle until the last
//! credential it could have signed has expired.
//!
//! Stored in `data_dir/keys`: `manifest.json`, and per generation `<kid>.ca.pk8`,
//! `<kid>.ca.der`, `<kid>.jwt.pk8` (private keys 0600, directory 0700).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

use crate::files;

/// Longest credential lifetime a policy may set; keys outlive their signing period by it.
pub(crate) const MAX_CREDENTIAL_TTL: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GenerationInfo {
    kid: String,
    created_at: i64,
    /// Stops signing at this time.
    retire_at: i64,
    /// Leaves the bundle at this time.
    expire_at: i64,
}

/// One key generation, loaded.
pub(crate) struct Generation {
    pub(crate) kid: String,
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
}

/// All generations still in the bundle, newest last.
#[derive(Debug)]
pub(crate) struct KeySet {
    dir: PathBuf,
    trust_domain: String,
    rotate_after: i64,
    generations: Mutex<Arc<Vec<Arc<Generation>>>>,
}

impl KeySet {
    /// Loads the generations in `dir` (creating the first one if there is none).
    pub(crate) fn open(
        dir: &Path,
        trust_domain: &str,
        rotate_after_hours: u32,
        now: i64,
    ) -> anyhow::Result<Self> {
        files::private_dir(dir)?;
        let manifest: Vec<GenerationInfo> = match std::fs::read(dir.join("manifest.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).context("keys/manifest.json is unreadable")?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).context("cannot read keys/manifest.json"),
        };
        let mut generations = Vec::new();
        for info in manifest.into_iter().filter(|g| g.expire_at > now) {
            generations.push(Arc::new(load_generation(dir, trust_domain, &info)?));
        }
        let set = Self {
            dir: dir.to_owned(),
            trust_domain: trust_domain.to_owned(),
            rotate_after: i64::from(rotate_after_hours) * 3600,
            generations: Mutex::new(Arc::new(generations)),
        };
        set.current(now)?;
        Ok(set)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Vec<Arc<Generation>>>> {
        self.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The generation that signs now, rotating first if it is due.
    pub(crate) fn current(&self, now: i64) -> anyhow::Result<Arc<Generation>> {
        let mut guard = self.lock();
        if let Some(newest) = guard.last().filter(|g| g.retire_at > now) {
            return Ok(Arc::clone(newest));
        }
        let created = Arc::new(self.create(now)?);
        let mut next: Vec<Arc<Generation>> = guard.iter().filter(|g| g.expire_at > now).cloned().collect();
        next.push(Arc::clone(&created));
        self.write_manifest(&next)?;
        *guard = Arc::new(next);
        tracing::info!(kid = %created.kid, "created a new signing key generation");
        Ok(created)
    }

    /// Every generation still valid for verification.
    pub(crate) fn all(&self, now: i64) -> Vec<Arc<Generation>> {
        self.lock().iter().filter(|g| g.expire_at > now).cloned().collect()
    }

    /// A generation by key id, if still valid for verification.
    pub(crate) fn find(&self, kid: &str, now: i64) -> Option<Arc<Generation>> {
        self.lock().iter().find(|g| g.kid == kid && g.expire_at > now).cloned()
    }

    fn create(&self, now: i64) -> anyhow::Result<Generation> {
        let mut id = [0u8; 8];
        SystemRandom::new().fill(&mut id).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let info = GenerationInfo {
            kid: hex::encode(id),
            created_at: now,
            retire_at: now + self.rotate_after,
            expire_at: now + self.rotate_after + MAX_CREDENTIAL_TTL,
        };
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(&self.trust_domain, &info)?;
        let ca_der = params.self_signed(&ca_key)?.der().to_vec();
        let jwt_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate a JWT key"))?;
        files::write_private(&self.dir.join(format!("{}.ca.pk8", info.kid)), &ca_key.serialize_der())?;
        files::write_public(&self.dir.join(format!("{}.ca.der", info.kid)), &ca_der)?;
        files::write_private(&self.dir.join(format!("{}.jwt.pk8", info.kid)), jwt_pkcs8.as_ref())?;
        load_generation(&self.dir, &self.trust_domain, &info)
    }

    fn write_manifest(&self, generations: &[Arc<Generation>]) -> anyhow::Result<()> {
        let infos: Vec<GenerationInfo> = generations
            .iter()
            .map(|g| GenerationInfo {
                kid: g.kid.clone(),
                created_at: g.expire_at - MAX_CREDENTIAL_TTL - self.rotate_after,
                retire_at: g.retire_at,
                expire_at: g.expire_at,
            })
            .collect();
        files::write_public(&self.dir.join("manifest.json"), &serde_json::to_vec_pretty(&infos)?)
    }
}

fn ca_params(trust_domain: &str, info: &GenerationInfo) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, trust_domain);
    params.distinguished_name.push(DnType::CommonName, format!("Mooring VM CA {}", info.kid));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(info.created_at - 300)?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(info.expire_at)?;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&hex::decode(&info.kid)?));
    Ok(params)
}

fn load_generation(dir: &Path, trust_domain: &str, info: &GenerationInfo) -> anyhow::Result<Generation> {
    let read = |suffix: &str| {
        let path = dir.join(format!("{}.{suffix}", info.kid));
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let ca_pkcs8 = read("ca.pk8")?;
    let ca_key =
        KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(ca_pkcs8), &PKCS_ECDSA_P256_SHA256)
            .context("CA key unusable")?;
    let jwt_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &read("jwt.pk8")?)
        .map_err(|e| anyhow::anyhow!("JWT key {} unusable: {e}", info.kid))?;
    let ca_der = read("ca.der")?;
    let ca_cert = mooring_attestation::x509::Certificate::from_der(&ca_der)
        .map_err(|e| anyhow::anyhow!("CA certificate {} unreadable: {e}", info.kid))?;
    Ok(Generation {
        kid: info.kid.clone(),
        retire_at: info.retire_at,
        expire_at: info.expire_at,
        ca_params: ca_params(trust_domain, info)?,
        ca_der,
        ca_cert,
        ca_key,
        jwt_key,
    })
}

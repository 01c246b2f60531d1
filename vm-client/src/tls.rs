//! Mutual TLS with the X.509-SVID for applications on the VM: a rustls client configuration
//! whose client certificate is the current `svid.pem` from the runtime directory (re-read at
//! each handshake, so renewals are picked up) and whose CertificateVerify is signed with K,
//! inside the TPM (or in guest memory on the SEV-SNP path).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mooring_client::{tls, tpm};
//! let key = tpm::key::KeyBlobs {
//!     public: std::fs::read("/var/lib/mooring/k.pub")?,
//!     private: std::fs::read("/var/lib/mooring/k.priv")?,
//! };
//! let signer = Arc::new(tpm::sign::TpmSigner::new("device:/dev/tpmrm0", key));
//! let mut roots = rustls::RootCertStore::empty();
//! // roots.add(...) the relying service's CA
//! let config = tls::client_config("/run/mooring".as_ref(), signer, roots)?;
//! # let _ = config; Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{ClientConfig, RootCertStore, SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

use crate::config::Config;
use crate::runtime::{KEY_FILE, SVID_FILE};
use crate::snp::GuestKey;
use crate::tpm::key::{KeyBlobs, K_PRIVATE_FILE, K_PUBLIC_FILE};
use crate::tpm::sign::TpmSigner;

/// Something that signs with K: ECDSA P-256 with SHA-256, DER signature.
pub trait KeySigner: std::fmt::Debug + Send + Sync {
    /// Signs `message`.
    ///
    /// # Errors
    /// A description of what failed.
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

impl KeySigner for TpmSigner {
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        Self::sign_sha256(self, message).map_err(|e| e.to_string())
    }
}

impl KeySigner for GuestKey {
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.sign(message).map_err(|e| e.to_string())
    }
}

/// The signer for K as this VM's configuration keeps it: in the TPM (`k.pub`, `k.priv` in
/// the state directory, loaded through the configured TCTI: the TPM and Azure paths) or in
/// guest memory (the PKCS#8 `svid.key` in the runtime directory, SEV-SNP path).
///
/// # Errors
/// A description of the file that cannot be read or parsed. Whether K loads in this TPM is
/// only known at the first signature.
pub fn configured_signer(config: &Config) -> Result<Arc<dyn KeySigner>, String> {
    let read = |path: PathBuf| std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()));
    if let Some(tcti) = config.evidence.tcti() {
        let key = KeyBlobs {
            public: read(config.state_dir.join(K_PUBLIC_FILE))?,
            private: read(config.state_dir.join(K_PRIVATE_FILE))?,
        };
        return Ok(Arc::new(TpmSigner::new(tcti, key)));
    }
    let path = config.runtime_dir.join(KEY_FILE);
    let key = GuestKey::from_pem(&read(path.clone())?).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Arc::new(key))
}

/// Errors building the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A rustls client configuration presenting the X.509-SVID in `runtime_dir` with K.
///
/// # Errors
/// When rustls refuses the protocol versions.
pub fn client_config(
    runtime_dir: &Path,
    signer: Arc<dyn KeySigner>,
    server_roots: RootCertStore,
) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(server_roots)
        .with_client_cert_resolver(Arc::new(SvidResolver { svid: runtime_dir.join(SVID_FILE), signer })))
}

/// Resolves the client certificate from the runtime directory at each handshake.
#[derive(Debug)]
struct SvidResolver {
    svid: PathBuf,
    signer: Arc<dyn KeySigner>,
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        if !schemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256) {
            tracing::warn!(
                "the server accepts no ECDSA P-256 SHA-256 client signatures; no client certificate sent"
            );
            return None;
        }
        let pem = match std::fs::read(&self.svid) {
            Ok(pem) => pem,
            Err(e) => {
                tracing::warn!(path = %self.svid.display(), error = %e, "no X.509-SVID to present");
                return None;
            }
        };
        let chain: Vec<CertificateDer<'static>> = match CertificateDer::pem_slice_iter(&pem).collect() {
            Ok(chain) => chain,
            Err(e) => {
                tracing::warn!(path = %self.svid.display(), error = %e, "malformed X.509-SVID");
                return None;
            }
        };
        if chain.is_empty() {
            return None;
        }
        let key: Arc<dyn SigningKey> = Arc::new(KSigningKey { signer: Arc::clone(&self.signer) });
        Some(Arc::new(CertifiedKey::new(chain, key)))
    }

    fn has_certs(&self) -> bool {
        self.svid.is_file()
    }
}

#[derive(Debug)]
struct KSigningKey {
    signer: Arc<dyn KeySigner>,
}

impl SigningKey for KSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(KSigner { signer: Arc::clone(&self.signer) }) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct KSigner {
    signer: Arc<dyn KeySigner>,
}

impl Signer for KSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.signer.sign_sha256(message).map_err(|e| rustls::Error::General(format!("signing with K: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

//! HTTPS: this service's certificate, and a client-certificate verifier that follows the
//! broker's trust bundle (X.509-SVIDs as TLS client certificates, optional). Connections
//! are served by `mooring-serve`, as the broker's are.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context as _;
use mooring_attestation::svid::TrustBundle;
use rcgen::{CertificateParams, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::config::TlsConfig;

/// Accepts client certificates issued by the current trust bundle's CAs; callers without
/// one are let through to present a JWT-SVID.
pub(crate) struct BundleClientVerifier {
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for BundleClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BundleClientVerifier")
    }
}

impl BundleClientVerifier {
    pub(crate) fn new(bundle: &TrustBundle) -> anyhow::Result<Self> {
        let provider = mooring_serve::provider();
        Ok(Self { inner: RwLock::new(webpki_verifier(bundle, &provider)?), provider })
    }

    /// Follows a new bundle (new CAs after a key rotation).
    pub(crate) fn update(&self, bundle: &TrustBundle) -> anyhow::Result<()> {
        let verifier = webpki_verifier(bundle, &self.provider)?;
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = verifier;
        Ok(())
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }
}

fn webpki_verifier(
    bundle: &TrustBundle,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for ca in bundle.x509_authorities() {
        roots.add(CertificateDer::from(ca.der().to_vec())).context("trust bundle CA unusable for TLS")?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .allow_unauthenticated()
        .build()
        .context("client certificate verifier")
}

impl ClientCertVerifier for BundleClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would change with the bundle; an empty list is allowed (RFC 8446 §4.2.4).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The server configuration: configured files, or a generated self-signed certificate
/// (written out for callers to pin).
pub(crate) fn server_config(
    tls: &TlsConfig,
    listen: IpAddr,
    client_verifier: Arc<BundleClientVerifier>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let (chain, key) = match tls {
        TlsConfig::Files { certificate, private_key } => {
            (mooring_serve::read_certificates(certificate)?, mooring_serve::read_private_key(private_key)?)
        }
        TlsConfig::Generate { write_certificate } => generate(write_certificate, listen)?,
    };
    let config = ServerConfig::builder_with_provider(mooring_serve::provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .context("server certificate and key do not fit")?;
    Ok(Arc::new(config))
}

type Material = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn generate(write_certificate: &Path, listen: IpAddr) -> anyhow::Result<Material> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params.subject_alt_names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    if !listen.is_unspecified() && !listen.is_loopback() {
        params.subject_alt_names.push(SanType::IpAddress(listen));
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        if let Ok(name) = host.trim().to_owned().try_into() {
            params.subject_alt_names.push(SanType::DnsName(name));
        }
    }
    let cert = params.self_signed(&key)?;
    std::fs::write(write_certificate, cert.pem())
        .with_context(|| format!("cannot write {}", write_certificate.display()))?;
    let key =
        PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| anyhow::anyhow!("generated key: {e}"))?;
    Ok((vec![cert.der().clone()], key))
}

//! HTTPS: this service's certificate, a client-certificate verifier that follows the
//! broker's trust bundle (X.509-SVIDs as TLS client certificates, optional), and the
//! accept loop that hands each request its connection's peer address and client
//! certificate.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use mooring_attestation::svid::TrustBundle;
use rcgen::{CertificateParams, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::config::TlsConfig;

/// Time allowed for a TLS handshake and for a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What the routes learn about the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The caller's address as this service saw it.
    pub(crate) peer: SocketAddr,
    /// The client certificate (leaf, DER) the TLS layer verified, if the caller sent one.
    pub(crate) client_leaf: Option<CertificateDer<'static>>,
}

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
        let provider = provider();
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
        TlsConfig::Files { certificate, private_key } => (read_certs(certificate)?, read_key(private_key)?),
        TlsConfig::Generate { write_certificate } => generate(write_certificate, listen)?,
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .context("server certificate and key do not fit")?;
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: bad PEM", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", path.display());
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("cannot read the private key {}", path.display()))
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

/// Serves `app` over TLS on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let client_leaf = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.clone().into_owned());
                    let connection = Connection { peer, client_leaf };
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                        request.extensions_mut().insert(connection.clone());
                        app.clone().oneshot(request.map(axum::body::Body::new))
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HANDSHAKE_TIMEOUT)
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(%peer, "connection: {e}");
                    }
                }
                Ok(Err(e)) => tracing::info!(%peer, "TLS handshake refused: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

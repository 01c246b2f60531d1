//! HTTPS: the server's TLS material (configured, or generated on first start) and the
//! accept loop that hands each connection's peer address and admin identity to the
//! routes.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::Connection;
use crate::config::Config;
use crate::files;

/// Time allowed for a TLS handshake and for a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Paths of generated TLS material, for the operator.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    /// The generated server CA; none when `[tls]` names the operator's own certificate.
    pub(crate) server_ca: Option<PathBuf>,
    pub(crate) admin_certificate: Option<(PathBuf, PathBuf)>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server configuration; generates what is missing under `data_dir/tls`.
pub(crate) fn server_config(config: &Config) -> anyhow::Result<(Arc<ServerConfig>, Option<Generated>)> {
    let dir = config.data_dir.join("tls");
    files::private_dir(&dir)?;
    let mut generated = None;
    let (chain, key) = match &config.tls {
        Some(tls) => (read_certs(&tls.certificate)?, read_key(&tls.private_key)?),
        None => {
            let server = dir.join("server.pem");
            if !server.exists() {
                create_server_certificate(&dir, config)?;
                generated = Some(Generated { server_ca: Some(dir.join("ca.pem")), admin_certificate: None });
            }
            (read_certs(&server)?, read_key(&dir.join("server.key"))?)
        }
    };
    let admin_ca = match &config.admin.client_ca {
        Some(path) => path.clone(),
        None => {
            let path = dir.join("admin-ca.pem");
            if !path.exists() {
                create_admin_certificates(&dir)?;
                let admin = (dir.join("admin.pem"), dir.join("admin.key"));
                generated
                    .get_or_insert(Generated { server_ca: None, admin_certificate: None })
                    .admin_certificate = Some(admin);
            }
            path
        }
    };
    let mut roots = RootCertStore::empty();
    for cert in read_certs(&admin_ca)? {
        roots.add(cert).context("admin client CA unusable")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .context("admin client verifier")?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("server certificate and key do not fit")?;
    Ok((Arc::new(server), generated))
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

fn ca(name: &str) -> anyhow::Result<(CertificateParams, KeyPair)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    Ok((params, key))
}

fn leaf(name: &str, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(825);
    params
}

fn create_server_certificate(dir: &Path, config: &Config) -> anyhow::Result<()> {
    let (ca_params, ca_key) = ca("Mooring broker local CA")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let mut sans = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
    ];
    if !config.listen.ip().is_unspecified() && !config.listen.ip().is_loopback() {
        sans.push(SanType::IpAddress(config.listen.ip()));
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        if let Ok(name) = host.trim().to_owned().try_into() {
            sans.push(SanType::DnsName(name));
        }
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = leaf("mooring-broker", sans, ExtendedKeyUsagePurpose::ServerAuth).signed_by(&key, &issuer)?;
    files::write_public(&dir.join("ca.pem"), ca_cert.pem().as_bytes())?;
    files::write_public(&dir.join("server.pem"), format!("{}{}", cert.pem(), ca_cert.pem()).as_bytes())?;
    files::write_private(&dir.join("server.key"), key.serialize_pem().as_bytes())
}

fn create_admin_certificates(dir: &Path) -> anyhow::Result<()> {
    let (ca_params, ca_key) = ca("Mooring broker admin CA")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let cert =
        leaf("mooring-admin", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth).signed_by(&key, &issuer)?;
    files::write_public(&dir.join("admin-ca.pem"), ca_cert.pem().as_bytes())?;
    files::write_public(&dir.join("admin.pem"), cert.pem().as_bytes())?;
    files::write_private(&dir.join("admin.key"), key.serialize_pem().as_bytes())
}

/// Most bytes one connection buffers while reading (hyper's default is 400 KiB): one TLS
/// record. Bodies stream through it; measured under a boot storm, it saves ~90 KiB per
/// open connection at no cost in throughput (8 KiB cost a sixth of it).
const READ_BUFFER: usize = 16 * 1024;

/// Serves `app` over TLS on `listener` until `shutdown` completes, then waits (up to
/// 10 s) for requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let active = Arc::new(AtomicUsize::new(0));
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
        let active = Arc::clone(&active);
        active.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let admin = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|cert| mooring_attestation::x509::Certificate::from_der(cert).ok())
                        .map(|cert| cert.subject().to_owned());
                    let connection = Connection { peer, admin };
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                        request.extensions_mut().insert(connection.clone());
                        app.clone().oneshot(request.map(axum::body::Body::new))
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HANDSHAKE_TIMEOUT)
                        .max_buf_size(READ_BUFFER)
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(%peer, "connection: {e}");
                    }
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    for _ in 0..100 {
        if active.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

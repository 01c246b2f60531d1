//! HTTPS serving shared by the Mooring broker and relying services (the payment example):
//! the TLS accept loop with handshake and header deadlines, the connection's peer (address
//! and client certificate) handed to the routes as a request extension, reading the server's
//! certificate and key, and graceful shutdown on SIGINT or SIGTERM (hyper-util's
//! [`GracefulShutdown`]: requests in flight finish, idle connections close).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Time allowed for a TLS handshake and for a request's headers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a shutdown waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection; every request carries it as an extension.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The TCP peer.
    pub address: SocketAddr,
    /// The first certificate of the client's chain, when it sent one (mutual TLS).
    pub client_certificate: Option<CertificateDer<'static>>,
}

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes one connection buffers while reading (hyper's default is 400 KiB).
    pub read_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { read_buffer: 400 * 1024 }
    }
}

/// rustls on aws-lc-rs, the one provider of every Mooring TLS endpoint.
#[must_use]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates of a PEM file, in order.
///
/// # Errors
/// When the file is unreadable or holds no certificate.
pub fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

/// The private key of a PEM file.
///
/// # Errors
/// When the file is unreadable or holds no private key.
pub fn read_private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("cannot read the private key {}", path.display()))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets requests in
/// flight finish (at most [`DRAIN_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, address) = tokio::select! {
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
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%address, "TLS handshake: {e}"),
                Err(_) => return tracing::debug!(%address, "TLS handshake timed out"),
            };
            let client_certificate =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
            let peer = Peer { address, client_certificate };
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(peer.clone());
                app.clone().oneshot(request.map(axum::body::Body::new))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .max_buf_size(limits.read_buffer)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%address, "connection: {e}");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {} s; stopping anyway", DRAIN_TIMEOUT.as_secs());
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// A service's configuration file: TOML whose unknown keys the type refuses
/// (`#[serde(deny_unknown_fields)]`), whose relative paths are relative to the file, and
/// which is checked as a whole before the service starts.
pub trait ConfigFile: serde::de::DeserializeOwned {
    /// Every path the configuration names, to be resolved against the file's directory.
    fn paths(&mut self) -> Vec<&mut std::path::PathBuf>;

    /// What the types cannot say: values that conflict or are out of range.
    ///
    /// # Errors
    /// The first problem, for the operator.
    fn check(&self) -> anyhow::Result<()>;

    /// Reads, resolves and checks `path`.
    ///
    /// # Errors
    /// When the file is unreadable, is not this configuration, or fails [`ConfigFile::check`].
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: Self = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for path in config.paths() {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        config.check()?;
        Ok(config)
    }
}

//! TLS to PostgreSQL on rustls with aws-lc-rs, the provider of every Mooring TLS endpoint:
//! a `MakeTlsConnect` for the `postgres` client over tokio-rustls, written here rather than
//! taken from a crate (the ones published pull in ring, or a second SHA-2 and certificate
//! parser, for the channel binding this does with aws-lc-rs and the library's parser).
//!
//! `verify-full` semantics: the server's certificate must chain to the configured CA file
//! and name the host the configuration connects to (DNS name or IP address, as libpq's
//! `sslmode=verify-full`); `hostaddr` may say where to connect, the name checked is still
//! `host`'s. SCRAM authentication is bound to the TLS channel (`tls-server-end-point`)
//! when the server offers it.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::x509::Certificate;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;

use crate::store::StoreError;

/// How connections to the database are protected: `None` is plaintext (a Unix socket, a
/// loopback address, or a link the operator vouched for).
#[derive(Clone)]
pub(crate) struct Tls(Option<Arc<ClientConfig>>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "verify-full" } else { "off" })
    }
}

impl Tls {
    /// No TLS.
    pub(super) fn off() -> Self {
        Self(None)
    }

    /// TLS, the server's certificate checked against the CA certificates in `ca_file`.
    pub(super) fn verify_full(ca_file: &Path) -> Result<Self, StoreError> {
        let unusable =
            |reason: String| StoreError::Config(format!("postgres.ca_file {}: {reason}", ca_file.display()));
        let mut roots = RootCertStore::empty();
        for cert in mooring_serve::read_certificates(ca_file).map_err(|e| unusable(format!("{e:#}")))? {
            roots.add(cert).map_err(|e| unusable(format!("not a usable CA certificate: {e}")))?;
        }
        let config = ClientConfig::builder_with_provider(mooring_serve::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Config(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self(Some(Arc::new(config))))
    }
}

impl MakeTlsConnect<Socket> for Tls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, io::Error> {
        let Some(config) = &self.0 else {
            return Ok(RustlsConnect(None));
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be checked against a certificate: {e}"),
            )
        })?;
        Ok(RustlsConnect(Some((TlsConnector::from(Arc::clone(config)), name))))
    }
}

/// One handshake, with the name the server's certificate must carry.
pub(crate) struct RustlsConnect(Option<(TlsConnector, ServerName<'static>)>);

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            // `off` sets `sslmode=disable`, so the client never asks for this.
            let (connector, name) = self.0.ok_or_else(|| io::Error::other("TLS is off for this database"))?;
            connector.connect(name, stream).await.map(RustlsStream)
        })
    }
}

/// A TLS session with the server.
pub(crate) struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        let certificate = self.0.get_ref().1.peer_certificates().and_then(|chain| chain.first());
        certificate
            .and_then(|der| server_end_point(der))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929 `tls-server-end-point`: the server certificate hashed with the hash of its
/// signature algorithm, SHA-256 for MD5 and SHA-1. `None` for a certificate this cannot
/// read (then SCRAM runs without channel binding).
fn server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    let hash = match Certificate::from_der(der).ok()?.signature_scheme().ok()?.hash() {
        HashAlg::Sha1 | HashAlg::Sha256 => &aws_lc_rs::digest::SHA256,
        HashAlg::Sha384 => &aws_lc_rs::digest::SHA384,
        HashAlg::Sha512 => &aws_lc_rs::digest::SHA512,
        _ => return None,
    };
    Some(aws_lc_rs::digest::digest(hash, der).as_ref().to_vec())
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

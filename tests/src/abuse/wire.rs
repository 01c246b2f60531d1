//! HTTP/1.1 over TLS by hand, so a request can be sent the way an attacker sends it: a
//! head announcing a large body, then the body a byte at a time; from a chosen loopback
//! address; with the answer read only as far as its status line and length.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Longest answer head read.
const MAX_HEAD: usize = 16 * 1024;
/// Longest answer body read (the broker's refusals are a line of JSON).
const MAX_ANSWER_BODY: usize = 1 << 20;
/// How long an answer may take once the request is sent.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting and the TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The broker under attack: its address and a TLS client pinned to its CA.
#[derive(Clone)]
pub struct Endpoint {
    address: SocketAddr,
    connector: TlsConnector,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The broker listening on `address`, whose server certificate chains to `ca_pem`
    /// (and names `localhost`).
    ///
    /// # Errors
    /// When `ca_pem` holds no usable certificate.
    pub fn new(address: SocketAddr, ca_pem: &[u8]) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.context("broker CA: bad PEM")?).context("broker CA unusable")?;
        }
        anyhow::ensure!(!roots.is_empty(), "broker CA: no certificate");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { address, connector: TlsConnector::from(Arc::new(config)) })
    }

    /// A TLS connection from `source`.
    pub(crate) async fn connect(&self, source: IpAddr) -> io::Result<TlsStream<TcpStream>> {
        let connect = async {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let tcp = socket.connect(self.address).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
            self.connector.connect(name, tcp).await
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect and TLS handshake"))?
    }
}

/// A request head: `POST path` with a body of `length` bytes (JSON), keep-alive.
pub(crate) fn post_head(path: &str, length: usize) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// A `GET path` request.
pub(crate) fn get_head(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").into_bytes()
}

/// What came back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The server closes the connection after it.
    pub(crate) close: bool,
}

/// Sends `head` and `body` in one go.
pub(crate) async fn send(stream: &mut TlsStream<TcpStream>, head: &[u8], body: &[u8]) -> io::Result<()> {
    stream.write_all(head).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

/// Reads one answer: its head, then its body (by `content-length`, chunked, or to the end).
pub(crate) async fn read_answer(stream: &mut TlsStream<TcpStream>) -> io::Result<Answer> {
    tokio::time::timeout(ANSWER_TIMEOUT, read_answer_inner(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
}

async fn read_answer_inner(stream: &mut TlsStream<TcpStream>) -> io::Result<Answer> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_HEAD {
            return Err(invalid("answer head too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before answering"));
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = std::str::from_utf8(buffer.get(..head_end).unwrap_or_default())
        .map_err(|_| invalid("answer head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
        match name.as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.contains("close"),
            _ => {}
        }
    }
    let mut body = buffer.len().saturating_sub(head_end);
    let tail_start = buffer.len();
    match (length, chunked) {
        (Some(length), _) => {
            let length = length.min(MAX_ANSWER_BODY);
            while body < length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "answer body cut short"));
                }
                body += n;
            }
        }
        (None, true) => {
            // Enough for the broker's answers: read until the last chunk's terminator.
            while !buffer.ends_with(b"0\r\n\r\n") {
                if buffer.len() > tail_start + MAX_ANSWER_BODY {
                    return Err(invalid("chunked answer too long"));
                }
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "answer body cut short"));
                }
                buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
        }
        (None, false) => close = true,
    }
    Ok(Answer { status, close })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

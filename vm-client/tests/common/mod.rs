//! A VM for client tests: a real swtpm, the real broker admitting it, and a client
//! configuration pointing at both, with the runtime directory on tmpfs (/dev/shm).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code, unreachable_pub, unused_imports)]

use std::ops::{Deref, DerefMut};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use mooring_tests::broker::{loopback, Broker};
use mooring_tests::client::{tpm_broker_setup, ClientVm};

pub use mooring_tests::client::{OutputText, CLIENT_EXIT_REFUSED, CLIENT_EXIT_UNAVAILABLE};

/// The test VM (from 127.0.0.1) and a broker admitting it.
pub struct Vm {
    pub vm: ClientVm,
    pub broker: Broker,
}

impl Deref for Vm {
    type Target = ClientVm;
    fn deref(&self) -> &ClientVm {
        &self.vm
    }
}

impl DerefMut for Vm {
    fn deref_mut(&mut self) -> &mut ClientVm {
        &mut self.vm
    }
}

impl Vm {
    pub fn start(test: &str) -> Option<Self> {
        let vm = ClientVm::start_or_skip(test, loopback(1))?;
        let broker = Broker::start(&tpm_broker_setup(&[&vm.tpm], &["127.0.0.1/32"]));
        vm.write_config(&broker);
        Some(Self { vm, broker })
    }

    /// (Re)writes the client configuration for the broker's current port.
    pub fn write_config(&self) {
        self.vm.write_config(&self.broker);
    }
}

/// Asserts a file is mode 0600.
pub fn assert_private(path: &Path) {
    let mode = std::fs::metadata(path).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
}

/// Whether OpenSSL has the tpm2 provider (Debian package tpm2-openssl).
pub fn openssl_tpm2_provider_available() -> bool {
    Path::new("/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so").exists()
        || Command::new("openssl")
            .args(["list", "-providers", "-provider", "tpm2"])
            .env("TPM2OPENSSL_TCTI", "swtpm:host=127.0.0.1,port=1")
            .env("TSS2_LOG", "all+none")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("tpm2"))
}

/// Waits up to `timeout` for `done`, polling.
pub fn wait_for(timeout: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    done()
}

/// A mutual-TLS handshake from `client_config` to an in-process rustls server that requires
/// a client certificate chaining to `bundle_pem`; returns the client certificate the server
/// saw (leaf).
pub fn mtls_peer_certificate(
    make_client: impl FnOnce(rustls::RootCertStore) -> rustls::ClientConfig,
    bundle_pem: &[u8],
) -> rustls_pki_types::CertificateDer<'static> {
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let server_cert = server_key.cert.der().clone();
    let mut client_roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem) {
        client_roots.add(cert.unwrap()).unwrap();
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone())
            .build()
            .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.clone()],
            PrivateKeyDer::Pkcs8(server_key.signing_key.serialize_der().into()),
        )
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let connection = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let mut ping = [0u8; 4];
        stream.read_exact(&mut ping).unwrap();
        assert_eq!(&ping, b"ping");
        stream.write_all(b"pong").unwrap();
        stream.flush().unwrap();
        stream.conn.peer_certificates().unwrap().first().unwrap().clone().into_owned()
    });
    let mut server_roots = rustls::RootCertStore::empty();
    server_roots.add(server_cert).unwrap();
    let client_config = make_client(server_roots);
    let connection =
        rustls::ClientConnection::new(Arc::new(client_config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, std::net::TcpStream::connect(address).unwrap());
    stream.write_all(b"ping").unwrap();
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong");
    server.join().unwrap()
}

/// The leaf of a PEM chain.
pub fn leaf(chain_pem: &[u8]) -> rustls_pki_types::CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem).next().unwrap().unwrap()
}

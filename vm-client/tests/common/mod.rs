//! A VM for client tests: a real swtpm, the real broker admitting it, and a client
//! configuration pointing at both, with the runtime directory on tmpfs (/dev/shm).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code, unreachable_pub)]

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mooring_attestation::x509::bundle::parse_one_certificate;
use mooring_tests::broker::{Broker, BrokerSetup};
use mooring_tests::{EkKind, Swtpm, SwtpmOptions};

/// Exit status of `mooring-client` when the broker refuses the VM.
pub const CLIENT_EXIT_REFUSED: i32 = 3;
/// Exit status when the broker cannot be reached.
pub const CLIENT_EXIT_UNAVAILABLE: i32 = 4;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A broker policy admitting TPMs whose EK certificate `issuer` signed, from 127.0.0.1.
pub fn tpm_policy(issuer: &str) -> String {
    format!(
        r#"version = 1

[[class]]
name = "web"
evidence = "tpm"
ttl_seconds = 60
audiences = ["payments"]
networks = ["127.0.0.1/32"]

[class.match]
ek_issuers = [{issuer:?}]

[class.tpm]
pcr_bank = "sha256"
pcrs = [0, 1, 2, 3, 4, 5, 6, 7]

[class.tpm.pcr_values]
0 = ["{ZERO}"]
7 = ["{ZERO}"]

[[class.secrets]]
name = "payment-key"
file = "payment.key"
"#
    )
}

/// The test VM.
pub struct Vm {
    pub tpm: Swtpm,
    pub broker: Broker,
    /// Holds the state directory and the configuration.
    pub dir: tempfile::TempDir,
    /// The runtime directory's parent, on tmpfs.
    pub run: tempfile::TempDir,
}

impl Vm {
    pub fn start(test: &str) -> Option<Self> {
        let tpm = Swtpm::start_or_skip(test, SwtpmOptions::default())?;
        let ek_cert = tpm.ek_cert_der(EkKind::Rsa2048).unwrap();
        let issuer = parse_one_certificate(&ek_cert).unwrap().issuer().to_owned();
        let broker = Broker::start(&BrokerSetup {
            policy: tpm_policy(&issuer),
            ek_roots: tpm.ek_cert_ca_files().all().iter().map(|p| p.to_path_buf()).collect(),
            extra_config: String::new(),
            secrets: vec![("payment.key".into(), b"pay-4242-secret".to_vec())],
        });
        let dir = tempfile::Builder::new().prefix("mooring-client-").tempdir().unwrap();
        let run = tempfile::Builder::new().prefix("mooring-client-run-").tempdir_in("/dev/shm").unwrap();
        let vm = Self { tpm, broker, dir, run };
        vm.write_config();
        Some(vm)
    }

    /// (Re)writes the client configuration for the broker's current port.
    pub fn write_config(&self) {
        let config = format!(
            r#"broker_url = "https://127.0.0.1:{port}"
broker_ca = {ca:?}
runtime_dir = {runtime:?}
state_dir = {state:?}
source_address = "127.0.0.1"

[evidence]
kind = "tpm"
tcti = {tcti:?}

[renewal]
retry_initial_seconds = 1
retry_max_seconds = 2
"#,
            port = self.broker.address.port(),
            ca = self.broker.data_dir().join("tls/ca.pem").display().to_string(),
            runtime = self.runtime_dir().display().to_string(),
            state = self.state_dir().display().to_string(),
            tcti = self.tpm.tcti(),
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("client.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.run.path().join("mooring")
    }

    /// Runs `mooring-client --config .. ARGS` to completion.
    pub fn client(&self, args: &[&str]) -> Output {
        self.client_command(args).output().unwrap()
    }

    pub fn client_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(mooring_tests::workspace_binary("mooring-client"));
        command
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("TSS2_LOG", "all+none")
            .env("MOORING_LOG", "info");
        command
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.runtime_dir().join("status.json")).unwrap()).unwrap()
    }

    /// Extends a PCR (what a different boot chain would do).
    pub fn extend_pcr(&self, pcr: u8) {
        let tools = self.tpm.tools();
        tools.run("tpm2_pcrextend", [format!("{pcr}:sha256={}", "ab".repeat(32))]).unwrap();
    }
}

pub trait OutputText {
    fn stdout_text(&self) -> String;
    fn stderr_text(&self) -> String;
}

impl OutputText for Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
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

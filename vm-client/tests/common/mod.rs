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

//! A simulated VM running the real `mooring-client`: its own swtpm, its own loopback source
//! address, a state directory and a runtime directory on tmpfs (/dev/shm), and a client
//! configuration pointing at a [`Broker`]; plus the SEV-SNP platform of a confidential VM
//! (the attestation crate's test signer behind the client's [`SnpDevice`] trait). For test
//! bodies: everything here panics on failure, naming what failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mooring_attestation::snp::sim::TestSigner;
use mooring_attestation::x509::bundle::parse_one_certificate;
use mooring_client::snp::{GuestError, SnpDevice, SnpEvidence};

use crate::broker::{Broker, BrokerSetup};
use crate::{EkKind, Swtpm, SwtpmOptions};

/// Exit status of `mooring-client` when the broker refuses the VM.
pub const CLIENT_EXIT_REFUSED: i32 = 3;
/// Exit status when the broker cannot be reached.
pub const CLIENT_EXIT_UNAVAILABLE: i32 = 4;

/// A PCR value of a fresh swtpm (nothing measured).
pub const ZERO_PCR: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The sealed secret every TPM class releases (`payment-key`, file `payment.key`).
pub const PAYMENT_SECRET: &[u8] = b"pay-4242-secret";

/// A broker policy with one TPM class `web` (TTL 60 s, the policy minimum; audience
/// `payments`; PCRs 0-7 quoted, 0 and 7 must be zero as on a fresh swtpm) admitting TPMs
/// whose EK certificate one of `issuers` signed, from `networks`; it releases `payment-key`.
pub fn tpm_policy(issuers: &[String], networks: &[&str]) -> String {
    tpm_policy_with_ttl(issuers, networks, 60)
}

/// [`tpm_policy`] with credentials living `ttl_seconds`.
pub fn tpm_policy_with_ttl(issuers: &[String], networks: &[&str], ttl_seconds: u32) -> String {
    tpm_policy_matching(&format!("ek_issuers = {issuers:?}"), networks, ttl_seconds)
}

/// [`tpm_policy`]'s class admitting the TPMs `matching` (the body of `[class.match]`, e.g.
/// `enrolled = true`).
pub fn tpm_policy_matching(matching: &str, networks: &[&str], ttl_seconds: u32) -> String {
    format!(
        r#"version = 1

[[class]]
name = "web"
evidence = "tpm"
ttl_seconds = {ttl_seconds}
audiences = ["payments"]
networks = {networks:?}

[class.match]
{matching}

[class.tpm]
pcr_bank = "sha256"
pcrs = [0, 1, 2, 3, 4, 5, 6, 7]

[class.tpm.pcr_values]
0 = ["{ZERO_PCR}"]
7 = ["{ZERO_PCR}"]

[[class.secrets]]
name = "payment-key"
file = "payment.key"
"#
    )
}

/// A broker setup for [`tpm_policy`] admitting `tpms`: EK roots from each one's local CA
/// (instances started in parallel before the shared CA existed have CAs of their own), the
/// secret file beside the policy.
pub fn tpm_broker_setup(tpms: &[&Swtpm], networks: &[&str]) -> BrokerSetup {
    let mut issuers: Vec<String> = tpms.iter().map(|tpm| ek_issuer(tpm)).collect();
    issuers.sort();
    issuers.dedup();
    let mut ek_roots: Vec<PathBuf> =
        tpms.iter().flat_map(|tpm| tpm.ek_cert_ca_files().all().map(Path::to_path_buf)).collect();
    ek_roots.sort();
    ek_roots.dedup();
    BrokerSetup {
        policy: tpm_policy(&issuers, networks),
        ek_roots,
        extra_config: String::new(),
        secrets: vec![("payment.key".into(), PAYMENT_SECRET.to_vec())],
    }
}

/// The issuer (RFC 4514 text) of `tpm`'s RSA EK certificate.
pub fn ek_issuer(tpm: &Swtpm) -> String {
    let ek_cert = tpm.ek_cert_der(EkKind::Rsa2048).unwrap();
    parse_one_certificate(&ek_cert).unwrap().issuer().to_owned()
}

/// A VM on the TPM path: its swtpm, directories and configuration.
#[derive(Debug)]
pub struct ClientVm {
    pub tpm: Swtpm,
    /// The address it connects from (`source_address` in its configuration).
    pub address: IpAddr,
    /// Holds the state directory and the configuration.
    pub dir: tempfile::TempDir,
    /// The runtime directory's parent, on tmpfs.
    pub run: tempfile::TempDir,
}

impl ClientVm {
    /// A VM with a fresh swtpm, connecting from `address`; `None` (after saying why) when
    /// swtpm is not installed outside CI. Write its configuration with
    /// [`ClientVm::write_config`] once the broker runs.
    pub fn start_or_skip(test: &str, address: IpAddr) -> Option<Self> {
        Self::start_with_or_skip(test, address, SwtpmOptions::default())
    }

    /// [`ClientVm::start_or_skip`] with a swtpm made with `options` (e.g. no EK certificate).
    pub fn start_with_or_skip(test: &str, address: IpAddr, options: SwtpmOptions) -> Option<Self> {
        let tpm = Swtpm::start_or_skip(test, options)?;
        let dir = tempfile::Builder::new().prefix("mooring-client-").tempdir().unwrap();
        let run = tempfile::Builder::new().prefix("mooring-client-run-").tempdir_in("/dev/shm").unwrap();
        Some(Self { tpm, address, dir, run })
    }

    /// A clone of this VM (its vTPM state and the client's state directory copied, as a
    /// hypervisor snapshot restored elsewhere) connecting from `address`. Write its
    /// configuration with [`ClientVm::write_config`].
    pub fn clone_to(&self, address: IpAddr) -> Self {
        let tpm = self.tpm.clone_state().unwrap();
        let dir = tempfile::Builder::new().prefix("mooring-client-").tempdir().unwrap();
        let run = tempfile::Builder::new().prefix("mooring-client-run-").tempdir_in("/dev/shm").unwrap();
        let clone = Self { tpm, address, dir, run };
        copy_dir(&self.state_dir(), &clone.state_dir());
        clone
    }

    /// (Re)writes the client configuration for `broker` (its current port).
    pub fn write_config(&self, broker: &Broker) {
        self.write_config_with(broker, "kind = \"tpm\"\n");
    }

    /// (Re)writes the client configuration for `broker` with `evidence` (the lines of the
    /// `[evidence]` table besides `tcti`, which is this VM's swtpm).
    pub fn write_config_with(&self, broker: &Broker, evidence: &str) {
        let config = format!(
            r#"broker_url = "https://127.0.0.1:{port}"
broker_ca = {ca:?}
runtime_dir = {runtime:?}
state_dir = {state:?}
source_address = "{address}"

[evidence]
{evidence}tcti = {tcti:?}

[renewal]
retry_initial_seconds = 1
retry_max_seconds = 2
"#,
            port = broker.address.port(),
            ca = broker.data_dir().join("tls/ca.pem").display().to_string(),
            runtime = self.runtime_dir().display().to_string(),
            state = self.state_dir().display().to_string(),
            address = self.address,
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
        let mut command = Command::new(crate::workspace_binary("mooring-client"));
        command
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("TSS2_LOG", "all+none")
            .env("MOORING_LOG", "info");
        command
    }

    /// `mooring-client attest`, which must succeed.
    pub fn attest(&self) {
        let out = self.client(&["attest"]);
        assert!(out.status.success(), "mooring-client attest: {}", out.stderr_text());
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

/// Copies the files of directory `from` into `to` (created 0700), one level of
/// subdirectories deep: what a copy of a VM's disk or memory yields.
pub fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Text of a process's output.
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

/// The launch measurement of a good simulated confidential VM.
pub const SNP_MEASUREMENT: [u8; 48] = [0x5a; 48];

/// The test signer as a SEV-SNP platform behind the client's device trait: signs a report
/// with the requested REPORT_DATA and VMPL and the measurement [`SNP_MEASUREMENT`], and hands
/// out its certificate table like a host with extended-report certificates.
#[derive(Debug)]
pub struct TestSignerDevice {
    pub signer: TestSigner,
    /// Sign over other REPORT_DATA than asked (a report bound to someone else's keys).
    pub wrong_report_data: bool,
}

impl SnpDevice for TestSignerDevice {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<SnpEvidence, GuestError> {
        let mut fields = self.signer.report_fields();
        fields.measurement = SNP_MEASUREMENT;
        fields.report_data = *report_data;
        if self.wrong_report_data {
            fields.report_data[0] ^= 1;
        }
        fields.vmpl = vmpl;
        Ok(SnpEvidence {
            report: self.signer.sign(&fields),
            certificate_table: Some(self.signer.cert_table()),
        })
    }
}

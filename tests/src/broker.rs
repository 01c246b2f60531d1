//! The real `mooring-broker serve` on a temporary data directory, and HTTPS clients pinned
//! to the CA it generates (optionally presenting its admin certificate). For test bodies:
//! everything here panics on failure, naming what failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running `mooring-broker serve`.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub address: SocketAddr,
    /// The OIDC issuer's own listener (`[federation] listen`), when configured.
    pub issuer_address: Option<SocketAddr>,
    /// Where the server CA and admin certificate are (this broker's `data/tls`, or the
    /// first replica's).
    tls_dir: PathBuf,
}

/// What to put into the broker's configuration and policy.
#[derive(Debug, Default)]
pub struct BrokerSetup {
    pub policy: String,
    pub ek_roots: Vec<PathBuf>,
    pub extra_config: String,
    /// Secret files to create next to the policy: (file name, content).
    pub secrets: Vec<(String, Vec<u8>)>,
}

impl Broker {
    pub fn start(setup: &BrokerSetup) -> Self {
        Self::start_with_tls(setup, None)
    }

    /// Another replica behind the same name: it serves `first`'s server certificate and
    /// accepts `first`'s admin certificate (as `[tls]` and `[admin]` files, the way
    /// replicas behind a load balancer are configured), so one pinned CA reaches both.
    pub fn start_replica(setup: &BrokerSetup, first: &Broker) -> Self {
        Self::start_with_tls(setup, Some(first.tls_dir.clone()))
    }

    fn start_with_tls(setup: &BrokerSetup, shared_tls: Option<PathBuf>) -> Self {
        let dir = tempfile::Builder::new().prefix("mooring-broker-").tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), &setup.policy).unwrap();
        for (name, content) in &setup.secrets {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let roots: Vec<String> =
            setup.ek_roots.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
        let mut config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ntrust_domain = \"test.mooring\"\npolicy = \"policy.toml\"\n{}\n\n[tpm]\nek_roots = [{}]\n",
            setup.extra_config,
            roots.join(", ")
        );
        if !setup.extra_config.contains("[audit]") {
            // Summaries of anonymous refusals each second, so tests see them soon.
            config.push_str("\n[audit]\nsummary_seconds = 1\n");
        }
        let tls_dir = match shared_tls {
            Some(tls) => {
                let file = |name: &str| format!("{:?}", tls.join(name).display().to_string());
                config.push_str(&format!(
                    "\n[tls]\ncertificate = {}\nprivate_key = {}\n\n[admin]\nclient_ca = {}\n",
                    file("server.pem"),
                    file("server.key"),
                    file("admin-ca.pem")
                ));
                tls
            }
            None => dir.path().join("data/tls"),
        };
        std::fs::write(dir.path().join("broker.toml"), config).unwrap();
        let mut broker =
            Self { child: None, dir, address: "127.0.0.1:0".parse().unwrap(), issuer_address: None, tls_dir };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let mut child = Command::new(crate::workspace_binary("mooring-broker"))
            .args(["serve", "--config"])
            .arg(self.dir.path().join("broker.toml"))
            .env("MOORING_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let line = lines.next().expect("broker exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("mooring-broker listening on https://") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            if let Some((_, rest)) = line.split_once(" listening on https://") {
                if line.starts_with("mooring-broker OIDC issuer ") {
                    self.issuer_address = Some(rest.trim().parse().unwrap());
                }
            }
        };
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
        self.address = address;
    }

    /// Kills the process with SIGKILL (no chance to flush anything).
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops the process with SIGTERM, as systemd does, and returns how it exited (`None`:
    /// still running after `within`, then killed).
    #[allow(unsafe_code)]
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid, which has not been waited for.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        None
    }

    /// Starts the broker again on the same data directory (new port).
    pub fn restart(&mut self) {
        self.kill_9();
        self.launch();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("broker.toml")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}/v1/{path}", self.address.port())
    }

    /// An HTTPS client pinned to the broker's CA, connecting from `source`.
    pub fn client(&self, source: IpAddr) -> reqwest::blocking::Client {
        self.client_builder(source).build().unwrap()
    }

    fn client_builder(&self, source: IpAddr) -> reqwest::blocking::ClientBuilder {
        let ca = std::fs::read(self.tls_dir.join("ca.pem")).unwrap();
        reqwest::blocking::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .resolve("localhost", SocketAddr::new(self.address.ip(), self.address.port()))
            .local_address(source)
            .timeout(Duration::from_secs(30))
    }

    /// A client presenting the generated admin certificate.
    pub fn admin(&self) -> reqwest::blocking::Client {
        let tls = &self.tls_dir;
        let mut identity = std::fs::read(tls.join("admin.pem")).unwrap();
        identity.extend(std::fs::read(tls.join("admin.key")).unwrap());
        self.client_builder(IpAddr::from([127, 0, 0, 1]))
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .build()
            .unwrap()
    }

    /// POSTs JSON; returns (status, body).
    pub fn post(
        &self,
        client: &reqwest::blocking::Client,
        path: &str,
        body: &impl serde::Serialize,
    ) -> (u16, Value) {
        let response = client.post(self.url(path)).json(body).send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// POSTs JSON to an admin route with the admin certificate; the answer must be 200.
    pub fn admin_post(&self, path: &str, body: &impl serde::Serialize) -> Value {
        let (status, answer) = self.post(&self.admin(), path, body);
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }

    /// `POST admin/audit/verify`: the broker's check of its audit chain.
    pub fn audit_verify(&self) -> Value {
        self.admin_post("admin/audit/verify", &serde_json::json!({}))
    }

    /// Whether a refusal with `code` is on the record: in a record of its own, or (for
    /// requests that proved no identity) counted in a summary record. Waits up to 5 s for
    /// the next summary.
    pub fn refusal_recorded(&self, code: &str) -> bool {
        let counted = format!(" {code} x");
        for _ in 0..50 {
            let found = self.audit().iter().any(|r| {
                (r["code"] == code && r["outcome"] == "refused")
                    || (r["code"] == "refusals_summarized"
                        && r["reason"].as_str().is_some_and(|reason| reason.contains(&counted)))
            });
            if found {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    }

    /// The Prometheus text of `/metrics`, fetched from 127.0.0.1.
    pub fn metrics(&self) -> String {
        let response = self
            .client(loopback(1))
            .get(format!("https://localhost:{}/metrics", self.address.port()))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().unwrap()
    }

    /// Every audit record, through the admin API.
    pub fn audit(&self) -> Vec<Value> {
        let response = self.admin().get(self.url("admin/audit?limit=1000")).send().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json().unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// The loopback source address of simulated VM `n` (127.0.0.n).
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Asserts an error answer's status and code.
pub fn assert_refused(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
    assert!(!answer.1["reason"].as_str().unwrap_or_default().is_empty(), "{}", answer.1);
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

//! The real `mooring-payments` example service in front of a real broker, and HTTPS
//! clients that call it from a chosen loopback address (optionally with a TLS client
//! identity). For test bodies: everything here panics on failure, naming what failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::broker::Broker;

/// How the service checks credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Per request, through the broker's verify API.
    Broker,
    /// Against the fetched trust bundle and revocation list.
    Offline,
}

/// What to put into the service's configuration.
#[derive(Debug, Clone, Copy)]
pub struct PaymentsSetup {
    pub mode: Mode,
    pub bundle_seconds: u64,
    pub revocations_seconds: u64,
    pub max_revocation_age_seconds: u64,
}

impl PaymentsSetup {
    pub fn new(mode: Mode) -> Self {
        Self { mode, bundle_seconds: 300, revocations_seconds: 30, max_revocation_age_seconds: 300 }
    }
}

/// A running `mooring-payments`.
#[derive(Debug)]
pub struct Payments {
    child: Child,
    pub dir: tempfile::TempDir,
    pub address: SocketAddr,
}

impl Payments {
    /// Starts the service trusting `broker` (pinned to the CA it generated).
    pub fn start(broker: &Broker, setup: &PaymentsSetup) -> Self {
        let dir = tempfile::Builder::new().prefix("mooring-payments-").tempdir().unwrap();
        let mode = match setup.mode {
            Mode::Broker => "broker",
            Mode::Offline => "offline",
        };
        let config = format!(
            "listen = \"127.0.0.1:0\"\naudience = \"payments\"\nmode = \"{mode}\"\n\n\
             [tls]\nsource = \"generate\"\nwrite_certificate = \"server.pem\"\n\n\
             [broker]\nurl = \"https://127.0.0.1:{}\"\ntrust_domain = \"test.mooring\"\nca = {:?}\n\n\
             [refresh]\nbundle_seconds = {}\nrevocations_seconds = {}\nmax_revocation_age_seconds = {}\n",
            broker.address.port(),
            broker.data_dir().join("tls/ca.pem").display().to_string(),
            setup.bundle_seconds,
            setup.revocations_seconds,
            setup.max_revocation_age_seconds,
        );
        let path = dir.path().join("payments.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(crate::workspace_binary("mooring-payments"))
            .arg("--config")
            .arg(&path)
            .env("MOORING_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("mooring-payments exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("mooring-payments listening on https://") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, dir, address }
    }

    /// An HTTPS client pinned to the service's generated certificate, connecting from
    /// `source`, presenting `identity` as its TLS client certificate when given.
    pub fn client(&self, source: IpAddr, identity: Option<reqwest::Identity>) -> reqwest::blocking::Client {
        let cert = std::fs::read(self.dir.path().join("server.pem")).unwrap();
        let mut builder = reqwest::blocking::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&cert).unwrap()])
            .resolve("localhost", self.address)
            .local_address(source)
            .timeout(Duration::from_secs(30));
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().unwrap()
    }

    /// `POST /pay` with `body` and extra `headers`; returns (status, JSON body).
    /// Runs `mooring-pay` (the VM's application) with the client configuration `config`
    /// against this service, presenting the credential as `mode` (`jwt`, `mtls`, `bearer`).
    pub fn mooring_pay(&self, config: &Path, mode: &str, args: &[&str]) -> Output {
        Command::new(crate::workspace_binary("mooring-pay"))
            .arg("--config")
            .arg(config)
            .arg("--url")
            .arg(format!("https://127.0.0.1:{}", self.address.port()))
            .arg("--payments-ca")
            .arg(self.dir.path().join("server.pem"))
            .args(["--mode", mode])
            .args(args)
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap()
    }

    pub fn pay(
        &self,
        client: &reqwest::blocking::Client,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> (u16, Value) {
        let mut request = client
            .post(format!("https://localhost:{}/pay", self.address.port()))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

impl Drop for Payments {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The broker(s) under test: started here (the real `mooring-broker serve` on a temporary
//! data directory, so its pid is known; or `--replicas N` of them on one PostgreSQL server
//! started here too, whose process tree's CPU is measured as the database's) or started
//! elsewhere (`--url`, `--ca`, `--pid`, and `--db-pid` for their database server).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;

use super::fleet::Fleet;

/// How long a starting broker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Raised limits: the per-source rate limit and the finished-challenge bound would otherwise
/// refuse a boot storm from a handful of loopback addresses. `permits` is the broker's
/// `max_concurrent_requests`.
pub(crate) fn limits(permits: usize) -> String {
    format!(
        "[limits]\nmax_body_bytes = 262144\nrequests_per_second = 1000000\nburst = 1000000\n\
         max_concurrent_requests = {permits}\nrequest_timeout_seconds = 30\n\n\
         [challenge]\nttl_seconds = 60\nmax_used = 10000000\n"
    )
}

/// The brokers a run drives.
#[derive(Debug)]
pub(crate) struct Target {
    /// Base URLs (`https://host:port`), used round-robin.
    pub(crate) urls: Vec<String>,
    /// The CA (PEM) their server certificates chain to.
    pub(crate) ca_pem: Vec<u8>,
    /// Their process ids (empty: CPU and memory are not reported).
    pub(crate) pids: Vec<u32>,
    /// The database server's process id (its tree is the database's CPU), if any.
    pub(crate) db_pid: Option<u32>,
    /// Brokers started here; stopped before the database below.
    owned: Vec<OwnedBroker>,
    _postgres: Option<mooring_tests::Postgres>,
}

/// A broker process this run started; killed when dropped.
#[derive(Debug)]
struct OwnedBroker {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for OwnedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mooring-broker` next to this executable.
pub(crate) fn default_broker_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    let path = dir.join("mooring-broker");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build it (cargo build --release -p mooring-broker) or pass --broker",
        path.display()
    );
    Ok(path)
}

impl Target {
    /// Brokers started elsewhere.
    pub(crate) fn external(
        urls: &[String],
        ca: &Path,
        pids: &[u32],
        db_pid: Option<u32>,
    ) -> anyhow::Result<Self> {
        let ca_pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let urls = urls.iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
        Ok(Self { urls, ca_pem, pids: pids.to_vec(), db_pid, owned: Vec::new(), _postgres: None })
    }

    /// Starts `binary serve` with a configuration and policy admitting `fleet`, and the
    /// raised [`limits`].
    pub(crate) fn start(binary: &Path, fleet: &Fleet, permits: usize) -> anyhow::Result<Self> {
        Self::start_with(binary, fleet, &limits(permits))
    }

    /// Starts `binary serve` admitting `fleet`, with `sections` (TOML: `[limits]`,
    /// `[audit]`, ...) in its configuration.
    pub(crate) fn start_with(binary: &Path, fleet: &Fleet, sections: &str) -> anyhow::Result<Self> {
        let (owned, url) = launch(binary, fleet, "", sections)?;
        let ca_path = owned.dir.path().join("data/tls/ca.pem");
        let ca_pem = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
        let pids = vec![owned.child.id()];
        Ok(Self { urls: vec![url], ca_pem, pids, db_pid: None, owned: vec![owned], _postgres: None })
    }

    /// Starts a PostgreSQL server (the test harness's: a temporary cluster on a Unix socket,
    /// `fsync` and `synchronous_commit` on) and `count` replicas of `binary serve` on it,
    /// admitting `fleet`, with the raised [`limits`]; the replicas serve the first one's
    /// certificate, as replicas behind one name do.
    pub(crate) fn start_replicas(
        binary: &Path,
        fleet: &Fleet,
        permits: usize,
        count: usize,
        pool_size: Option<u32>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(count > 0, "--replicas must be at least 1");
        let postgres = mooring_tests::Postgres::start()
            .context("starting PostgreSQL (Debian: apt-get install postgresql)")?;
        let section = postgres.postgres_section_with_pool(pool_size).context("configuring PostgreSQL")?;
        let db_pid = postgres.postmaster_pid().context("PostgreSQL's process id")?;
        let mut owned = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..count {
            let shared_tls = owned.first().map_or_else(String::new, |first: &OwnedBroker| {
                let file = |name: &str| {
                    format!("{:?}", first.dir.path().join("data/tls").join(name).display().to_string())
                };
                format!(
                    "[tls]\ncertificate = {}\nprivate_key = {}\n\n[admin]\nclient_ca = {}\n\n",
                    file("server.pem"),
                    file("server.key"),
                    file("admin-ca.pem")
                )
            });
            let sections = format!("{}\n{shared_tls}{section}", limits(permits));
            let (broker, url) = launch(binary, fleet, "store = \"postgres\"\n", &sections)?;
            owned.push(broker);
            urls.push(url);
        }
        let first = owned.first().context("no replica")?;
        let ca_path = first.dir.path().join("data/tls/ca.pem");
        let ca_pem = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
        let pids = owned.iter().map(|broker| broker.child.id()).collect();
        Ok(Self { urls, ca_pem, pids, db_pid: Some(db_pid), owned, _postgres: Some(postgres) })
    }

    /// The data directory of the broker started here (none for brokers started elsewhere).
    pub(crate) fn data_dir(&self) -> Option<PathBuf> {
        self.owned.first().map(|owned| owned.dir.path().join("data"))
    }

    /// The address of the first broker (`https://host:port`, host `localhost` meaning
    /// 127.0.0.1).
    pub(crate) fn first_address(&self) -> anyhow::Result<std::net::SocketAddr> {
        let url = self.urls.first().context("no broker URL")?;
        let url = reqwest::Url::parse(url).with_context(|| format!("broker URL {url:?}"))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let ip = match url.host_str() {
            Some("localhost") | None => std::net::IpAddr::from([127, 0, 0, 1]),
            Some(host) => host.parse().with_context(|| format!("broker host {host:?} is not an address"))?,
        };
        Ok(std::net::SocketAddr::new(ip, port))
    }

    /// CPU seconds all brokers have used (0 without pids).
    pub(crate) fn cpu_seconds(&self, ticks: f64) -> anyhow::Result<f64> {
        self.pids.iter().map(|pid| super::procfs::cpu_seconds(*pid, ticks)).sum()
    }

    /// CPU seconds the database server's process tree has used (`None` without its pid).
    pub(crate) fn db_cpu_seconds(&self, ticks: f64) -> anyhow::Result<Option<f64>> {
        self.db_pid.map(|pid| super::procfs::tree_cpu_seconds(pid, ticks)).transpose()
    }

    /// Summed resident memory, MiB.
    pub(crate) fn rss_mib(&self) -> anyhow::Result<f64> {
        self.pids.iter().map(|pid| super::procfs::rss_mib(*pid)).sum()
    }

    /// Summed peak resident memory, MiB.
    pub(crate) fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        self.pids.iter().map(|pid| super::procfs::peak_rss_mib(*pid)).sum()
    }
}

/// Starts `binary serve` admitting `fleet`: `top` (top-level keys) and `sections` (TOML
/// tables) in its configuration. Returns it and its URL.
fn launch(binary: &Path, fleet: &Fleet, top: &str, sections: &str) -> anyhow::Result<(OwnedBroker, String)> {
    let dir = tempfile::Builder::new().prefix("mooring-load-").tempdir().context("temporary directory")?;
    let trust = fleet.write_setup(dir.path())?;
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\ntrust_domain = \"load.mooring\"\npolicy = {policy:?}\n{top}\n\
         {sections}\n{trust}",
        data = dir.path().join("data").display().to_string(),
        policy = dir.path().join("policy.toml").display().to_string(),
    );
    let config_path = dir.path().join("broker.toml");
    std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
    let mut child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("MOORING_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("broker stdout")?;
    let owned = OwnedBroker { child, dir };
    let (tx, rx) = mpsc::channel();
    // Reads the listening line, then keeps draining stdout so the broker never blocks.
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(rest) = line.strip_prefix("mooring-broker listening on https://") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                    sent = true;
                }
            }
        }
    });
    let address = rx
        .recv_timeout(START_TIMEOUT)
        .context("the broker did not start listening (its stderr above says why)")?;
    let port = address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .with_context(|| format!("broker listens on {address:?}"))?;
    Ok((owned, format!("https://localhost:{port}")))
}

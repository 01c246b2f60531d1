//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

/// Which evidence the simulated VMs present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Path {
    /// TPM 2.0: EK certificate, credential activation, quote, certify, event log.
    Tpm,
    /// AMD SEV-SNP: a report signed by the test signer, VCEK chain in the certificate table.
    Snp,
}

/// A phase of the abuse mode (`--abuse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AbusePhase {
    /// Honest attestations alone.
    Quiet,
    /// A flood of malformed, oversized and unknown-challenge requests from 50 addresses.
    Malformed,
    /// The same flood with no honest traffic: what it alone adds to the data directory.
    MalformedAlone,
    /// `--slow-connections` connections sending a large body a byte at a time.
    SlowBodies,
    /// `begin` calls as fast as answered from 250 addresses.
    BeginFlood,
}

/// Boot-storm benchmark for the Mooring broker.
#[derive(Debug, clap::Parser)]
#[command(name = "mooring-load", version)]
pub(crate) struct Options {
    /// Evidence path to drive.
    #[arg(long, value_enum, default_value = "tpm")]
    pub(crate) path: Path,
    /// Distinct simulated VMs (each with its own keys) cycled through in the measured phase.
    #[arg(long, default_value_t = 1000)]
    pub(crate) vms: usize,
    /// Attestations in flight at once (one simulated VM each).
    #[arg(long, default_value_t = 100)]
    pub(crate) concurrency: usize,
    /// Length of the measured phase (e.g. `20s`, `500ms`); ignored with `--count`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Measure exactly this many attestations instead of a duration.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Open loop: start this many attestations per second, on schedule, instead of a new
    /// one as soon as one of `concurrency` ends. Latency then counts from each one's
    /// scheduled start, so time spent waiting for a free slot shows as latency. Without it
    /// the run is a closed loop (a boot storm of `concurrency` VMs), whose mean latency is
    /// `concurrency / throughput` whatever the broker does.
    #[arg(long, value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Threads driving the simulated VMs. Default: one when the broker runs on this
    /// machine (measured on 2 cores: a second generator thread cost the generator 10% more
    /// CPU per attestation, which the broker then lacked), every core with `--url`.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Warm-up before measuring (connections, caches), excluded from every figure.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// First attest this many further distinct VMs so the store holds them, then measure
    /// again; the report compares throughput and memory before and after.
    #[arg(long, default_value_t = 0)]
    pub(crate) preload: u64,
    /// SEV-SNP hosts (test signers: a Milan and a Genoa one); VMs are spread over them.
    #[arg(long, default_value_t = 2)]
    pub(crate) snp_hosts: usize,
    /// Source addresses 127.0.0.2.. the VMs connect from (one HTTPS client each).
    #[arg(long, default_value_t = 16)]
    pub(crate) sources: u8,
    /// Measured-boot event log the TPM VMs booted with (relative to the test data).
    #[arg(long, default_value = "tpm/eventlogs/go-tpm-tools/ubuntu-2404-amd-sevsnp.bin")]
    pub(crate) event_log: PathBuf,
    /// Every TPM VM sends its event log whole. By default a VM names the log by its
    /// SHA-256 first, as `mooring-client` does, and sends it only when the broker holds no
    /// copy (`event_log_unknown`).
    #[arg(long)]
    pub(crate) send_event_log: bool,
    /// CPU milliseconds spent measuring each crypto-floor operation (0 skips the floor).
    #[arg(long, default_value_t = 400)]
    pub(crate) floor_ms: u32,
    /// The broker binary to start (default: `mooring-broker` next to this executable).
    #[arg(long, conflicts_with = "url")]
    pub(crate) broker: Option<PathBuf>,
    /// `[limits] max_concurrent_requests` of the broker started here: requests beyond it
    /// wait (cheaply, in the async runtime) instead of piling onto the blocking pool.
    #[arg(long, default_value_t = 1024)]
    pub(crate) broker_permits: usize,
    /// Start this many broker replicas on one PostgreSQL server started here (a temporary
    /// cluster, `fsync` on), driven round-robin; the report adds the database server's CPU
    /// (its process tree) per attestation. Without it: one broker on its embedded store.
    #[arg(long, conflicts_with = "url")]
    pub(crate) replicas: Option<usize>,
    /// `[postgres] pool_size` of the replicas started with `--replicas` (default: the
    /// broker's).
    #[arg(long, requires = "replicas")]
    pub(crate) pool_size: Option<u32>,
    /// Drive brokers started elsewhere (repeat for several replicas: used round-robin).
    /// Their configuration must admit the VMs: see `--write-setup`.
    #[arg(long, requires = "ca")]
    pub(crate) url: Vec<String>,
    /// CA certificate (PEM) the brokers given with `--url` present.
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// Process ids of the brokers given with `--url` (comma separated), for CPU and memory.
    #[arg(long, value_delimiter = ',')]
    pub(crate) pid: Vec<u32>,
    /// Process id of the database server of the brokers given with `--url` (PostgreSQL's
    /// postmaster), for the database's CPU (its process tree).
    #[arg(long, requires = "url")]
    pub(crate) db_pid: Option<u32>,
    /// Directory holding the fleet's trust material and policy (`ek-ca.pem`,
    /// `ek-ca.key`, `snp-host-N/`, `policy.toml`): reused when present, written when not.
    /// Brokers started elsewhere are configured from it.
    #[arg(long)]
    pub(crate) setup_dir: Option<PathBuf>,
    /// Only write the fleet's EK CA and policy into `--setup-dir` and print the broker
    /// configuration lines for them (TPM path), for brokers started elsewhere.
    #[arg(long, requires = "setup_dir")]
    pub(crate) setup_only: bool,
    /// Abuse mode: measure honest TPM and SEV-SNP attestation latency (each at `--rate`,
    /// default 20/s, for `--duration`) in each phase listed, one after another on one
    /// broker with its default limits: quiet, then while each kind of abuse runs from
    /// other source addresses (e.g. `quiet,malformed,slow-bodies,begin-flood`). Reports
    /// the data directory's growth per second in each phase.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) abuse: Vec<AbusePhase>,
    /// Connections of the `slow-bodies` phase.
    #[arg(long, default_value_t = 1000)]
    pub(crate) slow_connections: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Parses `20s`, `1500ms`, `2m` or a bare number of seconds.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a positive rate such as 2000")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 20s"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        other => return Err(format!("unknown duration unit {other:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("x").is_err());
    }
}

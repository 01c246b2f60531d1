//! One benchmark run: build the fleet, start (or reach) the broker, warm up, measure,
//! optionally preload the store and measure again, then measure the crypto floor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::boot_log::BootImage;
use super::client::{self, Endpoint};
use super::drive::{self, Source, Stop};
use super::ek_ca::EkCa;
use super::fleet::Fleet;
use super::floor;
use super::options::{Options, Path as EvidencePath};
use super::procfs;
use super::report::{BrokerUsage, Header, Machine, PhaseReport, Report};
use super::target::{self, Target};

/// Everything a phase needs.
struct Bench {
    runtime: tokio::runtime::Runtime,
    target: Target,
    fleet: Arc<Fleet>,
    endpoints: Arc<Vec<Endpoint>>,
    concurrency: usize,
    rate: Option<f64>,
    ticks: f64,
}

impl Bench {
    /// One phase, at the run's `--rate` when `paced`.
    fn phase(&self, stop: impl FnOnce() -> Stop, source: Source, paced: bool) -> anyhow::Result<PhaseReport> {
        let own = std::process::id();
        let broker_before = self.target.cpu_seconds(self.ticks)?;
        let db_before = self.target.db_cpu_seconds(self.ticks)?;
        let own_before = procfs::cpu_seconds(own, self.ticks)?;
        let phase = self.runtime.block_on(drive::run(
            Arc::clone(&self.fleet),
            Arc::clone(&self.endpoints),
            self.concurrency,
            stop(),
            source,
            self.rate.filter(|_| paced),
        ));
        let broker_cpu = self.target.cpu_seconds(self.ticks)? - broker_before;
        let db_cpu = match (self.target.db_cpu_seconds(self.ticks)?, db_before) {
            (Some(after), Some(before)) => Some(after - before),
            _ => None,
        };
        let own_cpu = procfs::cpu_seconds(own, self.ticks)? - own_before;
        let broker = if self.target.pids.is_empty() {
            None
        } else {
            Some(BrokerUsage {
                cpu_seconds: broker_cpu,
                cpu_us_per_attestation: 0.0,
                db_cpu_seconds: db_cpu,
                db_cpu_us_per_attestation: None,
                rss_mib: self.target.rss_mib()?,
                peak_rss_mib: self.target.peak_rss_mib()?,
            })
        };
        Ok(PhaseReport::new(&phase, broker, own_cpu))
    }
}

pub(crate) fn ek_ca(options: &Options) -> anyhow::Result<EkCa> {
    match &options.setup_dir {
        Some(dir) => EkCa::load_or_create(dir),
        None => EkCa::generate(),
    }
}

pub(crate) fn boot_image(options: &Options) -> anyhow::Result<BootImage> {
    let path = if options.event_log.is_absolute() {
        options.event_log.clone()
    } else {
        mooring_testdata::testdata_dir().join(&options.event_log)
    };
    BootImage::load(&path, !options.send_event_log)
}

/// `--setup-only`: writes the EK CA and policy for brokers started elsewhere and prints
/// the configuration lines that use them.
pub(crate) fn write_setup(options: &Options) -> anyhow::Result<()> {
    let dir = options.setup_dir.as_ref().context("--setup-only needs --setup-dir")?;
    anyhow::ensure!(
        options.path == EvidencePath::Tpm,
        "brokers started elsewhere can be driven on the TPM path only (the SEV-SNP test signers live in this process)"
    );
    let fleet = Fleet::build(EvidencePath::Tpm, 0, 0, ek_ca(options)?, boot_image(options)?)?;
    let config = fleet.write_setup(dir)?;
    println!(
        "# broker configuration for the mooring-load fleet (policy: {})",
        dir.join("policy.toml").display()
    );
    println!("{config}");
    println!("# raised so that a storm from a few source addresses is not refused\n{}", target::limits(1024));
    Ok(())
}

/// Runs the benchmark.
pub(crate) fn run(options: &Options) -> anyhow::Result<Report> {
    let machine = Machine::now();
    anyhow::ensure!(options.vms > 0, "--vms must be at least 1");
    anyhow::ensure!(
        options.preload == 0 || options.path == EvidencePath::Tpm,
        "--preload attests fresh TPM VMs: use it with --path tpm"
    );
    let external = !options.url.is_empty();
    anyhow::ensure!(
        !external || options.path == EvidencePath::Tpm,
        "brokers started elsewhere can be driven on the TPM path only (the SEV-SNP test signers live in this process)"
    );
    anyhow::ensure!(!external || options.setup_dir.is_some(), "--url needs --setup-dir (see --setup-only)");

    let fleet = Arc::new(
        Fleet::build(options.path, options.vms, options.snp_hosts, ek_ca(options)?, boot_image(options)?)
            .context("building the simulated fleet")?,
    );
    let target = match (&options.ca, external) {
        (Some(ca), true) => Target::external(&options.url, ca, &options.pid, options.db_pid)?,
        _ => {
            let binary = match &options.broker {
                Some(path) => PathBuf::from(path),
                None => target::default_broker_binary()?,
            };
            match options.replicas {
                Some(count) => {
                    Target::start_replicas(&binary, &fleet, options.broker_permits, count, options.pool_size)?
                }
                None => Target::start(&binary, &fleet, options.broker_permits)?,
            }
        }
    };
    let threads = options.threads.unwrap_or(if options.url.is_empty() { 1 } else { machine.cores }).max(1);
    let (runtime, endpoints) = client::connect(&target, options.sources, threads)?;
    let bench = Bench {
        runtime,
        target,
        fleet: Arc::clone(&fleet),
        endpoints,
        concurrency: options.concurrency,
        rate: options.rate,
        ticks: procfs::clock_ticks(),
    };

    if !options.warmup.is_zero() {
        let warmup = options.warmup;
        let report = bench.phase(|| Stop::At(Instant::now() + warmup), Source::Fleet, true)?;
        if report.attestations == 0 {
            let first = report.error_kinds.keys().next().cloned().unwrap_or_else(|| "nothing ran".into());
            anyhow::bail!("every warm-up attestation failed: {first}");
        }
    }
    let duration = options.duration;
    let count = options.count;
    let stop = move || match count {
        Some(count) => Stop::After(count),
        None => Stop::At(Instant::now() + duration),
    };
    let measured = bench.phase(stop, Source::Fleet, true)?;
    let preload = if options.preload > 0 {
        let fill = bench.phase(|| Stop::After(options.preload), Source::Fresh, false)?;
        settle();
        let after = bench.phase(stop, Source::Fleet, true)?;
        Some((options.preload, fill, after))
    } else {
        None
    };
    let floor = if options.floor_ms > 0 {
        Some(floor::measure_floor(options.path, &fleet, options.floor_ms)?)
    } else {
        None
    };
    let header = Header {
        path: options.path,
        vms: fleet.len(),
        concurrency: options.concurrency,
        rate: options.rate,
        sources: options.sources,
        brokers: bench.target.urls.len(),
        machine,
    };
    Ok(Report::new(header, measured, floor, preload))
}

/// A pause after the preload so the store's background flushing does not land in the
/// next measurement.
fn settle() {
    std::thread::sleep(Duration::from_secs(2));
}

//! `--abuse`: honest attestation latency while the broker is abused. One broker with its
//! default limits (summaries of anonymous refusals every second, the most often they can
//! be written); honest TPM VMs and SEV-SNP guests attest on schedule, open loop, first
//! alone, then while each kind of abuse runs in the background from other source
//! addresses (`mooring_tests::abuse`, on a thread of its own). Each phase reports honest
//! latency, the abuse's own traffic, the broker's CPU and how fast its data directory grew.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mooring_tests::abuse::{self, Abuse, Background, DirSize, Endpoint};
use serde::Serialize;

use super::client;
use super::drive::{self, Phase, Source, Stop};
use super::fleet::Fleet;
use super::options::{AbusePhase, Options};
use super::procfs;
use super::report::{print_json, Machine, PhaseReport};
use super::run::{boot_image, ek_ca};
use super::target::{self, Target};

/// Honest attestations per second on each path when `--rate` is not given.
const DEFAULT_RATE: f64 = 20.0;
/// The broker's configuration beyond the fleet's trust: default limits, refusal summaries
/// every second.
const BROKER_SECTIONS: &str = "[audit]\nsummary_seconds = 1\n";
/// Time for the next refusal summary and the store's flush before the data directory is
/// measured again.
const SUMMARY_WAIT: Duration = Duration::from_millis(1500);
/// Pause between phases, so one abuse's tail does not land in the next.
const SETTLE: Duration = Duration::from_secs(2);
/// Longest wait for the slow-body connections to be open.
const RAMP_LIMIT: Duration = Duration::from_secs(15);
/// Byte interval of the slow bodies.
const SLOW_BYTE_INTERVAL: Duration = Duration::from_millis(100);
/// Open files wanted: a thousand connections on each side (the broker inherits it).
const FD_LIMIT: u64 = 8192;

/// What the audit log gained in a phase (read through the admin API).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct AuditGrowth {
    /// Records appended.
    pub(crate) records: u64,
    /// Of them, honest issuances (`issued`).
    pub(crate) issued: u64,
    /// Of them, summaries of anonymous refusals (`refusals_summarized`).
    pub(crate) summaries: u64,
    /// Bytes of all records appended (as the admin API returns them, JSON).
    pub(crate) bytes: u64,
    /// Bytes of the summary records alone: all the abuse added.
    pub(crate) summary_bytes: u64,
    /// Refusals the summaries count.
    pub(crate) refusals_counted: u64,
    /// Longest reason among the records, characters.
    pub(crate) longest_reason: u64,
}

/// The broker's audit log through its admin API, with the admin certificate it generated.
struct AuditReader {
    client: reqwest::Client,
    base: String,
    /// The last record read.
    seen: u64,
}

impl AuditReader {
    fn new(target: &Target, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let tls = data_dir.join("tls");
        let mut identity = std::fs::read(tls.join("admin.pem")).context("the admin certificate")?;
        identity.extend(std::fs::read(tls.join("admin.key")).context("the admin key")?);
        let address = target.first_address()?;
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&target.ca_pem).context("the broker CA")?])
            .identity(reqwest::Identity::from_pem(&identity).context("the admin identity")?)
            .resolve("localhost", address)
            .timeout(Duration::from_secs(30))
            .build()
            .context("the admin client")?;
        Ok(Self { client, base: format!("https://localhost:{}/v1/admin/audit", address.port()), seen: 0 })
    }

    /// The records appended since the last call.
    async fn growth(&mut self) -> anyhow::Result<AuditGrowth> {
        let mut growth = AuditGrowth::default();
        for _ in 0..10_000 {
            let url = format!("{}?after={}&limit=1000", self.base, self.seen);
            let response = self.client.get(&url).send().await.context("reading the audit log")?;
            anyhow::ensure!(response.status().is_success(), "audit log: {}", response.status());
            let page: Vec<serde_json::Value> = response.json().await.context("audit log page")?;
            let Some(last) = page.last().and_then(|r| r["seq"].as_u64()) else { break };
            self.seen = last;
            for record in &page {
                let bytes = serde_json::to_vec(record).map_or(0, |b| b.len() as u64);
                let reason = record["reason"].as_str().unwrap_or_default();
                growth.records += 1;
                growth.bytes += bytes;
                growth.longest_reason = growth.longest_reason.max(reason.chars().count() as u64);
                match record["code"].as_str() {
                    Some("issued") => growth.issued += 1,
                    Some("refusals_summarized") => {
                        growth.summaries += 1;
                        growth.summary_bytes += bytes;
                        let counted = reason.split(' ').next().and_then(|n| n.parse::<u64>().ok());
                        growth.refusals_counted += counted.unwrap_or(0);
                    }
                    _ => {}
                }
            }
        }
        Ok(growth)
    }
}

/// One phase of the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AbusePhaseReport {
    pub(crate) phase: AbusePhase,
    /// Honest TPM attestations.
    pub(crate) tpm: PhaseReport,
    /// Honest SEV-SNP attestations.
    pub(crate) snp: PhaseReport,
    /// What the abuse sent and was answered (none when quiet).
    pub(crate) abuse: Option<abuse::Report>,
    /// Broker CPU over the honest window, percent of one core.
    pub(crate) broker_cpu_percent: f64,
    /// Data directory growth from the start of the honest window to the first summary
    /// after the abuse stopped, bytes allocated on disk.
    pub(crate) data_dir_growth_bytes: u64,
    /// The same in file lengths.
    pub(crate) data_dir_growth_file_bytes: u64,
    /// Over how long.
    pub(crate) data_dir_growth_seconds: f64,
    /// `data_dir_growth_bytes` per second.
    pub(crate) data_dir_bytes_per_second: f64,
    /// What the audit log gained over the same time.
    pub(crate) audit: AuditGrowth,
    /// Bytes of summary records per second: the audit log's growth due to the abuse.
    pub(crate) audit_abuse_bytes_per_second: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AbuseRunReport {
    /// Honest attestations started per second, on each path.
    pub(crate) rate: f64,
    pub(crate) seconds_per_phase: f64,
    pub(crate) vms_per_path: usize,
    pub(crate) slow_connections: usize,
    #[serde(flatten)]
    pub(crate) machine: Machine,
    pub(crate) phases: Vec<AbusePhaseReport>,
}

/// The abuse of `phase`, if any.
fn abuse_of(phase: AbusePhase, options: &Options) -> Option<Abuse> {
    match phase {
        AbusePhase::Quiet => None,
        AbusePhase::Malformed | AbusePhase::MalformedAlone => {
            Some(Abuse::Malformed { sources: abuse::spread_sources(50), connections: 2, requests: None })
        }
        AbusePhase::SlowBodies => Some(Abuse::SlowBodies {
            sources: abuse::sources(2, 50),
            connections: options.slow_connections,
            byte_interval: SLOW_BYTE_INTERVAL,
        }),
        AbusePhase::BeginFlood => Some(Abuse::BeginFlood { sources: abuse::sources(3, 250) }),
    }
}

fn growth(before: DirSize, after: DirSize) -> (u64, u64) {
    (after.allocated.saturating_sub(before.allocated), after.bytes.saturating_sub(before.bytes))
}

/// Runs every phase of `--abuse`.
pub(crate) fn run(options: &Options) -> anyhow::Result<AbuseRunReport> {
    anyhow::ensure!(options.url.is_empty(), "--abuse starts its own broker (it measures its data directory)");
    anyhow::ensure!(options.vms > 0, "--vms must be at least 1");
    let machine = Machine::now();
    let fd_limit = abuse::raise_fd_limit(FD_LIMIT)?;
    if fd_limit < options.slow_connections as u64 * 2 {
        eprintln!("mooring-load: open-file limit {fd_limit}: the slow-body phase may run out of descriptors");
    }
    let rate = options.rate.unwrap_or(DEFAULT_RATE);
    let fleet = Arc::new(
        Fleet::build_both(options.vms, options.snp_hosts, ek_ca(options)?, boot_image(options)?)
            .context("building the simulated fleet")?,
    );
    let binary = match &options.broker {
        Some(path) => path.clone(),
        None => target::default_broker_binary()?,
    };
    let target = Target::start_with(&binary, &fleet, BROKER_SECTIONS)?;
    let data_dir = target.data_dir().context("the broker's data directory")?;
    let victim = Endpoint::new(target.first_address()?, &target.ca_pem)?;
    let (runtime, endpoints) =
        client::connect(&target, options.sources, options.threads.unwrap_or(1).max(1))?;
    let mut audit = AuditReader::new(&target, &data_dir)?;
    let ticks = procfs::clock_ticks();
    let own = std::process::id();
    let honest = |duration: Duration| -> anyhow::Result<(PhaseReport, PhaseReport)> {
        let own_before = procfs::cpu_seconds(own, ticks)?;
        let deadline = Instant::now() + duration;
        let (tpm, snp) = runtime.block_on(async {
            tokio::join!(
                drive::run(
                    Arc::clone(&fleet),
                    Arc::clone(&endpoints),
                    options.concurrency,
                    Stop::At(deadline),
                    Source::Fleet,
                    Some(rate),
                ),
                drive::run(
                    Arc::clone(&fleet),
                    Arc::clone(&endpoints),
                    options.concurrency,
                    Stop::At(deadline),
                    Source::SnpGuests,
                    Some(rate),
                ),
            )
        });
        // Generator CPU is shared by both paths (and the abuse thread): reported on TPM.
        let own_cpu = procfs::cpu_seconds(own, ticks)? - own_before;
        Ok((PhaseReport::new(&tpm, None, own_cpu), PhaseReport::new(&snp, None, 0.0)))
    };

    if !options.warmup.is_zero() {
        let (tpm, snp) = honest(options.warmup)?;
        if tpm.attestations == 0 || snp.attestations == 0 {
            let first = tpm.error_kinds.keys().chain(snp.error_kinds.keys()).next().cloned();
            anyhow::bail!(
                "every warm-up attestation failed: {}",
                first.unwrap_or_else(|| "nothing ran".into())
            );
        }
        std::thread::sleep(SETTLE);
    }

    let mut phases = Vec::new();
    for &phase in &options.abuse {
        let background = match abuse_of(phase, options) {
            Some(abuse) => {
                let background = Background::start(victim.clone(), abuse)?;
                let ramp = Instant::now();
                let wanted =
                    if phase == AbusePhase::SlowBodies { options.slow_connections as u64 } else { 0 };
                while ramp.elapsed() < Duration::from_secs(1)
                    || (background.snapshot().peak_open < wanted && ramp.elapsed() < RAMP_LIMIT)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Some(background)
            }
            None => None,
        };
        runtime.block_on(audit.growth())?;
        let before = abuse::dir_size(&data_dir)?;
        let started = Instant::now();
        let broker_before = target.cpu_seconds(ticks)?;
        let (tpm, snp) = if phase == AbusePhase::MalformedAlone {
            std::thread::sleep(options.duration);
            (PhaseReport::new(&Phase::default(), None, 0.0), PhaseReport::new(&Phase::default(), None, 0.0))
        } else {
            honest(options.duration)?
        };
        let broker_cpu = target.cpu_seconds(ticks)? - broker_before;
        let window = started.elapsed().as_secs_f64();
        let abuse = background.map(Background::stop);
        std::thread::sleep(SUMMARY_WAIT);
        let after = abuse::dir_size(&data_dir)?;
        let seconds = started.elapsed().as_secs_f64();
        let audited = runtime.block_on(audit.growth())?;
        let (bytes, file_bytes) = growth(before, after);
        let report = AbusePhaseReport {
            phase,
            tpm,
            snp,
            abuse,
            broker_cpu_percent: if window > 0.0 { broker_cpu / window * 100.0 } else { 0.0 },
            data_dir_growth_bytes: bytes,
            data_dir_growth_file_bytes: file_bytes,
            data_dir_growth_seconds: seconds,
            data_dir_bytes_per_second: if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 },
            audit: audited,
            audit_abuse_bytes_per_second: if seconds > 0.0 {
                audited.summary_bytes as f64 / seconds
            } else {
                0.0
            },
        };
        eprintln!("mooring-load: phase {:?} done: {}", phase, one_line(&report));
        phases.push(report);
        std::thread::sleep(SETTLE);
    }
    Ok(AbuseRunReport {
        rate,
        seconds_per_phase: options.duration.as_secs_f64(),
        vms_per_path: options.vms,
        slow_connections: options.slow_connections,
        machine,
        phases,
    })
}

fn one_line(phase: &AbusePhaseReport) -> String {
    format!(
        "{}; {}; data dir +{} B",
        path_line("TPM", &phase.tpm),
        path_line("SNP", &phase.snp),
        phase.data_dir_growth_bytes
    )
}

/// One path's honest attestations: `TPM 12 ok / 0 errors, p50 1.0 p99 2.0 ms`.
fn path_line(name: &str, path: &PhaseReport) -> String {
    format!(
        "{name} {} ok / {} errors, p50 {:.1} p99 {:.1} ms",
        path.attestations, path.errors, path.p50_ms, path.p99_ms
    )
}

/// One path's columns of the table: ok, errors, p50 and p99 ms.
fn path_columns(path: &PhaseReport) -> String {
    format!("{:>7} {:>5} {:>8.1} {:>8.1}", path.attestations, path.errors, path.p50_ms, path.p99_ms)
}

fn phase_name(phase: AbusePhase) -> &'static str {
    match phase {
        AbusePhase::Quiet => "quiet",
        AbusePhase::Malformed => "malformed",
        AbusePhase::MalformedAlone => "malf. alone",
        AbusePhase::SlowBodies => "slow-bodies",
        AbusePhase::BeginFlood => "begin-flood",
    }
}

impl AbuseRunReport {
    /// Failed honest attestations in every phase.
    pub(crate) fn errors(&self) -> u64 {
        self.phases.iter().map(|p| p.tpm.errors + p.snp.errors).sum()
    }

    /// Prints the table, or JSON.
    pub(crate) fn print(&self, json: bool) {
        if json {
            print_json(self);
            return;
        }
        println!(
            "mooring-load --abuse: honest TPM and SEV-SNP attestations, each open loop at {}/s for {:.0} s per phase \
             ({} VMs per path); {} cores, load {}",
            self.rate, self.seconds_per_phase, self.vms_per_path, self.machine.cores, self.machine.load_average
        );
        println!();
        println!(
            "{:<12} {:>7} {:>5} {:>8} {:>8}  {:>7} {:>5} {:>8} {:>8}  {:>8} {:>8} {:>10} {:>12}",
            "phase",
            "TPM ok",
            "err",
            "p50 ms",
            "p99 ms",
            "SNP ok",
            "err",
            "p50 ms",
            "p99 ms",
            "abuse/s",
            "broker %",
            "dir B/s",
            "abuse aud B/s"
        );
        for phase in &self.phases {
            let abuse_rate = phase.abuse.as_ref().map_or_else(
                || "-".to_owned(),
                |a| format!("{:.0}", if a.seconds > 0.0 { a.requests as f64 / a.seconds } else { 0.0 }),
            );
            println!(
                "{:<12} {}  {}  {:>8} {:>8.0} {:>10.0} {:>12.0}",
                phase_name(phase.phase),
                path_columns(&phase.tpm),
                path_columns(&phase.snp),
                abuse_rate,
                phase.broker_cpu_percent,
                phase.data_dir_bytes_per_second,
                phase.audit_abuse_bytes_per_second
            );
        }
        println!();
        for phase in &self.phases {
            if let Some(abuse) = &phase.abuse {
                println!("{}", abuse.summary());
            }
            println!(
                "{}: data directory +{} bytes on disk (+{} in file lengths) in {:.1} s",
                phase_name(phase.phase),
                phase.data_dir_growth_bytes,
                phase.data_dir_growth_file_bytes,
                phase.data_dir_growth_seconds
            );
            let a = &phase.audit;
            println!(
                "{}: audit log +{} records ({} bytes): {} issued, {} refusal summaries ({} bytes, counting {} refusals), longest reason {} chars",
                phase_name(phase.phase),
                a.records,
                a.bytes,
                a.issued,
                a.summaries,
                a.summary_bytes,
                a.refusals_counted,
                a.longest_reason
            );
            for (kind, count) in phase.tpm.error_kinds.iter().chain(&phase.snp.error_kinds) {
                println!("  honest error: {count} x {kind}");
            }
        }
    }
}

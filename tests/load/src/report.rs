//! The report: a table for people, JSON (`--json`) for machines. The headline is the
//! ratio of the broker's CPU per attestation to the crypto floor.

use std::collections::BTreeMap;

use serde::Serialize;

use super::drive::Phase;
use super::floor::Floor;
use super::options::Path as EvidencePath;

/// Throughput and latency of one phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhaseReport {
    pub(crate) attestations: u64,
    pub(crate) errors: u64,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    pub(crate) seconds: f64,
    pub(crate) per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    /// Broker CPU and memory over the phase (absent without broker pids).
    pub(crate) broker: Option<BrokerUsage>,
    /// This generator's own CPU per attestation, microseconds.
    pub(crate) generator_cpu_us_per_attestation: f64,
}

/// What the broker process(es) used.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct BrokerUsage {
    pub(crate) cpu_seconds: f64,
    pub(crate) cpu_us_per_attestation: f64,
    /// The database server's process tree (replicas on PostgreSQL), when its pid is known.
    pub(crate) db_cpu_seconds: Option<f64>,
    pub(crate) db_cpu_us_per_attestation: Option<f64>,
    /// Resident memory at the end of the phase, MiB.
    pub(crate) rss_mib: f64,
    /// Peak resident memory so far, MiB.
    pub(crate) peak_rss_mib: f64,
}

impl PhaseReport {
    /// Summarises `phase`, with the CPU the broker and this process spent in it.
    pub(crate) fn new(phase: &Phase, broker: Option<BrokerUsage>, generator_cpu_seconds: f64) -> Self {
        let per = |seconds: f64| if phase.ok > 0 { seconds * 1e6 / phase.ok as f64 } else { 0.0 };
        Self {
            attestations: phase.ok,
            errors: phase.error_count(),
            error_kinds: phase.errors.clone(),
            seconds: phase.wall.as_secs_f64(),
            per_second: phase.rate(),
            p50_ms: phase.percentile_ms(50),
            p95_ms: phase.percentile_ms(95),
            p99_ms: phase.percentile_ms(99),
            broker: broker.map(|b| BrokerUsage {
                cpu_us_per_attestation: per(b.cpu_seconds),
                db_cpu_us_per_attestation: b.db_cpu_seconds.map(per),
                ..b
            }),
            generator_cpu_us_per_attestation: per(generator_cpu_seconds),
        }
    }

    /// Broker CPU per attestation over the floor.
    fn ratio(&self, floor: Option<&Floor>) -> Option<f64> {
        let broker = self.broker?;
        let floor = floor?;
        (floor.total_us > 0.0 && broker.cpu_us_per_attestation > 0.0)
            .then(|| broker.cpu_us_per_attestation / floor.total_us)
    }
}

/// The enrollment-scale comparison.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PreloadReport {
    /// Distinct VMs attested into the store.
    pub(crate) vms: u64,
    pub(crate) fill: PhaseReport,
    /// The measured phase again, with the store holding them.
    pub(crate) after: PhaseReport,
    pub(crate) ratio_after: Option<f64>,
    /// Throughput lost after the preload, percent (negative: faster).
    pub(crate) slowdown_percent: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) measured: PhaseReport,
    pub(crate) floor: Option<Floor>,
    /// Broker CPU per attestation divided by the floor: the headline.
    pub(crate) ratio: Option<f64>,
    pub(crate) preload: Option<PreloadReport>,
}

impl Report {
    /// Assembles the report and computes the ratios.
    pub(crate) fn new(
        header: Header,
        measured: PhaseReport,
        floor: Option<Floor>,
        preload: Option<(u64, PhaseReport, PhaseReport)>,
    ) -> Self {
        let ratio = measured.ratio(floor.as_ref());
        let preload = preload.map(|(vms, fill, after)| PreloadReport {
            vms,
            ratio_after: after.ratio(floor.as_ref()),
            slowdown_percent: if measured.per_second > 0.0 {
                (1.0 - after.per_second / measured.per_second) * 100.0
            } else {
                0.0
            },
            fill,
            after,
        });
        Self { header, measured, floor, ratio, preload }
    }

    /// Failed attestations in every phase.
    pub(crate) fn errors(&self) -> u64 {
        self.measured.errors + self.preload.as_ref().map_or(0, |p| p.fill.errors + p.after.errors)
    }

    /// Prints the table, or JSON.
    pub(crate) fn print(&self, json: bool) {
        if json {
            print_json(self);
            return;
        }
        let h = &self.header;
        let rate = h.rate.map_or_else(|| "closed loop".to_owned(), |r| format!("open loop at {r}/s"));
        println!(
            "mooring-load: {:?} path, {} VMs, concurrency {}, {rate}, {} source addresses, {} broker(s); {} cores, load {}",
            h.path, h.vms, h.concurrency, h.sources, h.brokers, h.machine.cores, h.machine.load_average
        );
        println!();
        println!(
            "{:<22} {:>10} {:>8} {:>9} {:>8} {:>8} {:>8} {:>12} {:>9} {:>9} {:>9}",
            "phase",
            "attest.",
            "errors",
            "att/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "broker µs/at",
            "db µs/at",
            "RSS MiB",
            "peak MiB"
        );
        print_phase("measured", &self.measured);
        if let Some(preload) = &self.preload {
            print_phase(&format!("preload {} VMs", preload.vms), &preload.fill);
            print_phase("measured after preload", &preload.after);
        }
        if let Some(floor) = &self.floor {
            println!();
            println!("crypto floor (in-process, one thread, CPU time per attestation):");
            for component in &floor.components {
                println!("  {:<46} {:>9.1} µs", component.name, component.us);
            }
            println!("  {:<46} {:>9.1} µs", "total", floor.total_us);
        }
        println!();
        if let (Some(ratio), Some(broker)) = (self.ratio, self.measured.broker) {
            println!(
                "broker CPU per attestation {:.1} µs = {ratio:.2} x the crypto floor",
                broker.cpu_us_per_attestation
            );
            if let Some(db) = broker.db_cpu_us_per_attestation {
                println!(
                    "database CPU per attestation {db:.1} µs (broker + database {:.1} µs)",
                    broker.cpu_us_per_attestation + db
                );
            }
        }
        if let Some(preload) = &self.preload {
            println!(
                "after {} enrolled VMs: throughput {:+.1}% ({:.0} -> {:.0}/s){}",
                preload.vms,
                -preload.slowdown_percent,
                self.measured.per_second,
                preload.after.per_second,
                preload.ratio_after.map(|r| format!(", {r:.2} x the floor")).unwrap_or_default()
            );
        }
        for (kind, count) in self.all_error_kinds() {
            println!("error: {count} x {kind}");
        }
    }

    fn all_error_kinds(&self) -> BTreeMap<String, u64> {
        let mut all = self.measured.error_kinds.clone();
        if let Some(preload) = &self.preload {
            for (kind, n) in preload.fill.error_kinds.iter().chain(&preload.after.error_kinds) {
                *all.entry(kind.clone()).or_default() += n;
            }
        }
        all
    }
}

/// Prints `report` as pretty JSON (`--json`).
pub(crate) fn print_json(report: &impl Serialize) {
    match serde_json::to_string_pretty(report) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("mooring-load: cannot encode the report: {e}"),
    }
}

/// What the run was, and on what.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Header {
    pub(crate) path: EvidencePath,
    pub(crate) vms: usize,
    pub(crate) concurrency: usize,
    /// Open-loop rate (attestations started per second), if any.
    pub(crate) rate: Option<f64>,
    pub(crate) sources: u8,
    pub(crate) brokers: usize,
    #[serde(flatten)]
    pub(crate) machine: Machine,
}

/// Cores and load average when the run started (the conditions of the numbers).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) load_average: String,
}

impl Machine {
    /// This machine now (`/proc/loadavg`; empty when unreadable).
    pub(crate) fn now() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Self { cores, load_average }
    }
}

fn print_phase(name: &str, phase: &PhaseReport) {
    let (cpu, db, rss, peak) = phase.broker.map_or_else(
        || ("-".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned()),
        |b| {
            (
                format!("{:.1}", b.cpu_us_per_attestation),
                b.db_cpu_us_per_attestation.map_or_else(|| "-".to_owned(), |db| format!("{db:.1}")),
                format!("{:.1}", b.rss_mib),
                format!("{:.1}", b.peak_rss_mib),
            )
        },
    );
    println!(
        "{:<22} {:>10} {:>8} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>12} {:>9} {:>9} {:>9}",
        name,
        phase.attestations,
        phase.errors,
        phase.per_second,
        phase.p50_ms,
        phase.p95_ms,
        phase.p99_ms,
        cpu,
        db,
        rss,
        peak
    );
}

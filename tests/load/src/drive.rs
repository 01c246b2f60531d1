//! The boot storm: `concurrency` workers, each attesting one VM after another through
//! `begin` and `finish`, until a deadline or a count; per-attestation latency and
//! failures are collected per worker and merged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mooring_attestation::protocol::{Code, IssuedCredentials, SnpChallenge, TpmChallenge};

use super::client::{Endpoint, Failure};
use super::fleet::{Fleet, Vms};
use super::tpm_vm::{LogSent, TpmVm};

/// When a phase ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    /// No attestation starts after this instant.
    At(Instant),
    /// Exactly this many attestations are started.
    After(u64),
}

/// Which VM attests next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The fleet's VMs in turn.
    Fleet,
    /// A new TPM VM each time (the preload: the store ends up holding all of them).
    Fresh,
    /// The SEV-SNP guests of a fleet of both kinds, in turn (its TPM VMs are `Fleet`).
    SnpGuests,
}

/// What one phase measured.
#[derive(Debug, Default)]
pub(crate) struct Phase {
    /// Attestations that ended with credentials.
    pub(crate) ok: u64,
    /// Failures by kind.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Latency of each successful attestation (begin to credentials), microseconds.
    pub(crate) latencies_us: Vec<u32>,
    /// Wall time from the first start to the last end.
    pub(crate) wall: Duration,
}

impl Phase {
    /// Failed attestations.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful attestations per second.
    pub(crate) fn rate(&self) -> f64 {
        let seconds = self.wall.as_secs_f64();
        if seconds > 0.0 {
            self.ok as f64 / seconds
        } else {
            0.0
        }
    }

    /// The `p`-th percentile latency (0-100), milliseconds.
    pub(crate) fn percentile_ms(&self, p: usize) -> f64 {
        percentile(&self.latencies_us, p) / 1000.0
    }

    fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Nearest-rank `p`-th percentile (0-100) of unsorted samples.
fn percentile(samples: &[u32], p: usize) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = p.min(100).saturating_mul(sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().map_or(0.0, f64::from)
}

/// Runs one phase: closed loop, or open loop at `rate` attestations per second.
pub(crate) async fn run(
    fleet: Arc<Fleet>,
    endpoints: Arc<Vec<Endpoint>>,
    concurrency: usize,
    stop: Stop,
    source: Source,
    rate: Option<f64>,
) -> Phase {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let (fleet, endpoints, next) = (Arc::clone(&fleet), Arc::clone(&endpoints), Arc::clone(&next));
        workers.spawn(async move {
            let endpoint = endpoints.get(worker % endpoints.len().max(1)).cloned();
            let mut phase = Phase::default();
            let Some(endpoint) = endpoint else { return phase };
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                // Open loop: attestation `n` is due at `n / rate` seconds, and its latency
                // counts from then, also when every worker was still busy at that time.
                let due = rate.map(|rate| started + Duration::from_secs_f64(n as f64 / rate));
                let go = match stop {
                    Stop::At(deadline) => due.unwrap_or_else(Instant::now) < deadline,
                    Stop::After(count) => n < count,
                };
                if !go {
                    break;
                }
                if let Some(due) = due {
                    tokio::time::sleep_until(due.into()).await;
                }
                let begun = due.unwrap_or_else(Instant::now);
                match attest(&fleet, &endpoint, n, source).await {
                    Ok(()) => {
                        phase.ok += 1;
                        let micros = u32::try_from(begun.elapsed().as_micros()).unwrap_or(u32::MAX);
                        phase.latencies_us.push(micros);
                    }
                    Err(failure) => *phase.errors.entry(failure.to_string()).or_default() += 1,
                }
            }
            phase
        });
    }
    let mut total = Phase::default();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(phase) => total.merge(phase),
            Err(e) => *total.errors.entry(format!("worker: {e}")).or_default() += 1,
        }
    }
    total.wall = started.elapsed();
    total
}

/// One attestation of VM number `n`.
async fn attest(fleet: &Fleet, endpoint: &Endpoint, n: u64, source: Source) -> Result<(), Failure> {
    let index = usize::try_from(n).unwrap_or(usize::MAX);
    let credentials = match (&fleet.vms, source) {
        (Vms::Tpm(_) | Vms::Both { .. }, Source::Fresh) => {
            let vm = TpmVm::new(&fleet.ca).map_err(|e| Failure::Vm(format!("{e:#}")))?;
            attest_tpm(fleet, endpoint, &vm).await?
        }
        (Vms::Tpm(vms) | Vms::Both { tpm: vms, .. }, Source::Fleet) => {
            let vm = vms.get(index % vms.len().max(1)).ok_or_else(|| Failure::Vm("empty fleet".into()))?;
            attest_tpm(fleet, endpoint, vm).await?
        }
        (Vms::Tpm(_), Source::SnpGuests) => {
            return Err(Failure::Vm("a TPM fleet has no SEV-SNP guests".into()))
        }
        (Vms::Snp(vms) | Vms::Both { snp: vms, .. }, _) => {
            let vm = vms.get(index % vms.len().max(1)).ok_or_else(|| Failure::Vm("empty fleet".into()))?;
            let host = fleet.hosts.get(vm.host()).ok_or_else(|| Failure::Vm("VM without host".into()))?;
            let challenge: SnpChallenge = endpoint.post("snp/begin", b"{}".to_vec()).await?;
            let body =
                serde_json::to_vec(&vm.finish(host, &challenge)).map_err(|e| Failure::Vm(e.to_string()))?;
            endpoint.post::<IssuedCredentials>("snp/finish", body).await?
        }
    };
    if credentials.spiffe_id.is_empty() || credentials.jwt_svid.is_empty() {
        return Err(Failure::Decode { route: "finish", reason: "credentials without an identity".into() });
    }
    Ok(())
}

/// One TPM attestation. Like `mooring-client`, the VM names its event log by digest
/// first and sends it only when the broker holds no copy (unless `--send-event-log`).
async fn attest_tpm(fleet: &Fleet, endpoint: &Endpoint, vm: &TpmVm) -> Result<IssuedCredentials, Failure> {
    let challenge: TpmChallenge = endpoint.post("tpm/begin", vm.begin_body().to_vec()).await?;
    let evidence = vm.evidence(&challenge, &fleet.boot).map_err(|e| Failure::Vm(format!("{e:#}")))?;
    let body =
        |sent| TpmVm::finish_body(&evidence, &fleet.boot, sent).map_err(|e| Failure::Vm(format!("{e:#}")));
    if !fleet.boot.named() {
        return endpoint.post("tpm/finish", body(LogSent::Whole)?).await;
    }
    match endpoint.post("tpm/finish", body(LogSent::Named)?).await {
        Err(Failure::Refused { code, .. }) if code == Code::EventLogUnknown.as_str() => {
            endpoint.post("tpm/finish", body(LogSent::WholeAndNamed)?).await
        }
        answer => answer,
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentile(&samples, 50), 50.0);
        assert_eq!(percentile(&samples, 99), 99.0);
        assert_eq!(percentile(&samples, 100), 100.0);
        assert_eq!(percentile(&[], 50), 0.0);
        assert_eq!(percentile(&[7], 1), 7.0);
    }
}

//! The broker service: everything between the HTTP layer and the store. Methods are
//! synchronous (CPU-bound verification and store writes); the HTTP layer runs them on
//! the blocking pool.

pub(crate) mod admin;
pub(crate) mod azure;
mod challenge;
mod documents;
pub(crate) mod dry_run;
mod event_logs;
mod exchange;
mod issue;
mod judged;
mod lifecycle;
mod seal;
pub(crate) mod snp;
pub(crate) mod tpm;
pub(crate) mod verify;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use mooring_attestation::snp::SnpVerifier;
use mooring_attestation::x509::{CertBundle, TrustStore};

use mooring_attestation::protocol::{HardwareId, IdentityStatus};

use crate::challenge::ChallengeSeal;
use crate::config::Config;
use crate::issuer::Issuer;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyError};
use crate::refusal::{Code, Refusal};
use crate::store::{Store, StoreError};
use crate::tally::RefusalTally;

/// The outside world's clock (injected so tests and replicas agree on one source).
pub(crate) trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;

    fn unix(&self) -> i64 {
        unix_seconds(self.now())
    }
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The system clock.
#[derive(Debug)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Where a request came from, as the broker will bind it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) address: IpAddr,
    /// SHA-256 of the request body (for the audit log).
    pub(crate) body_digest: [u8; 32],
}

/// The broker.
#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    challenges: ChallengeSeal,
    policy: RwLock<Arc<Policy>>,
    ek_roots: TrustStore,
    snp: SnpVerifier,
    pub(crate) issuer: Issuer,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Metrics,
    /// Refusals of requests that proved no identity, until the next summary record.
    pub(crate) tally: RefusalTally,
    tally_since: std::sync::atomic::AtomicI64,
    rng: SystemRandom,
    /// Recent attestations for admin dry runs ([`Broker::remember`]).
    recent: std::sync::Mutex<std::collections::VecDeque<std::sync::Arc<dry_run::Recent>>>,
    /// Event logs admitted VMs sent, for VMs that name theirs by digest.
    event_logs: event_logs::KnownEventLogs,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// The EK certificate roots (and intermediates) `tpm.ek_roots` names.
pub(crate) fn ek_roots(config: &crate::config::TpmConfig) -> anyhow::Result<TrustStore> {
    let mut anchors = Vec::new();
    for path in &config.ek_roots {
        let bundle = if path.is_dir() {
            CertBundle::from_dir(path, mooring_attestation::x509::bundle::Recursion::Recursive)
        } else {
            CertBundle::from_file(path)
        }
        .map_err(|e| anyhow::anyhow!("tpm.ek_roots {}: {e}", path.display()))?;
        anchors.extend(bundle.certificates().iter().cloned());
    }
    let (roots, intermediates): (Vec<_>, Vec<_>) = anchors.into_iter().partition(|c| c.is_self_issued());
    Ok(TrustStore::builder().anchors(roots).intermediates(intermediates).build())
}

/// Warns of what a policy asks that this broker's configuration cannot do, at start and
/// at each reload.
fn warn_if_unusable(config: &Config, policy: &Policy) {
    if config.federation.is_none() && policy.classes().iter().any(|c| !c.federation_audiences().is_empty()) {
        tracing::warn!(
            "the policy names federation audiences, but without [federation] no token is exchanged"
        );
    }
}

impl Broker {
    /// Builds the service from loaded parts.
    pub(crate) fn new(
        config: Config,
        store: Arc<dyn Store>,
        challenge_key: &[u8; 32],
        policy: Policy,
        issuer: Issuer,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        warn_if_unusable(&config, &policy);
        let ek_roots = ek_roots(&config.tpm)?;
        let snp = snp::verifier(&config.snp)?;
        let challenges = ChallengeSeal::new(challenge_key).map_err(|e| anyhow::anyhow!("{e}"))?;
        let event_logs = event_logs::KnownEventLogs::new(config.limits.known_event_log_bytes);
        Ok(Self {
            config,
            store,
            challenges,
            policy: RwLock::new(Arc::new(policy)),
            ek_roots,
            snp,
            issuer,
            clock: Arc::clone(&clock),
            metrics: Metrics::default(),
            tally: RefusalTally::default(),
            tally_since: std::sync::atomic::AtomicI64::new(clock.unix()),
            rng: SystemRandom::new(),
            recent: std::sync::Mutex::default(),
            event_logs,
        })
    }

    /// The policy in force.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Loads the policy file again; a bad file leaves the old policy in force.
    pub(crate) fn reload_policy(&self) -> Result<Arc<Policy>, PolicyError> {
        let policy = Arc::new(Policy::load(&self.config.policy)?);
        warn_if_unusable(&self.config, &policy);
        *self.policy.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&policy);
        Ok(policy)
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.unix()
    }

    fn random<const N: usize>(&self) -> Result<[u8; N], Refusal> {
        let mut bytes = [0u8; N];
        self.rng.fill(&mut bytes).map_err(|_| Refusal::new(Code::Internal, "no randomness"))?;
        Ok(bytes)
    }

    /// An administrator's standing word on `hardware`: blocked hardware is refused (see
    /// [`standing`]); otherwise whether it is enrolled.
    pub(crate) fn enrolled(&self, hardware: &HardwareId) -> Result<bool, Refusal> {
        let status = self.store.identity_status(hardware).map_err(|e| internal("reading enrollment", e))?;
        standing(hardware, status)
    }

    /// Refuses blocked hardware ([`standing`]), whether enrolled or not.
    pub(crate) fn not_blocked(&self, hardware: &HardwareId) -> Result<(), Refusal> {
        self.enrolled(hardware).map(drop)
    }

    /// Periodic housekeeping: prune expired challenges, rotate keys when due.
    pub(crate) fn housekeeping(&self) {
        let now = self.now();
        match self.store.prune_used(now) {
            Ok(pruned) if pruned > 0 => tracing::debug!(pruned, "pruned expired challenges"),
            Ok(_) => {}
            Err(e) => tracing::warn!("pruning challenges: {e}"),
        }
        if let Err(e) = self.issuer.rotate_if_due(now) {
            tracing::error!("key rotation failed: {e:#}");
        }
    }
}

/// The one place the "blocked" rule lives: blocked hardware is refused, whatever it shows;
/// otherwise, whether an administrator enrolled it.
pub(crate) fn standing(hardware: &HardwareId, status: Option<IdentityStatus>) -> Result<bool, Refusal> {
    match status {
        Some(IdentityStatus::Blocked) => Err(Refusal::new(
            Code::VmBlocked,
            format!("{} is blocked by an administrator", describe(hardware)),
        )),
        Some(IdentityStatus::Enrolled) => Ok(true),
        None => Ok(false),
    }
}

/// `EK <hex>` or `chip <hex>`, for reasons.
fn describe(hardware: &HardwareId) -> String {
    match hardware {
        HardwareId::Ek(id) => format!("EK {id}"),
        HardwareId::Chip(id) => format!("chip {id}"),
    }
}

/// Internal failures become a refusal with a generic reason; the detail is logged.
pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Refusal {
    tracing::error!("{context}: {e}");
    Refusal::new(Code::Internal, format!("{context} failed; see the broker log"))
}

/// A store call that failed: `overloaded` when the store is full for now (the caller
/// may retry after a while), otherwise [`internal`].
pub(crate) fn store_failure(context: &str, e: StoreError) -> Refusal {
    match e {
        StoreError::Busy(reason) => Refusal::new(Code::Overloaded, format!("{context}: {reason}")),
        e => internal(context, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_store_is_overloaded_and_any_other_failure_internal() {
        let busy =
            store_failure("recording the credential", StoreError::Busy("16384 writes are waiting".into()));
        assert_eq!(busy.code, Code::Overloaded);
        assert!(busy.reason.contains("16384 writes are waiting"), "{}", busy.reason);
        let broken =
            store_failure("recording the credential", StoreError::Backend("db password=hunter2".into()));
        assert_eq!(broken.code, Code::Internal);
        // The cause goes to the broker's log, not to the caller.
        assert!(!broken.reason.contains("hunter2"), "{}", broken.reason);
    }
}

//! The broker service: everything between the HTTP layer and the store. Methods are
//! synchronous (CPU-bound verification and store writes); the HTTP layer runs them on
//! the blocking pool.

pub(crate) mod admin;
mod documents;
mod seal;
mod snp;
pub(crate) mod tpm;
pub(crate) mod verify;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use mooring_attestation::snp::SnpVerifier;
use mooring_attestation::x509::{CertBundle, TrustStore};

use crate::audit::{Action, AuditEvent, Outcome};
use crate::challenge::ChallengeSeal;
use crate::config::Config;
use crate::issuer::Issuer;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyError};
use crate::records::{ChallengeRecord, EvidenceKind};
use crate::refusal::{Code, Refusal};
use crate::store::{Consumed, Store, StoreError};
use crate::tally::RefusalTally;

/// The outside world's clock (injected so tests and replicas agree on one source).
pub(crate) trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;

    fn unix(&self) -> i64 {
        self.now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
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
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
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
        let mut anchors = Vec::new();
        for path in &config.tpm.ek_roots {
            let bundle = if path.is_dir() {
                CertBundle::from_dir(path, mooring_attestation::x509::bundle::Recursion::Recursive)
            } else {
                CertBundle::from_file(path)
            }
            .map_err(|e| anyhow::anyhow!("tpm.ek_roots {}: {e}", path.display()))?;
            anchors.extend(bundle.certificates().iter().cloned());
        }
        let (roots, intermediates): (Vec<_>, Vec<_>) = anchors.into_iter().partition(|c| c.is_self_issued());
        let ek_roots = TrustStore::builder().anchors(roots).intermediates(intermediates).build();
        let snp = snp::verifier(&config.snp)?;
        let challenges = ChallengeSeal::new(challenge_key).map_err(|e| anyhow::anyhow!("{e}"))?;
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
        })
    }

    /// The policy in force.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Loads the policy file again; a bad file leaves the old policy in force.
    pub(crate) fn reload_policy(&self) -> Result<Arc<Policy>, PolicyError> {
        let policy = Arc::new(Policy::load(&self.config.policy)?);
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

    /// The id of a new challenge: `record` sealed into it (nothing is stored).
    pub(crate) fn open_challenge(&self, record: &ChallengeRecord) -> Result<String, Refusal> {
        self.challenges.seal(record)
    }

    /// Takes a challenge for `finish`: one that does not open, has expired, is of the other
    /// kind or was begun from another address is refused; an accepted one is used up.
    pub(crate) fn consume(
        &self,
        id: &str,
        kind: EvidenceKind,
        caller: &Caller,
    ) -> Result<ChallengeRecord, Refusal> {
        let record = self.challenges.open(id).ok_or_else(|| {
            Refusal::new(
                Code::ChallengeUnknown,
                "no such challenge: never issued, altered, or issued before the broker restarted; begin again",
            )
        })?;
        let now = self.now();
        if record.expires_at < now {
            return Err(Refusal::new(
                Code::ChallengeExpired,
                format!("challenge expired {} s ago: begin again", now - record.expires_at),
            ));
        }
        if record.kind != kind {
            return Err(Refusal::new(
                Code::ChallengeKind,
                "challenge was issued for the other evidence kind",
            ));
        }
        if record.source != caller.address {
            return Err(Refusal::new(
                Code::ChallengeAddressMismatch,
                format!(
                    "challenge was begun from {} and finished from {}: the credential binds the \
                     address that attested, so both steps must come from it",
                    record.source, caller.address
                ),
            ));
        }
        match self.store.use_once(&record.id, record.expires_at) {
            Ok(Consumed::First) => Ok(record),
            Ok(Consumed::AlreadyUsed) => {
                Err(Refusal::new(Code::ChallengeUsed, "challenge already used: begin again"))
            }
            Err(StoreError::Busy(reason)) => Err(Refusal::new(Code::Overloaded, reason)),
            Err(e) => Err(internal("consuming the challenge", e)),
        }
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

impl Broker {
    /// An audit event for a decision about `caller`, with the policy digest in force.
    pub(crate) fn event(
        &self,
        action: Action,
        outcome: Outcome,
        code: &str,
        reason: impl Into<String>,
        caller: Option<&Caller>,
    ) -> AuditEvent {
        let mut event = AuditEvent::new(self.now(), action, outcome, code, reason);
        event.policy_digest = Some(self.policy().digest().to_owned());
        if let Some(caller) = caller {
            event.peer = Some(caller.address.to_string());
            event.evidence_digest = Some(hex::encode(caller.body_digest));
        }
        event
    }

    /// Writes the summary of the refusals counted since the last one (see [`RefusalTally`]).
    pub(crate) fn summarize_refusals(&self) {
        let now = self.now();
        let since = self.tally_since.swap(now, std::sync::atomic::Ordering::Relaxed);
        if let Some(mut event) = self.tally.summary(now, since) {
            event.policy_digest = Some(self.policy().digest().to_owned());
            if let Err(e) = self.store.audit(event) {
                tracing::error!("audit summary of refusals lost: {e}");
            }
        }
    }

    /// Counts a refusal of a request that proved no identity (nothing is stored now).
    pub(crate) fn tally_refusal(&self, action: Action, refusal: &Refusal, source: Option<IpAddr>) {
        self.metrics.refused(action, refusal.code);
        if refusal.code != Code::RateLimited {
            self.tally.count(source, action, refusal.code);
        }
    }

    /// Runs one decision about `caller` and audits it when it is a refusal. `decide` names
    /// the hardware identity in its argument as soon as the request has proved it (an EK
    /// certificate or enrollment, a challenge begun by one, a verified report); a refusal
    /// before that is only counted ([`Broker::tally_refusal`]), so anonymous floods cannot
    /// fill the audit log.
    pub(crate) fn audited<T>(
        &self,
        action: Action,
        caller: &Caller,
        decide: impl FnOnce(&mut Option<String>) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let mut hardware_id = None;
        let result = decide(&mut hardware_id);
        match (&result, hardware_id.as_deref()) {
            // Rate-limited and anonymous refusals: counted, not recorded one by one.
            (Err(refusal), _) if refusal.code == Code::RateLimited => {
                self.tally_refusal(action, refusal, Some(caller.address));
            }
            (Err(refusal), None) => self.tally_refusal(action, refusal, Some(caller.address)),
            (Err(refusal), Some(id)) => self.audit_refusal(action, refusal, Some(caller), Some(id)),
            (Ok(_), _) => {}
        }
        result
    }

    /// Records a refusal; a store failure here is logged, not turned into another error.
    pub(crate) fn audit_refusal(
        &self,
        action: Action,
        refusal: &Refusal,
        caller: Option<&Caller>,
        hardware_id: Option<&str>,
    ) {
        let mut event = self.event(action, Outcome::Refused, refusal.code.as_str(), &refusal.reason, caller);
        event.hardware_id = hardware_id.map(str::to_owned);
        self.metrics.refused(action, refusal.code);
        if let Err(e) = self.store.audit(event) {
            tracing::error!("audit record of a refusal lost: {e}");
        }
    }
}

/// Internal failures become a refusal with a generic reason; the detail is logged.
pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Refusal {
    tracing::error!("{context}: {e}");
    Refusal::new(Code::Internal, format!("{context} failed; see the broker log"))
}

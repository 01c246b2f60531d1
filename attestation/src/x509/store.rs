//! Trust anchors and known intermediates, parsed once, with a cache of verified
//! issuer → anchor paths.
//!
//! The cache is keyed by the SHA-256 of the DER of the certificate that issued a
//! leaf, and holds the verified path from that issuer to its anchor together with
//! the window in which every certificate on it is valid. A later leaf whose
//! issuer candidate is cached, at a time inside the window, costs one signature
//! check (with the issuer key already parsed for aws-lc-rs). Outside the window,
//! or when that check fails, the full search runs and reports the precise error.
//! A cached path is only used for a candidate the current call would consider
//! anyway (same store, or the same supplied intermediate), so results never
//! depend on what was verified before.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use super::cert::Certificate;
use super::chain::{check_certificate, unix_seconds, CertPathError, Search, VerifiedChain};
use crate::validity::Windowed;

/// Most cached issuer paths; the cache is emptied when it fills up. TPM EK
/// issuers number in the low hundreds.
pub const MAX_CACHED_PATHS: usize = 4096;

/// A set of trust anchors plus known (untrusted) intermediates.
///
/// Build it once (for instance from [`super::bundle::load_dir`]) and share it
/// (`Arc<TrustStore>`): verification takes `&self` and is thread-safe.
pub struct TrustStore {
    anchors: Vec<Arc<Certificate>>,
    intermediates: Vec<Arc<Certificate>>,
    anchors_by_name: HashMap<Box<[u8]>, Vec<usize>>,
    intermediates_by_name: HashMap<Box<[u8]>, Vec<usize>>,
    cache: RwLock<HashMap<[u8; 32], Windowed<Issuers>>>,
}

/// A verified path above a leaf: its issuers, up to the trust anchor.
type Issuers = Arc<[Arc<Certificate>]>;

/// Collects certificates for a [`TrustStore`].
#[derive(Debug, Default)]
pub struct TrustStoreBuilder {
    anchors: Vec<Certificate>,
    intermediates: Vec<Certificate>,
}

impl TrustStoreBuilder {
    /// Adds trust anchors: any certificate trusted by configuration, self-signed
    /// or not (a path may end at an intermediate configured as an anchor).
    #[must_use]
    pub fn anchors(mut self, certs: impl IntoIterator<Item = Certificate>) -> Self {
        self.anchors.extend(certs);
        self
    }

    /// Adds intermediates available to every path (not trusted by themselves).
    #[must_use]
    pub fn intermediates(mut self, certs: impl IntoIterator<Item = Certificate>) -> Self {
        self.intermediates.extend(certs);
        self
    }

    /// Indexes the certificates; duplicates (same DER) are kept once, and an
    /// intermediate that is also an anchor is kept as the anchor.
    #[must_use]
    pub fn build(self) -> TrustStore {
        let mut seen = std::collections::HashSet::new();
        let anchors: Vec<Arc<Certificate>> =
            self.anchors.into_iter().filter(|c| seen.insert(*c.fingerprint())).map(Arc::new).collect();
        let intermediates: Vec<Arc<Certificate>> =
            self.intermediates.into_iter().filter(|c| seen.insert(*c.fingerprint())).map(Arc::new).collect();
        TrustStore {
            anchors_by_name: index(&anchors),
            intermediates_by_name: index(&intermediates),
            anchors,
            intermediates,
            cache: RwLock::new(HashMap::new()),
        }
    }
}

fn index(certs: &[Arc<Certificate>]) -> HashMap<Box<[u8]>, Vec<usize>> {
    let mut map: HashMap<Box<[u8]>, Vec<usize>> = HashMap::new();
    for (i, cert) in certs.iter().enumerate() {
        map.entry(cert.subject_key().into()).or_default().push(i);
    }
    map
}

impl TrustStore {
    /// A store trusting `anchors`, with no extra intermediates.
    #[must_use]
    pub fn new(anchors: impl IntoIterator<Item = Certificate>) -> Self {
        Self::builder().anchors(anchors).build()
    }

    /// Starts a store with anchors and intermediates.
    #[must_use]
    pub fn builder() -> TrustStoreBuilder {
        TrustStoreBuilder::default()
    }

    /// The trust anchors.
    #[must_use]
    pub fn anchors(&self) -> &[Arc<Certificate>] {
        &self.anchors
    }

    /// The configured intermediates.
    #[must_use]
    pub fn intermediates(&self) -> &[Arc<Certificate>] {
        &self.intermediates
    }

    /// Number of cached issuer paths.
    #[must_use]
    pub fn cached_paths(&self) -> usize {
        self.cache.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Forgets every cached path.
    pub fn clear_cache(&self) {
        self.cache.write().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Verifies that `leaf` chains to a trust anchor at time `now`, through the
    /// store's intermediates and `intermediates` (any order, unused ones ignored).
    /// A leaf that is itself a trust anchor verifies as a path of one.
    ///
    /// # Errors
    /// [`CertPathError`] naming the certificate at fault: unknown issuer, expired or
    /// not-yet-valid certificate, bad signature, CA constraint violation.
    pub fn verify(
        &self,
        leaf: &Certificate,
        intermediates: &[Certificate],
        now: SystemTime,
    ) -> Result<VerifiedChain, CertPathError> {
        let now = unix_seconds(now)?;
        check_certificate(leaf, now)?;
        let leaf = Arc::new(leaf.clone());
        if self.is_anchor(&leaf) {
            return Ok(VerifiedChain::new(leaf, Arc::from(Vec::new()), now));
        }
        let extra: Vec<Arc<Certificate>> = intermediates.iter().cloned().map(Arc::new).collect();
        for (candidate, _) in self.candidates(&leaf, &extra) {
            if let Some(issuers) = self.cached(candidate.fingerprint(), now) {
                if let Some(issuer) = issuers.first() {
                    if leaf.verify_issued_by(issuer).is_ok() {
                        return Ok(VerifiedChain::new(leaf, issuers, now));
                    }
                }
            }
        }
        let issuers = Search::new(self, &extra, now).run(Arc::clone(&leaf))?;
        let issuers: Issuers = Arc::from(issuers);
        self.remember(&issuers);
        Ok(VerifiedChain::new(leaf, issuers, now))
    }

    fn is_anchor(&self, cert: &Certificate) -> bool {
        self.anchors_by_name
            .get(cert.subject_key())
            .is_some_and(|ids| ids.iter().any(|i| self.anchors.get(*i).is_some_and(|a| **a == *cert)))
    }

    /// Possible issuers of `child`: same name, key identifiers agreeing when both
    /// are present; trust anchors first (flagged `true`), then intermediates.
    pub(super) fn candidates(
        &self,
        child: &Certificate,
        extra: &[Arc<Certificate>],
    ) -> Vec<(Arc<Certificate>, bool)> {
        let name = child.issuer_key();
        let fits = |c: &Arc<Certificate>| match (child.authority_key_id(), c.subject_key_id()) {
            (Some(aki), Some(ski)) => aki == ski,
            _ => true,
        };
        let from = |list: &[Arc<Certificate>], by_name: &HashMap<Box<[u8]>, Vec<usize>>| {
            by_name
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|i| list.get(*i))
                .filter(|c| fits(c))
                .cloned()
                .collect()
        };
        let anchors: Vec<Arc<Certificate>> = from(&self.anchors, &self.anchors_by_name);
        let known: Vec<Arc<Certificate>> = from(&self.intermediates, &self.intermediates_by_name);
        let supplied = extra.iter().filter(|c| c.subject_key() == name && fits(c)).cloned();
        let mut out: Vec<(Arc<Certificate>, bool)> = anchors.into_iter().map(|c| (c, true)).collect();
        for c in known.into_iter().chain(supplied) {
            if !out.iter().any(|(o, _)| o.fingerprint() == c.fingerprint()) {
                out.push((c, false));
            }
        }
        out
    }

    fn cached(&self, issuer: &[u8; 32], now: i64) -> Option<Issuers> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        cache.get(issuer).and_then(|path| path.at(now)).cloned()
    }

    /// Caches the path for as long as every certificate on it is valid.
    fn remember(&self, issuers: &Issuers) {
        let Some(first) = issuers.first() else { return };
        let valid_from = issuers.iter().map(|c| c.not_before_unix()).max().unwrap_or(i64::MAX);
        let valid_until = issuers.iter().map(|c| c.not_after_unix()).min().unwrap_or(i64::MIN);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_PATHS {
            cache.clear();
        }
        cache.insert(*first.fingerprint(), Windowed::new(Arc::clone(issuers), valid_from..=valid_until));
    }
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustStore")
            .field("anchors", &self.anchors.len())
            .field("intermediates", &self.intermediates.len())
            .field("cached_paths", &self.cached_paths())
            .finish()
    }
}

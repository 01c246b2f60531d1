//! What this service trusts right now: the broker's trust bundle (both modes; it holds the
//! CAs that mutual TLS accepts) and its revocation list (offline mode), refreshed on their
//! own intervals. A failed refresh keeps the last good copy; a revocation list that grows
//! too old refuses every caller (the verifier checks its age).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use mooring_attestation::protocol::RevocationList;
use mooring_attestation::svid::TrustBundle;

use crate::broker::BrokerClient;
use crate::config::{Mode, Refresh};
use crate::tls::BundleClientVerifier;

/// The current bundle and revocation list.
#[derive(Debug)]
pub(crate) struct Trust {
    bundle: RwLock<Arc<TrustBundle>>,
    revocations: RwLock<Arc<RevocationList>>,
    client_verifier: Arc<BundleClientVerifier>,
}

impl Trust {
    /// Fetches the bundle (and, offline, the revocation list) once; the service does not
    /// start without them.
    pub(crate) async fn fetch(broker: &BrokerClient, mode: Mode) -> anyhow::Result<Self> {
        let bundle = broker.bundle().await?;
        let revocations = match mode {
            Mode::Offline => broker.revocations().await?,
            Mode::Broker => RevocationList::default(),
        };
        let client_verifier = Arc::new(BundleClientVerifier::new(&bundle)?);
        Ok(Self {
            bundle: RwLock::new(Arc::new(bundle)),
            revocations: RwLock::new(Arc::new(revocations)),
            client_verifier,
        })
    }

    pub(crate) fn bundle(&self) -> Arc<TrustBundle> {
        Arc::clone(&self.bundle.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn revocations(&self) -> Arc<RevocationList> {
        Arc::clone(&self.revocations.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The TLS client-certificate verifier, which follows the bundle.
    pub(crate) fn client_verifier(&self) -> Arc<BundleClientVerifier> {
        Arc::clone(&self.client_verifier)
    }

    /// Takes the broker's bundle when its `spiffe_sequence` is newer than the one held: the
    /// same sequence is the same keys, and a lower one is an older bundle (a replica that has
    /// not seen a rotation yet), which would bring back keys that have left.
    async fn refresh_bundle(&self, broker: &BrokerClient) -> anyhow::Result<()> {
        let bundle = broker.bundle().await?;
        if !is_newer(&bundle, &self.bundle()) {
            return Ok(());
        }
        self.client_verifier.update(&bundle)?;
        tracing::info!(sequence = bundle.sequence(), "trust bundle changed");
        *self.bundle.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(bundle);
        Ok(())
    }

    /// Waits (up to `wait` seconds) for the broker's list to change, then takes it: a
    /// revocation reaches this service within a poll, and the list is never older than
    /// `wait` while the broker answers.
    async fn refresh_revocations(&self, broker: &BrokerClient, wait: u64) -> anyhow::Result<()> {
        let version = self.revocations().version.clone();
        let list = broker.revocations_after(&version, wait).await?;
        if list.version.is_empty() {
            // A broker that does not version its list answers at once: poll on a timer.
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        tracing::debug!(revocations = list.revocations.len(), "revocation list fetched");
        *self.revocations.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(list);
        Ok(())
    }
}

/// Whether `fetched` replaces `held` (by `spiffe_sequence`; a bundle without one always does).
fn is_newer(fetched: &TrustBundle, held: &TrustBundle) -> bool {
    match (fetched.sequence(), held.sequence()) {
        (Some(fetched), Some(held)) => fetched > held,
        _ => true,
    }
}

/// Keeps `trust` fresh until the runtime stops.
pub(crate) fn spawn_refresh(trust: Arc<Trust>, broker: BrokerClient, refresh: &Refresh, mode: Mode) {
    let every = |seconds: u64| {
        let mut interval = tokio::time::interval(Duration::from_secs(seconds));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    };
    let mut bundle_timer = every(refresh.bundle_seconds);
    let (t, b) = (Arc::clone(&trust), broker.clone());
    tokio::spawn(async move {
        bundle_timer.tick().await;
        loop {
            bundle_timer.tick().await;
            if let Err(e) = t.refresh_bundle(&b).await {
                tracing::warn!("trust bundle refresh failed, keeping the last one: {e:#}");
            }
        }
    });
    if mode == Mode::Offline {
        let wait = refresh.revocations_seconds;
        tokio::spawn(async move {
            loop {
                if let Err(e) = trust.refresh_revocations(&broker, wait).await {
                    tracing::warn!("revocation list refresh failed, keeping the last one: {e:#}");
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mooring_attestation::protocol::BundleDocument;

    use super::*;

    fn bundle(sequence: u64) -> TrustBundle {
        let document = BundleDocument { spiffe_sequence: Some(sequence), ..BundleDocument::default() };
        TrustBundle::from_document("test.mooring", &document).unwrap()
    }

    #[test]
    fn only_a_newer_bundle_replaces_the_one_held() {
        assert!(is_newer(&bundle(8), &bundle(7)));
        assert!(!is_newer(&bundle(7), &bundle(7)), "the same keys");
        assert!(!is_newer(&bundle(6), &bundle(7)), "an older bundle would bring back keys that left");
    }
}

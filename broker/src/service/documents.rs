//! What anyone may fetch: the trust bundle, the revocation list, the broker's health.

use mooring_attestation::protocol::{BundleDocument, Health, JwkSet, RevocationList};
use sha2::{Digest, Sha256};

use super::{internal, Broker};
use crate::refusal::Refusal;

/// Seconds after which relying services are told to fetch the bundle again.
const BUNDLE_REFRESH_HINT: u64 = 300;

impl Broker {
    /// `GET /v1/bundle`: the SPIFFE bundle of every key generation in use.
    pub(crate) fn bundle(&self) -> BundleDocument {
        self.issuer.bundle_document(self.now(), BUNDLE_REFRESH_HINT)
    }

    /// `GET /v1/bundle/jwks`: the JWT-SVID keys alone (RFC 7517 JWK Set).
    pub(crate) fn jwks(&self) -> JwkSet {
        self.issuer.jwks(self.now())
    }

    /// `GET /v1/revocations`: every revocation in force, versioned by the first 8 bytes of
    /// the SHA-256 of the revocations' JSON, so a waiting caller can tell a change.
    pub(crate) fn revocation_list(&self) -> Result<RevocationList, Refusal> {
        let revocations = self.store.revocations().map_err(|e| internal("revocations", e))?;
        let listed = serde_json::to_vec(&revocations).map_err(|e| internal("revocations", e))?;
        let version = hex::encode(Sha256::digest(&listed).get(..8).unwrap_or_default());
        Ok(RevocationList { generated_at: self.now(), version, revocations })
    }

    /// `GET /v1/health`.
    pub(crate) fn health(&self) -> Health {
        Health { status: "ok".into(), policy: self.policy().digest().to_owned() }
    }
}

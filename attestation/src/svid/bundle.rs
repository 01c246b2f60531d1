//! The trust bundle a relying service checks credentials against, parsed from the
//! broker's bundle document ([`crate::protocol::BundleDocument`]).

use super::SvidError;
use crate::protocol::{BundleDocument, JwkSet};
use crate::x509::bundle::parse_certificates;
use crate::x509::Certificate;

/// Most JWT keys a bundle may hold (a few key generations are in use at once).
const MAX_JWT_KEYS: usize = 64;

/// A parsed trust bundle: the CA certificates X.509-SVIDs chain to and the keys JWT-SVIDs
/// are signed with, of one trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: String,
    authorities: Vec<Certificate>,
    jwt_keys: Vec<(String, Vec<u8>)>,
}

impl TrustBundle {
    /// Parses the broker's bundle document.
    ///
    /// # Errors
    /// [`SvidError::BundleInvalid`] for an empty trust domain, unreadable or non-CA
    /// certificates, no certificate, or a JWT key that is not an identified P-256 key.
    pub fn from_document(document: &BundleDocument) -> Result<Self, SvidError> {
        Self::new(&document.trust_domain, document.x509_authorities.as_bytes(), &document.jwt_authorities)
    }

    /// Parses the parts of a bundle.
    ///
    /// # Errors
    /// As [`TrustBundle::from_document`].
    pub fn new(trust_domain: &str, x509_authorities_pem: &[u8], jwks: &JwkSet) -> Result<Self, SvidError> {
        let authorities = parse_certificates(x509_authorities_pem)
            .map_err(|e| SvidError::BundleInvalid(format!("X.509 authorities: {e}")))?;
        Self::from_authorities(trust_domain, authorities, jwks)
    }

    /// A bundle from CA certificates already parsed (the broker's own key generations; an
    /// empty list trusts no X.509-SVID).
    ///
    /// # Errors
    /// As [`TrustBundle::from_document`].
    pub fn from_authorities(
        trust_domain: &str,
        authorities: Vec<Certificate>,
        jwks: &JwkSet,
    ) -> Result<Self, SvidError> {
        let invalid = SvidError::BundleInvalid;
        if trust_domain.is_empty() || trust_domain.contains(['/', ':']) {
            return Err(invalid(format!("trust domain {trust_domain:?}")));
        }
        if let Some(leaf) = authorities.iter().find(|c| !c.is_ca()) {
            return Err(invalid(format!("{} is not a CA certificate", leaf.subject())));
        }
        if jwks.keys.len() > MAX_JWT_KEYS {
            return Err(invalid(format!("{} JWT keys; at most {MAX_JWT_KEYS}", jwks.keys.len())));
        }
        let mut jwt_keys = Vec::with_capacity(jwks.keys.len());
        for (i, jwk) in jwks.keys.iter().enumerate() {
            let kid = jwk.kid.clone().ok_or_else(|| invalid(format!("JWT key {i} has no kid")))?;
            let point =
                jwk.point().ok_or_else(|| invalid(format!("JWT key {kid:?} is not an EC P-256 JWK")))?;
            jwt_keys.push((kid, point));
        }
        Ok(Self { trust_domain: trust_domain.to_owned(), authorities, jwt_keys })
    }

    /// The SPIFFE trust domain.
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA certificates X.509-SVIDs are issued by (e.g. the roots of a TLS client
    /// certificate verifier).
    #[must_use]
    pub fn x509_authorities(&self) -> &[Certificate] {
        &self.authorities
    }

    /// The JWT verification key named `kid` (uncompressed SEC1 point).
    pub(super) fn jwt_key(&self, kid: &str) -> Option<&[u8]> {
        self.jwt_keys.iter().find(|(id, _)| id == kid).map(|(_, point)| point.as_slice())
    }
}

//! The trust bundle a relying service checks credentials against: the broker's SPIFFE
//! bundle ([`crate::protocol::BundleDocument`], SPIFFE Trust Domain and Bundle §4), read the
//! way go-spiffe's `spiffebundle.Parse` reads one: `x509-svid` keys give CA certificates
//! (exactly one in `x5c`), `jwt-svid` keys give JWT keys (by `kid`), keys of other uses are
//! for other SVID types and are left out (§4.2.2). Stricter where Mooring needs it: every
//! key says its use, every key is EC P-256 (the only kind the verifier checks) and an
//! `x509-svid` key is its certificate's key, key ids are unique, and the bundle carries its
//! sequence number.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::SvidError;
use crate::protocol::{BundleDocument, Jwk, JwkSet, JWT_SVID_USE, X509_SVID_USE};
use crate::x509::Certificate;

/// Most keys a bundle may hold (two per key generation; a few generations are in use at
/// once).
pub const MAX_BUNDLE_KEYS: usize = 64;

/// A parsed trust bundle: the CA certificates X.509-SVIDs chain to and the keys JWT-SVIDs
/// are signed with, of one trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: String,
    sequence: Option<u64>,
    refresh_hint: Option<u64>,
    authorities: Vec<Certificate>,
    jwt_keys: Vec<(String, Vec<u8>)>,
}

impl TrustBundle {
    /// Parses the SPIFFE bundle the broker serves for `trust_domain` (which the relying
    /// service knows from its configuration, SPIFFE Trust Domain and Bundle §5: the bundle
    /// does not name it).
    ///
    /// # Errors
    /// [`SvidError::BundleInvalid`], naming the key: more than [`MAX_BUNDLE_KEYS`] keys, no
    /// `spiffe_sequence`, a key without `use`, a key that is not EC P-256, an `x509-svid`
    /// key without exactly one certificate in `x5c` or whose certificate is not a CA or
    /// holds another key, and what [`TrustBundle::from_authorities`] refuses.
    pub fn from_document(trust_domain: &str, document: &BundleDocument) -> Result<Self, SvidError> {
        let invalid = SvidError::BundleInvalid;
        if document.keys.len() > MAX_BUNDLE_KEYS {
            return Err(invalid(format!("{} keys; at most {MAX_BUNDLE_KEYS}", document.keys.len())));
        }
        let sequence = document.spiffe_sequence.ok_or_else(|| {
            invalid("no spiffe_sequence: without it a relying service cannot tell the keys changed".into())
        })?;
        let mut authorities = Vec::new();
        let mut jwt_keys = JwkSet::default();
        for (index, key) in document.keys.iter().enumerate() {
            match key.use_.as_deref() {
                None => {
                    return Err(invalid(format!(
                        "key {index} has no use (\"{X509_SVID_USE}\" or \"{JWT_SVID_USE}\")"
                    )))
                }
                Some(X509_SVID_USE) => authorities.push(x509_authority(index, key)?),
                Some(JWT_SVID_USE) => jwt_keys.keys.push(key.clone()),
                // Another SVID type's key: ignored, as SPIFFE Trust Domain and Bundle §4.2.2
                // requires (nothing it could sign is accepted here).
                Some(_) => {}
            }
        }
        let mut bundle = Self::from_authorities(trust_domain, authorities, &jwt_keys)?;
        bundle.sequence = Some(sequence);
        bundle.refresh_hint = document.spiffe_refresh_hint;
        Ok(bundle)
    }

    /// A bundle from CA certificates already parsed (the broker's own key generations; an
    /// empty list trusts no X.509-SVID) and JWT keys.
    ///
    /// # Errors
    /// [`SvidError::BundleInvalid`] for an empty trust domain, a certificate that is not a
    /// CA, more than [`MAX_BUNDLE_KEYS`] JWT keys, or a JWT key without `kid`, with a `kid`
    /// another key has, or that is not EC P-256.
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
        if jwks.keys.len() > MAX_BUNDLE_KEYS {
            return Err(invalid(format!("{} JWT keys; at most {MAX_BUNDLE_KEYS}", jwks.keys.len())));
        }
        let mut jwt_keys: Vec<(String, Vec<u8>)> = Vec::with_capacity(jwks.keys.len());
        for (index, jwk) in jwks.keys.iter().enumerate() {
            let kid = jwk.kid.clone().ok_or_else(|| invalid(format!("JWT key {index} has no kid")))?;
            let point = p256_point(jwk).map_err(|e| invalid(format!("JWT key {kid:?}: {e}")))?;
            if jwt_keys.iter().any(|(known, _)| *known == kid) {
                return Err(invalid(format!("two JWT keys have kid {kid:?}")));
            }
            jwt_keys.push((kid, point));
        }
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            sequence: None,
            refresh_hint: None,
            authorities,
            jwt_keys,
        })
    }

    /// The SPIFFE trust domain.
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The bundle's `spiffe_sequence` (none for a bundle built from its parts).
    #[must_use]
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// The bundle's `spiffe_refresh_hint` (seconds), if it has one.
    #[must_use]
    pub fn refresh_hint(&self) -> Option<u64> {
        self.refresh_hint
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

/// The uncompressed SEC1 point of an EC P-256 JWK.
fn p256_point(jwk: &Jwk) -> Result<Vec<u8>, String> {
    if jwk.kty != "EC" {
        return Err(format!("key type {:?}; only EC P-256 keys are read", jwk.kty));
    }
    if jwk.crv != "P-256" {
        return Err(format!("curve {:?}; only P-256 keys are read", jwk.crv));
    }
    jwk.point().ok_or_else(|| "x and y are not two base64url 32-byte coordinates".to_owned())
}

/// The CA certificate of `x509-svid` key `index` (SPIFFE X509-SVID §6): exactly one
/// certificate in `x5c`, a CA, holding the key the JWK states.
fn x509_authority(index: usize, key: &Jwk) -> Result<Certificate, SvidError> {
    let invalid = |what: String| SvidError::BundleInvalid(format!("{X509_SVID_USE} key {index}: {what}"));
    let point = p256_point(key).map_err(invalid)?;
    let [encoded] = key.x5c.as_deref().unwrap_or_default() else {
        let count = key.x5c.as_ref().map_or(0, Vec::len);
        return Err(invalid(format!("x5c holds {count} certificates; it must hold its CA certificate")));
    };
    let der = STANDARD.decode(encoded).map_err(|e| invalid(format!("x5c is not base64: {e}")))?;
    let certificate = Certificate::from_der(&der).map_err(|e| invalid(format!("x5c: {e}")))?;
    if !certificate.is_ca() {
        return Err(invalid(format!("{} is not a CA certificate", certificate.subject())));
    }
    let certified = certificate.public_key().ok().and_then(|k| k.sec1_uncompressed());
    if certified.as_deref() != Some(point.as_slice()) {
        return Err(invalid(format!("the key is not the key of its certificate {}", certificate.subject())));
    }
    Ok(certificate)
}

//! What a relying service fetches from the broker: the trust bundle (`GET /v1/bundle`:
//! X.509 authorities as PEM and JWT keys as an RFC 7517 JWK Set) and the revocation list
//! (`GET /v1/revocations`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::SvidError;
use crate::x509::bundle::parse_certificates;
use crate::x509::Certificate;

/// Most JWT keys a bundle may hold (a few key generations are in use at once).
const MAX_JWT_KEYS: usize = 64;

/// `GET /v1/bundle` as the broker serves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleDocument {
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// X.509 CA certificates (PEM), one per key generation in use.
    pub x509_authorities: String,
    /// JWT-SVID verification keys.
    pub jwt_authorities: JwkSet,
    /// Seconds after which the broker suggests fetching the bundle again.
    #[serde(default)]
    pub refresh_hint: Option<u64>,
}

/// An EC P-256 JWK (RFC 7518 §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`.
    pub kty: String,
    /// Curve: `P-256`.
    pub crv: String,
    /// X coordinate, base64url.
    pub x: String,
    /// Y coordinate, base64url.
    pub y: String,
    /// Key id (the JWS header's `kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use (`jwt-svid` in a SPIFFE bundle).
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    /// From an uncompressed SEC1 P-256 point (`04 || x || y`).
    #[must_use]
    pub fn ec_p256(point: &[u8]) -> Self {
        let coords = point.get(1..).unwrap_or_default();
        let (x, y) = coords.split_at(coords.len() / 2);
        Self {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
            kid: None,
            use_: None,
        }
    }

    /// The uncompressed SEC1 point, for an EC P-256 key with 32-byte coordinates.
    #[must_use]
    pub fn point(&self) -> Option<Vec<u8>> {
        if self.kty != "EC" || self.crv != "P-256" {
            return None;
        }
        let x = URL_SAFE_NO_PAD.decode(&self.x).ok()?;
        let y = URL_SAFE_NO_PAD.decode(&self.y).ok()?;
        (x.len() == 32 && y.len() == 32).then(|| [&[0x04][..], &x, &y].concat())
    }
}

/// RFC 7517 JWK Set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

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

/// `GET /v1/revocations`: every revocation in force, and when the broker listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// The broker's time when it produced the list (Unix seconds).
    pub generated_at: i64,
    /// An opaque version of the list: ask `GET /v1/revocations?version=V&wait=S` to be
    /// answered as soon as the list is another.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The revocations.
    pub revocations: Vec<Revocation>,
}

/// One revocation in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What is revoked.
    pub target: RevocationTarget,
    /// When (Unix seconds).
    pub revoked_at: i64,
    /// The administrator's reason.
    pub reason: String,
    /// Why, as a code relying services answer with.
    #[serde(default)]
    pub code: RevocationCode,
}

/// Why a credential stopped being good before it expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevocationCode {
    /// An administrator revoked it.
    #[default]
    Revoked,
    /// The VM gave it up (it shut down).
    Retired,
    /// The VM attested from a newer boot: what it held in earlier boots is void.
    SupersededByReboot,
    /// Two machines share one TPM state (a cloned vTPM): neither keeps its credentials.
    CloneSuspected,
}

impl RevocationCode {
    /// The refusal code a verifier answers with.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Retired => "retired",
            Self::SupersededByReboot => "superseded_by_reboot",
            Self::CloneSuspected => "clone_suspected",
        }
    }
}

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum RevocationTarget {
    /// One credential, by serial (hex).
    Credential(String),
    /// Every credential of a VM, by SPIFFE ID.
    Vm(String),
}

impl RevocationList {
    /// The revocation naming this credential's serial or its VM, if any.
    #[must_use]
    pub fn find(&self, serial: &str, spiffe_id: &str) -> Option<&Revocation> {
        self.revocations.iter().find(|r| match &r.target {
            RevocationTarget::Credential(s) => s == serial,
            RevocationTarget::Vm(id) => id == spiffe_id,
        })
    }
}

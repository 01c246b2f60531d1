//! What a relying service fetches from the broker: the trust bundle document (`GET
//! /v1/bundle`) and the revocation list (`GET /v1/revocations`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::Code;

/// `use` of a SPIFFE bundle key that X.509-SVIDs chain to (SPIFFE X509-SVID §6.1).
pub const X509_SVID_USE: &str = "x509-svid";
/// `use` of a SPIFFE bundle key that signs JWT-SVIDs (SPIFFE JWT-SVID §6.1).
pub const JWT_SVID_USE: &str = "jwt-svid";

/// `GET /v1/bundle`: the trust domain's SPIFFE bundle (SPIFFE Trust Domain and Bundle §4),
/// an RFC 7517 JWK Set. The trust domain is not in it: a relying service names the trust
/// domain it fetches the bundle for in its own configuration (§5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleDocument {
    /// One `x509-svid` key per CA certificate (with `x5c`), one `jwt-svid` key per JWT
    /// signing key (with `kid`) (§4.1.3).
    pub keys: Vec<Jwk>,
    /// Moves up whenever the keys change (§4.1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_sequence: Option<u64>,
    /// Seconds after which the broker suggests fetching the bundle again (§4.1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_refresh_hint: Option<u64>,
}

/// A JSON Web Key (RFC 7517 §4) as Mooring writes them: EC P-256 (RFC 7518 §6.2). Members
/// of other key types are not kept; a key of another type reads with empty `crv`, `x`, `y`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`.
    pub kty: String,
    /// Curve: `P-256`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub crv: String,
    /// X coordinate, base64url.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub x: String,
    /// Y coordinate, base64url.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub y: String,
    /// Key id (the JWS header's `kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use (`x509-svid` or `jwt-svid` in a SPIFFE bundle, `sig` in the OIDC
    /// issuer's JWK Set).
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The algorithm the key signs with (RFC 7517 §4.4): `ES256` in the OIDC issuer's JWK
    /// Set; absent in a SPIFFE bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// The certificate of the key, standard base64 of its DER (RFC 7517 §4.7): an
    /// `x509-svid` key's CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
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
            alg: None,
            x5c: None,
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
    pub fn code(self) -> Code {
        match self {
            Self::Revoked => Code::Revoked,
            Self::Retired => Code::Retired,
            Self::SupersededByReboot => Code::SupersededByReboot,
            Self::CloneSuspected => Code::CloneSuspected,
        }
    }
}

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case", deny_unknown_fields)]
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

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok` while the broker serves.
    pub status: String,
    /// SHA-256 of the policy text in force (hex).
    pub policy: String,
}

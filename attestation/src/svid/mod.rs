//! Offline verification of Mooring credentials by a relying service: is this SPIFFE
//! X.509-SVID or JWT-SVID genuine, current, for this audience, not revoked, presented from
//! the address it is bound to, by the holder of its key K?
//!
//! Pure: bytes, the trust bundle and the revocation list the service fetched from the
//! broker (`GET /v1/bundle`, `GET /v1/revocations`), the caller's address and `now` in;
//! a [`VerifiedCredential`] or an [`SvidError`] naming the broker's reason code out.
//! The broker's `POST /v1/credentials/verify` answers the same question online, with the
//! same codes.

mod bundle;
mod exchanged;
mod jwt;
mod possession;
mod x509;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

use crate::crypto::PublicKey;
use crate::protocol::{Code, Revocation, RevocationCode, RevocationList};
use crate::tpm::alg::EccCurve;

pub use self::bundle::{TrustBundle, MAX_BUNDLE_KEYS};
pub use self::exchanged::ExchangedToken;
pub use self::possession::{
    request_digest, PossessionProof, MAX_PROOF_HEADER_BYTES, POSSESSION_HEADER, POSSESSION_SKEW_SECONDS,
};

/// Why a credential is not good for this caller. [`SvidError::code`] is the broker's
/// stable reason code for the same refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// Not a well-formed SVID (bad encoding, missing claims or names).
    #[error("{0}")]
    Malformed(String),
    /// Signed, but the signature does not verify (or an algorithm other than ES256).
    #[error("{0}")]
    BadSignature(String),
    /// Signed by a key or CA that is not in the trust bundle.
    #[error("{0}")]
    UnknownSigningKey(String),
    /// Outside its validity period.
    #[error("{0}")]
    Expired(String),
    /// A JWT-SVID issued for other audiences.
    #[error("{0}")]
    WrongAudience(String),
    /// On the revocation list.
    #[error("revoked: {0}")]
    Revoked(String),
    /// Retired by the VM it was issued to (it shut down).
    #[error("retired: {0}")]
    Retired(String),
    /// Issued in a boot the VM has since left (it attested from a newer one).
    #[error("superseded by a reboot: {0}")]
    SupersededByReboot(String),
    /// Issued to a TPM whose state another machine also runs.
    #[error("clone suspected: {0}")]
    CloneSuspected(String),
    /// Presented from an address other than the one the credential is bound to.
    #[error("presented from {peer}, but the credential is bound to {bound}")]
    AddressOutsideBinding {
        /// The address in the credential.
        bound: IpAddr,
        /// The caller's address.
        peer: IpAddr,
    },
    /// No proof that the caller holds K: a copied credential looks exactly like this.
    #[error("{0}")]
    NoProofOfPossession(String),
    /// A possession proof that does not hold (wrong key, audience, request or time).
    #[error("{0}")]
    ProofInvalid(String),
    /// The revocation list is too old to say a credential is not revoked.
    #[error("{0}")]
    RevocationListStale(String),
    /// The trust bundle itself is unusable.
    #[error("trust bundle: {0}")]
    BundleInvalid(String),
}

impl SvidError {
    /// The refusal of a credential that `revocation` names.
    #[must_use]
    pub fn revoked(revocation: &Revocation) -> Self {
        let reason = revocation.reason.clone();
        match revocation.code {
            RevocationCode::Retired => Self::Retired(reason),
            RevocationCode::SupersededByReboot => Self::SupersededByReboot(reason),
            RevocationCode::CloneSuspected => Self::CloneSuspected(reason),
            _ => Self::Revoked(reason),
        }
    }

    /// The reason code (`broker/openapi.json`, `ErrorCode`) for this refusal, the same the
    /// broker answers with.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Self::Malformed(_) => Code::CredentialMalformed,
            Self::BadSignature(_) => Code::BadSignature,
            Self::UnknownSigningKey(_) => Code::UnknownSigningKey,
            Self::Expired(_) => Code::Expired,
            Self::WrongAudience(_) => Code::WrongAudience,
            Self::Revoked(_) => Code::Revoked,
            Self::Retired(_) => Code::Retired,
            Self::SupersededByReboot(_) => Code::SupersededByReboot,
            Self::CloneSuspected(_) => Code::CloneSuspected,
            Self::AddressOutsideBinding { .. } => Code::AddressOutsideBinding,
            Self::NoProofOfPossession(_) => Code::NoProofOfPossession,
            Self::ProofInvalid(_) => Code::ProofInvalid,
            Self::RevocationListStale(_) => Code::RevocationListStale,
            Self::BundleInvalid(_) => Code::BundleInvalid,
        }
    }
}

/// The credential key K: an ECC P-256 public key (uncompressed SEC1 point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialKey {
    point: Vec<u8>,
}

impl CredentialKey {
    /// K from a public key: ECC P-256 only.
    ///
    /// # Errors
    /// A reason naming the key when it is not a usable P-256 key.
    pub fn from_public_key(key: &PublicKey) -> Result<Self, String> {
        match key {
            PublicKey::Ecc { curve: EccCurve::NistP256, .. } => key
                .sec1_uncompressed()
                .map(|point| Self { point })
                .ok_or_else(|| "credential key point unusable".to_owned()),
            other => Err(format!("credential key must be ECC P-256, got {}", other.describe())),
        }
    }

    /// Uncompressed SEC1 point `04 || x || y`.
    #[must_use]
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// Checks an ECDSA P-256 / SHA-256 signature (ASN.1 DER) by K over `message`.
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point).verify(message, signature).is_ok()
    }
}

/// The credential a caller presented.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// A JWT-SVID (compact JWS).
    Jwt(&'a str),
    /// The leaf of an X.509-SVID chain (DER), e.g. the client certificate of mutual TLS.
    X509(&'a [u8]),
}

/// How the caller proved it holds K.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// The TLS layer authenticated the caller with exactly the presented X.509-SVID.
    MutualTls,
    /// A signature by K over a possession statement for this request.
    Signature {
        /// The statement and its signature.
        proof: &'a PossessionProof,
        /// What the statement's `request` must be ([`request_digest`] of this request).
        request: &'a str,
    },
    /// A signature by K over a possession statement whose `request` is left to the relying
    /// service: the broker's verify API, to which `request` is opaque. Purpose, audience
    /// and time are checked.
    SignatureAnyRequest {
        /// The statement and its signature.
        proof: &'a PossessionProof,
    },
}

/// One presentation of a credential to a relying service.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    /// The credential.
    pub credential: Presented<'a>,
    /// The address the caller connected from.
    pub peer: IpAddr,
    /// The proof of possession of K, when the caller gave one.
    pub proof: Option<Proof<'a>>,
}

/// What a relying service trusts: the broker's bundle, its latest revocation list, its
/// own audience name, and how old that list may be.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    /// The trust bundle.
    pub bundle: &'a TrustBundle,
    /// The latest revocation list fetched.
    pub revocations: &'a RevocationList,
    /// Oldest acceptable revocation list (seconds since its `generated_at`).
    pub max_revocation_age: i64,
    /// This service's audience name (JWT-SVIDs must name it; so must possession statements).
    pub audience: &'a str,
}

/// A credential that passed every check, with what it says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCredential {
    spiffe_id: String,
    serial: String,
    bound_address: IpAddr,
    expires_at: i64,
    class: Option<String>,
    hardware_id: Option<String>,
}

impl VerifiedCredential {
    /// The SPIFFE ID.
    #[must_use]
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// The credential serial (hex), shared by a VM's X.509-SVID and JWT-SVID.
    #[must_use]
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The address the credential is bound to (the caller's address).
    #[must_use]
    pub fn bound_address(&self) -> IpAddr {
        self.bound_address
    }

    /// Expiry (Unix seconds).
    #[must_use]
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Policy class (JWT-SVIDs carry it; X.509-SVIDs do not).
    #[must_use]
    pub fn class(&self) -> Option<&str> {
        self.class.as_deref()
    }

    /// Hardware identity (EK hash or CHIP_ID; JWT-SVIDs only).
    #[must_use]
    pub fn hardware_id(&self) -> Option<&str> {
        self.hardware_id.as_deref()
    }
}

/// A credential whose signature (by a key or CA of the trust bundle), validity period and
/// names checked out: the first stage of [`Verifier::verify`]. The other checks are its
/// methods, so a verifier with its own revocation source (the broker, whose store is the
/// truth) runs them in the same order with its own checks in between.
#[derive(Debug, Clone)]
pub struct CheckedCredential {
    credential: VerifiedCredential,
    key: CredentialKey,
    /// JWT-SVIDs only.
    audiences: Option<Vec<String>>,
    /// An X.509-SVID (mutual TLS can prove its key).
    x509: bool,
}

impl CheckedCredential {
    /// Signature, validity and names of `credential` against `bundle`.
    ///
    /// # Errors
    /// [`SvidError::Malformed`], [`SvidError::BadSignature`], [`SvidError::UnknownSigningKey`]
    /// or [`SvidError::Expired`].
    pub fn check(credential: Presented<'_>, bundle: &TrustBundle, now: i64) -> Result<Self, SvidError> {
        match credential {
            Presented::Jwt(token) => jwt::verify(token, bundle, now),
            Presented::X509(leaf) => x509::verify(leaf, bundle, now),
        }
    }

    /// What the credential says (not yet checked for audience, revocation, address or
    /// possession).
    #[must_use]
    pub fn credential(&self) -> &VerifiedCredential {
        &self.credential
    }

    /// The audiences of a JWT-SVID; `None` for an X.509-SVID, which has none.
    #[must_use]
    pub fn audiences(&self) -> Option<&[String]> {
        self.audiences.as_deref()
    }

    /// A JWT-SVID must name `audience`; an X.509-SVID passes.
    ///
    /// # Errors
    /// [`SvidError::WrongAudience`].
    pub fn check_audience(&self, audience: &str) -> Result<(), SvidError> {
        match &self.audiences {
            Some(audiences) if !audiences.iter().any(|a| a == audience) => {
                Err(SvidError::WrongAudience(format!("credential is for {audiences:?}, not {audience:?}")))
            }
            _ => Ok(()),
        }
    }

    /// Presented from the address the credential is bound to.
    ///
    /// # Errors
    /// [`SvidError::AddressOutsideBinding`].
    pub fn check_binding(&self, peer: IpAddr) -> Result<(), SvidError> {
        let bound = self.credential.bound_address;
        if bound == peer {
            Ok(())
        } else {
            Err(SvidError::AddressOutsideBinding { bound, peer })
        }
    }

    /// The last check: the caller holds K. `audience` is what a possession statement must
    /// name.
    ///
    /// # Errors
    /// [`SvidError::NoProofOfPossession`] without a proof (or mutual TLS claimed for a
    /// JWT-SVID); [`SvidError::ProofInvalid`] for a proof that does not hold.
    pub fn check_possession(
        self,
        proof: Option<Proof<'_>>,
        audience: &str,
        now: i64,
    ) -> Result<VerifiedCredential, SvidError> {
        match proof {
            None => Err(SvidError::NoProofOfPossession(
                "no proof of possession of the credential key: a copied credential looks exactly like this"
                    .into(),
            )),
            Some(Proof::MutualTls) if self.x509 => Ok(self.credential),
            Some(Proof::MutualTls) => Err(SvidError::NoProofOfPossession(
                "mutual TLS proves possession only for an X.509-SVID; sign a possession statement".into(),
            )),
            Some(Proof::Signature { proof, request }) => {
                proof.verify(&self.key, audience, Some(request), now)?;
                Ok(self.credential)
            }
            Some(Proof::SignatureAnyRequest { proof }) => {
                proof.verify(&self.key, audience, None, now)?;
                Ok(self.credential)
            }
        }
    }
}

/// How far in the future a revocation list's `generated_at` may be (the verifier's and
/// the broker's clocks differ a little).
pub const REVOCATION_CLOCK_SKEW_SECONDS: i64 = 120;

impl Verifier<'_> {
    /// Every check, in the broker's order: signature and validity, audience, revocation,
    /// address binding, proof of possession.
    ///
    /// # Errors
    /// The first check that fails, as an [`SvidError`].
    pub fn verify(&self, presentation: &Presentation<'_>, now: i64) -> Result<VerifiedCredential, SvidError> {
        let checked = CheckedCredential::check(presentation.credential, self.bundle, now)?;
        checked.check_audience(self.audience)?;
        self.check_revocation(&checked.credential, now)?;
        checked.check_binding(presentation.peer)?;
        checked.check_possession(presentation.proof, self.audience, now)
    }

    fn check_revocation(&self, credential: &VerifiedCredential, now: i64) -> Result<(), SvidError> {
        let ahead = self.revocations.generated_at.saturating_sub(now);
        if ahead > REVOCATION_CLOCK_SKEW_SECONDS {
            // A list from the future would pass the age check for longer than it is fresh.
            return Err(SvidError::RevocationListStale(format!(
                "the revocation list is dated {ahead} s in the future; at most \
                 {REVOCATION_CLOCK_SKEW_SECONDS} s of clock skew is accepted"
            )));
        }
        let age = now.saturating_sub(self.revocations.generated_at);
        if age > self.max_revocation_age {
            return Err(SvidError::RevocationListStale(format!(
                "the revocation list is {age} s old; at most {} s is accepted",
                self.max_revocation_age
            )));
        }
        match self.revocations.find(&credential.serial, &credential.spiffe_id) {
            Some(revocation) => Err(SvidError::revoked(revocation)),
            None => Ok(()),
        }
    }
}

/// A SPIFFE ID in `trust_domain` (`spiffe://<trust_domain>/<path>`, non-empty path).
fn check_spiffe_id(id: &str, trust_domain: &str) -> Result<(), SvidError> {
    let in_domain = id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.strip_prefix(trust_domain))
        .and_then(|path| path.strip_prefix('/'))
        .is_some_and(|path| !path.is_empty());
    if in_domain {
        Ok(())
    } else {
        Err(SvidError::Malformed(format!("SPIFFE ID {id:?} is not in trust domain {trust_domain:?}")))
    }
}

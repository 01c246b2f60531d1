//! Tokens the broker exchanged a JWT-SVID for (RFC 8693; claims
//! [`crate::protocol::ExchangedClaims`]), signed with the same keys as JWT-SVIDs. The two
//! never pass for each other: an exchanged token has no `cnf` or `bound_address`, which a
//! JWT-SVID needs, and a JWT-SVID has no `iss` and has members an exchanged token may not.

use super::bundle::TrustBundle;
use super::jwt::{check_time, signed_claims};
use super::{check_spiffe_id, SvidError};
use crate::protocol::ExchangedClaims;

const WHAT: &str = "exchanged token";

/// An exchanged token whose signature, issuer, time, subject and audience checked out.
/// Whether the credential it was exchanged for is still good is the broker's to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangedToken {
    claims: ExchangedClaims,
}

impl ExchangedToken {
    /// Signature by a JWT key of `bundle`, issuer `issuer`, validity at `now`, a SPIFFE ID
    /// of the bundle's trust domain as subject, and `audience` as its audience.
    ///
    /// # Errors
    /// [`SvidError::Malformed`] (not an exchanged token, or another issuer's),
    /// [`SvidError::BadSignature`], [`SvidError::UnknownSigningKey`], [`SvidError::Expired`]
    /// or [`SvidError::WrongAudience`].
    pub fn check(
        token: &str,
        bundle: &TrustBundle,
        issuer: &str,
        audience: &str,
        now: i64,
    ) -> Result<Self, SvidError> {
        let claims: ExchangedClaims = serde_json::from_slice(&signed_claims(token, bundle, WHAT)?)
            .map_err(|e| SvidError::Malformed(format!("{WHAT}: claims: {e}")))?;
        if claims.iss != issuer {
            return Err(SvidError::Malformed(format!(
                "{WHAT} issued by {:?}, not by this broker's issuer {issuer:?}",
                claims.iss
            )));
        }
        check_time(claims.exp, claims.iat, now, WHAT)?;
        check_spiffe_id(&claims.sub, bundle.trust_domain())?;
        if claims.aud != audience {
            return Err(SvidError::WrongAudience(format!(
                "{WHAT} is for {:?}, not {audience:?}",
                claims.aud
            )));
        }
        Ok(Self { claims })
    }

    /// The VM's SPIFFE ID (`sub`).
    #[must_use]
    pub fn spiffe_id(&self) -> &str {
        &self.claims.sub
    }

    /// Serial of the credential it was exchanged for.
    #[must_use]
    pub fn svid_serial(&self) -> &str {
        &self.claims.svid_serial
    }

    /// The token's own id (`jti`).
    #[must_use]
    pub fn token_id(&self) -> &str {
        &self.claims.jti
    }

    /// The class that admitted the VM.
    #[must_use]
    pub fn class(&self) -> &str {
        &self.claims.class
    }

    /// Expiry (Unix seconds).
    #[must_use]
    pub fn expires_at(&self) -> i64 {
        self.claims.exp
    }

    /// The scopes granted (`scope`, space-separated; none when absent).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.claims.scope.iter().flat_map(|scope| scope.split(' ')).filter(|s| !s.is_empty())
    }
}

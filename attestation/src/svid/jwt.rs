//! JWT-SVIDs (SPIFFE JWT-SVID specification) as the broker issues them: compact JWS,
//! ES256 only, with the Mooring claims (`cnf`, `class`, `hardware_id`, `bound_address`).

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use super::bundle::TrustBundle;
use super::{check_spiffe_id, CheckedCredential, CredentialKey, SvidError, VerifiedCredential};
use crate::protocol::JwtSvidClaims;

/// Largest token accepted (a JWT-SVID is well under 2 KiB).
pub(super) const MAX_TOKEN_BYTES: usize = 8192;

/// How far in the future `iat` may lie (clock skew between broker and verifier).
const ISSUED_AT_SKEW_SECONDS: i64 = 120;

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Signature (by a bundle key), expiry and claims of a JWT-SVID.
pub(super) fn verify(token: &str, bundle: &TrustBundle, now: i64) -> Result<CheckedCredential, SvidError> {
    let malformed = |what: &str| SvidError::Malformed(format!("JWT-SVID: {what}"));
    let claims: JwtSvidClaims = serde_json::from_slice(&signed_claims(token, bundle, "JWT-SVID")?)
        .map_err(|e| malformed(&format!("claims: {e}")))?;
    check_time(claims.exp, claims.iat, now, "JWT-SVID")?;
    check_spiffe_id(&claims.sub, bundle.trust_domain())?;
    let point = claims.cnf.jwk.point().ok_or_else(|| malformed("cnf is not an EC P-256 JWK"))?;
    let audiences = claims.aud.into_vec();
    Ok(CheckedCredential {
        credential: VerifiedCredential {
            spiffe_id: claims.sub,
            serial: claims.jti,
            bound_address: claims.bound_address,
            expires_at: claims.exp,
            class: Some(claims.class),
            hardware_id: Some(claims.hardware_id),
        },
        key: CredentialKey { point },
        audiences: Some(audiences),
        x509: false,
    })
}

/// The claims bytes of `token`, a compact JWS signed ES256 by a JWT key of `bundle`, once
/// the signature over the bytes received holds. `what` names the token in reasons.
pub(super) fn signed_claims(token: &str, bundle: &TrustBundle, what: &str) -> Result<Vec<u8>, SvidError> {
    let malformed = |reason: &str| SvidError::Malformed(format!("{what}: {reason}"));
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("longer than 8 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not a compact JWS (three dot-separated parts)"));
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("header is not base64url JSON with alg"))?;
    if header.alg != "ES256" {
        return Err(SvidError::BadSignature(format!("{what} alg {:?}: only ES256 is accepted", header.alg)));
    }
    let kid = header.kid.ok_or_else(|| malformed("header has no kid"))?;
    let key = bundle.jwt_key(&kid).ok_or_else(|| {
        SvidError::UnknownSigningKey(format!("{what} key {kid:?} is not in the trust bundle"))
    })?;
    let signature =
        URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| malformed("signature is not base64url"))?;
    let signing_input = token.len().saturating_sub(signature_b64.len() + 1);
    let signing_input = token.get(..signing_input).unwrap_or_default();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| SvidError::BadSignature(format!("{what} signature does not verify")))?;
    URL_SAFE_NO_PAD.decode(claims_b64).map_err(|_| malformed("claims are not base64url"))
}

/// Not expired at `now`, and not issued later than the clock skew allows.
pub(super) fn check_time(exp: i64, iat: i64, now: i64, what: &str) -> Result<(), SvidError> {
    if exp <= now {
        return Err(SvidError::Expired(format!("{what} expired {} s ago", now.saturating_sub(exp))));
    }
    if iat > now.saturating_add(ISSUED_AT_SKEW_SECONDS) {
        return Err(SvidError::Expired(format!("{what} issued {} s in the future", iat.saturating_sub(now))));
    }
    Ok(())
}

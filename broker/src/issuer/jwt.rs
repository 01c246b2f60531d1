//! JWT-SVIDs (SPIFFE JWT-SVID specification): compact JWS, ES256 only.

use std::net::IpAddr;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::keys::Generation;
use crate::refusal::{Code, Refusal};

/// Largest token accepted (a JWT-SVID is well under 2 KiB).
const MAX_TOKEN_BYTES: usize = 8192;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

/// Claims of a Mooring JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtClaims {
    pub(crate) sub: String,
    pub(crate) aud: Vec<String>,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    /// Credential serial, shared with the X.509-SVID.
    pub(crate) jti: String,
    /// RFC 7800 confirmation: the key the holder must prove.
    pub(crate) cnf: Confirmation,
    pub(crate) class: String,
    pub(crate) hardware_id: String,
    pub(crate) bound_address: IpAddr,
}

/// RFC 7800 `cnf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Confirmation {
    pub(crate) jwk: Jwk,
}

/// An EC P-256 JWK (RFC 7518 §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Jwk {
    pub(crate) kty: String,
    pub(crate) crv: String,
    pub(crate) x: String,
    pub(crate) y: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kid: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub(crate) use_: Option<String>,
}

impl Jwk {
    /// From an uncompressed SEC1 point.
    pub(crate) fn ec_p256(point: &[u8]) -> Self {
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

    /// Back to an uncompressed SEC1 point.
    pub(crate) fn point(&self) -> Option<Vec<u8>> {
        if self.kty != "EC" || self.crv != "P-256" {
            return None;
        }
        let x = URL_SAFE_NO_PAD.decode(&self.x).ok()?;
        let y = URL_SAFE_NO_PAD.decode(&self.y).ok()?;
        (x.len() == 32 && y.len() == 32).then(|| [&[0x04][..], &x, &y].concat())
    }
}

/// RFC 7517 JWK Set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JwkSet {
    pub(crate) keys: Vec<Jwk>,
}

pub(super) fn sign(generation: &Generation, claims: &JwtClaims) -> anyhow::Result<String> {
    let header = Header { alg: "ES256".into(), kid: generation.kid.clone(), typ: "JWT".into() };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    );
    let signature = generation
        .jwt_key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| anyhow::anyhow!("JWT signing failed"))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
}

pub(super) fn verify(
    token: &str,
    key_for: impl Fn(&str) -> Option<Arc<Generation>>,
    now: i64,
) -> Result<JwtClaims, Refusal> {
    let malformed = |what: &str| Refusal::new(Code::CredentialMalformed, format!("JWT-SVID: {what}"));
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
        .ok_or_else(|| malformed("header is not base64url JSON with alg, kid, typ"))?;
    if header.alg != "ES256" {
        return Err(Refusal::new(
            Code::BadSignature,
            format!("JWT-SVID alg {:?}: only ES256 is accepted", header.alg),
        ));
    }
    let generation = key_for(&header.kid).ok_or_else(|| {
        Refusal::new(
            Code::UnknownSigningKey,
            format!("JWT-SVID key {:?} is not in the trust bundle", header.kid),
        )
    })?;
    let signature =
        URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| malformed("signature is not base64url"))?;
    let signed = token.len() - signature_b64.len() - 1;
    let signing_input = token.get(..signed).unwrap_or_default();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, generation.jwt_public())
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| Refusal::new(Code::BadSignature, "JWT-SVID signature does not verify"))?;
    let claims: JwtClaims = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("claims are not the expected JSON"))?;
    if claims.exp <= now {
        return Err(Refusal::new(Code::Expired, format!("JWT-SVID expired {} s ago", now - claims.exp)));
    }
    Ok(claims)
}

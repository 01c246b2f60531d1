//! JWT-SVIDs (SPIFFE JWT-SVID specification): compact JWS, ES256 only. Verified by
//! [`mooring_attestation::svid`].

use std::net::IpAddr;

use aws_lc_rs::rand::SystemRandom;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use mooring_attestation::svid::Jwk;
use serde::Serialize;

use super::keys::Generation;

#[derive(Debug, Serialize)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

/// Claims of a Mooring JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Confirmation {
    pub(crate) jwk: Jwk,
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

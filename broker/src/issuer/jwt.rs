//! The broker's JWTs: JWT-SVIDs (SPIFFE JWT-SVID specification) and exchanged tokens
//! (RFC 8693), compact JWS, ES256 only. Verified by [`mooring_attestation::svid`].

use aws_lc_rs::rand::SystemRandom;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;

use super::keys::Generation;

#[derive(Debug, Serialize)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

pub(super) fn sign(generation: &Generation, claims: &impl Serialize) -> anyhow::Result<String> {
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

//! What relying services and VMs ask about credentials once issued: verification,
//! retirement, proof of possession, and the error body of every refusal.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{b64, Code};

/// `POST /v1/credentials/verify`: a relying service asks whether a presented
/// credential is good for this caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The credential presented.
    pub credential: PresentedCredential,
    /// The address the relying service saw the caller connect from.
    pub peer_address: IpAddr,
    /// The relying service's own audience name (required for JWT-SVIDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// How the caller proved possession of K.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Possession>,
    /// The request a possession statement must have been made for (its `request` field,
    /// e.g. [`crate::svid::request_digest`] of the request being served). Without it the
    /// broker leaves `request` to the relying service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// A credential as a relying service received it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PresentedCredential {
    /// A JWT-SVID (compact JWS).
    Jwt {
        /// The token.
        token: String,
    },
    /// An X.509-SVID chain (PEM, leaf first).
    X509 {
        /// The chain.
        chain: String,
    },
    /// A token the broker exchanged a JWT-SVID for (`POST /v1/credentials/exchange`): a
    /// bearer token, so neither address nor proof of possession is checked, only what the
    /// broker knows (signature, issuer, audience, expiry, and that the credential it was
    /// exchanged for is not revoked and its hardware not blocked).
    Exchanged {
        /// The token.
        token: String,
    },
}

/// Proof that the caller holds K.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Possession {
    /// The relying service terminated mutual TLS with exactly this X.509-SVID as the
    /// client certificate (only meaningful for X.509 credentials). A struct variant, so
    /// that `deny_unknown_fields` holds for it too (serde does not check the members of a
    /// unit variant of an internally tagged enum).
    MutualTls {},
    /// A signature with K over a [`PossessionStatement`] (JSON bytes as signed).
    Signature {
        /// The statement, exactly as signed.
        #[serde(with = "b64")]
        statement: Vec<u8>,
        /// ECDSA (ASN.1 DER) or RSA PKCS#1 v1.5 signature with SHA-256.
        #[serde(with = "b64")]
        signature: Vec<u8>,
    },
}

/// `POST /v1/credentials/retire`: a VM gives up its credential (at shutdown), proving it
/// holds K with a [`PossessionStatement`] for [`RETIRE_AUDIENCE`] whose `request` is the
/// credential's serial. Sent from the address the credential is bound to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    /// The JWT-SVID of the credential to retire (its X.509-SVID shares the serial).
    pub jwt_svid: String,
    /// The statement, exactly as signed.
    #[serde(with = "b64")]
    pub statement: Vec<u8>,
    /// K's signature over it (ECDSA ASN.1 DER, SHA-256).
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// The audience of a retirement's possession statement.
pub const RETIRE_AUDIENCE: &str = "mooring-broker/retire";

/// Answer to [`RetireRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireResponse {
    /// The serial now retired (both SVIDs of the credential).
    pub serial: String,
}

/// What a caller signs with K to prove possession for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PossessionStatement {
    /// Always [`PossessionStatement::PURPOSE`].
    pub purpose: String,
    /// The relying service the proof is for.
    pub audience: String,
    /// Unix time the proof was made (the broker allows a small skew).
    pub issued_at: i64,
    /// The relying service's request digest or nonce (hex); opaque to the broker.
    pub request: String,
}

impl PossessionStatement {
    /// The fixed purpose string, so a signature made for something else never passes.
    pub const PURPOSE: &'static str = "mooring-possession-v1";
}

/// Answer to [`VerifyRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyResponse {
    /// Whether the credential is good for this caller.
    pub valid: bool,
    /// Stable reason code when invalid (see the OpenAPI document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// One-line reason when invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The credential's claims when valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<CredentialClaims>,
}

/// What a verified credential says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialClaims {
    /// SPIFFE ID.
    pub spiffe_id: String,
    /// Policy class.
    pub class: String,
    /// Credential serial (hex).
    pub serial: String,
    /// Hardware identity: SHA-256 of the EK public key, or the SEV-SNP CHIP_ID (hex).
    pub hardware_id: String,
    /// Address the credential is bound to.
    pub bound_address: IpAddr,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
}

/// Error body of every 4xx/5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Stable machine-readable code (snake_case).
    pub code: Code,
    /// One line a person can act on.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_mutual_tls_proof_has_no_members_but_its_type() {
        let proof: Possession = serde_json::from_str(r#"{"type":"mutual_tls"}"#).unwrap();
        assert_eq!(serde_json::to_string(&proof).unwrap(), r#"{"type":"mutual_tls"}"#);
        assert!(serde_json::from_str::<Possession>(r#"{"type":"mutual_tls","x":1}"#).is_err());
    }
}

//! The claims of a Mooring JWT-SVID (SPIFFE JWT-SVID, with RFC 7800 `cnf` and the
//! broker's binding claims): signed by the broker, read by every verifier.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Jwk;

/// `aud`: one string or an array (RFC 7519 §4.1.3); the broker writes an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// The audiences, in order.
    #[must_use]
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(audience) => vec![audience],
            Self::Many(audiences) => audiences,
        }
    }
}

/// RFC 7800 `cnf`: the key the holder must prove it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The credential key K.
    pub jwk: Jwk,
}

/// The claims set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSvidClaims {
    /// The SPIFFE ID.
    pub sub: String,
    /// The relying services it is for (the class's audiences).
    pub aud: Audience,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// The credential serial, shared with the X.509-SVID.
    pub jti: String,
    /// The key the holder proves.
    pub cnf: Confirmation,
    /// The policy class that admitted the VM.
    pub class: String,
    /// The hardware identity (hex).
    pub hardware_id: String,
    /// The address the credential is bound to.
    pub bound_address: IpAddr,
}

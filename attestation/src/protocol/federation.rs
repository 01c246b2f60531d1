//! Federation: the broker as an OpenID Connect issuer that cloud IAM and other relying
//! parties trust (its discovery document and JWK Set), and the token exchange (RFC 8693)
//! by which a VM trades its bound JWT-SVID for a short bearer token for one downstream
//! audience its class allows.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::b64;

/// Where an OIDC relying party finds the discovery document, under the issuer URL (OpenID
/// Connect Discovery 1.0 §4).
pub const OIDC_DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where the discovery document says the JWK Set is, under the issuer URL.
pub const OIDC_JWKS_PATH: &str = "/.well-known/jwks.json";
/// `use` of a key in the issuer's JWK Set: signatures (RFC 7517 §4.2).
pub const OIDC_SIG_USE: &str = "sig";
/// The one signature algorithm of exchanged tokens (RFC 7518 §3.4).
pub const EXCHANGED_TOKEN_ALG: &str = "ES256";

/// `grant_type` of a token exchange (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `subject_token_type`, `requested_token_type` and `issued_token_type`: a JWT (RFC 8693
/// §3).
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `token_type` of the answer: the token is an assertion for the downstream audience's own
/// token service, not an OAuth access token of the broker (RFC 8693 §2.2.1).
pub const NOT_APPLICABLE_TOKEN_TYPE: &str = "N_A";
/// The audience of a token exchange's possession statement.
pub const EXCHANGE_AUDIENCE: &str = "mooring-broker/token-exchange";

/// Longest audience (AWS takes client IDs up to 255 characters, GCP audiences up to 256).
pub const MAX_AUDIENCE_BYTES: usize = 255;
/// Longest `scope` of a request.
pub const MAX_SCOPE_BYTES: usize = 1024;

/// `POST /v1/credentials/exchange`: RFC 8693's request parameters (as a JSON object, like
/// every Mooring request), with a possession statement by K for [`EXCHANGE_AUDIENCE`] whose
/// `request` is [`exchange_request`] of the audience and scope asked for and a nonce. Sent
/// from the address the JWT-SVID is bound to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// [`TOKEN_EXCHANGE_GRANT`].
    pub grant_type: String,
    /// The VM's JWT-SVID.
    pub subject_token: String,
    /// [`JWT_TOKEN_TYPE`].
    pub subject_token_type: String,
    /// The downstream audience: one of the audiences the VM's class federates with.
    pub audience: String,
    /// Space-separated scopes the token should carry, each granted to the class for this
    /// audience; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// [`JWT_TOKEN_TYPE`] when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_token_type: Option<String>,
    /// New for each exchange ([`check_nonce`]): two exchanges for the same audience in the
    /// same second make two statements, each good once.
    pub nonce: String,
    /// The possession statement, exactly as signed.
    #[serde(with = "b64")]
    pub statement: Vec<u8>,
    /// K's signature over it (ECDSA ASN.1 DER, SHA-256).
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// Answer to [`ExchangeRequest`] (RFC 8693 §2.2.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeResponse {
    /// The exchanged token (compact JWS, [`EXCHANGED_TOKEN_ALG`]).
    pub access_token: String,
    /// [`JWT_TOKEN_TYPE`].
    pub issued_token_type: String,
    /// [`NOT_APPLICABLE_TOKEN_TYPE`].
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The scopes it carries, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The `request` of a token exchange's possession statement: hex
/// `SHA-256(audience || 0x0a || scope || 0x0a || nonce)` (an absent scope is empty), so a
/// statement made for one audience and scope is refused for another.
#[must_use]
pub fn exchange_request(audience: &str, scope: Option<&str>, nonce: &str) -> String {
    let digest = Sha256::new()
        .chain_update(audience.as_bytes())
        .chain_update(b"\n")
        .chain_update(scope.unwrap_or_default().as_bytes())
        .chain_update(b"\n")
        .chain_update(nonce.as_bytes())
        .finalize();
    hex::encode(digest)
}

/// A nonce of an exchange: 16 to 64 lowercase hex digits (at least 64 random bits).
///
/// # Errors
/// A reason naming what is wrong.
pub fn check_nonce(nonce: &str) -> Result<(), String> {
    if !(16..=64).contains(&nonce.len())
        || !nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("nonce: 16 to 64 lowercase hex digits, new for each exchange".into());
    }
    Ok(())
}

/// The claims of an exchanged token: what OIDC relying parties check (`iss`, `sub`, `aud`,
/// `exp`, `iat`), the token's own id, and the link to the credential it was exchanged for.
/// It names no key and no address: it is a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangedClaims {
    /// The broker's issuer URL (`[federation] issuer`).
    pub iss: String,
    /// The VM's SPIFFE ID.
    pub sub: String,
    /// The one downstream audience.
    pub aud: String,
    /// Expiry (Unix seconds): the class's federation TTL, never after the JWT-SVID's.
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// This token's id (random, hex), recorded in the audit log.
    pub jti: String,
    /// The policy class that admitted the VM.
    pub class: String,
    /// Serial of the credential it was exchanged for: revoking that revokes this.
    pub svid_serial: String,
    /// The scopes granted, space-separated (RFC 8693 §4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The issuer's discovery document (OpenID Connect Discovery 1.0 §3), with what a relying
/// party that only validates tokens reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcDiscovery {
    /// The issuer URL, exactly as in the tokens' `iss`.
    pub issuer: String,
    /// The JWK Set of the issuer's signing keys.
    pub jwks_uri: String,
    /// `["id_token"]`: the tokens are ID-token-shaped JWTs.
    pub response_types_supported: Vec<String>,
    /// `["public"]`: `sub` is the same for every relying party.
    pub subject_types_supported: Vec<String>,
    /// `["ES256"]`.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// The claims exchanged tokens carry.
    pub claims_supported: Vec<String>,
}

/// An audience a class may federate with, or a VM may ask for: 1 to
/// [`MAX_AUDIENCE_BYTES`] visible ASCII characters (no spaces).
///
/// # Errors
/// A reason naming what is wrong (not the value: it may be anything a client sent).
pub fn check_audience(audience: &str) -> Result<(), String> {
    if audience.is_empty() || audience.len() > MAX_AUDIENCE_BYTES {
        return Err(format!("an audience holds 1 to {MAX_AUDIENCE_BYTES} characters"));
    }
    if !audience.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an audience is visible ASCII without spaces".into());
    }
    Ok(())
}

/// One scope token (RFC 6749 §3.3: `%x21 / %x23-5B / %x5D-7E`).
///
/// # Errors
/// A reason naming what is wrong.
pub fn check_scope_token(token: &str) -> Result<(), String> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
        return Err("a scope is visible ASCII without spaces, '\"' or '\\' (RFC 6749 §3.3)".into());
    }
    Ok(())
}

/// The scopes of a request's `scope`: tokens separated by single spaces, each
/// [`check_scope_token`], at most [`MAX_SCOPE_BYTES`] in all; a scope named twice counts
/// once (a scope list is a set, RFC 6749 §3.3).
///
/// # Errors
/// A reason naming what is wrong.
pub fn parse_scope(scope: &str) -> Result<Vec<&str>, String> {
    if scope.len() > MAX_SCOPE_BYTES {
        return Err(format!("scope is longer than {MAX_SCOPE_BYTES} bytes"));
    }
    let mut tokens: Vec<&str> = Vec::new();
    for token in scope.split(' ') {
        check_scope_token(token).map_err(|e| format!("scope: {e}; tokens are separated by single spaces"))?;
        if !tokens.contains(&token) {
            tokens.push(token);
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_exchange_request_commits_to_audience_scope_and_nonce() {
        const NONCE: &str = "00112233445566778899aabbccddeeff";
        let base = exchange_request("sts.amazonaws.com", None, NONCE);
        assert_eq!(base.len(), 64);
        assert_eq!(base, exchange_request("sts.amazonaws.com", Some(""), NONCE));
        assert_ne!(base, exchange_request("vault", None, NONCE));
        assert_ne!(base, exchange_request("sts.amazonaws.com", Some("read"), NONCE));
        assert_ne!(base, exchange_request("sts.amazonaws.com", None, "ffeeddccbbaa99887766554433221100"));
        // The separators keep the parts apart.
        assert_ne!(exchange_request("a", Some("bc"), NONCE), exchange_request("ab", Some("c"), NONCE));
        assert_ne!(exchange_request("a", Some("b"), "cd"), exchange_request("a", Some("bc"), "d"));

        check_nonce(NONCE).unwrap();
        check_nonce(&"a".repeat(64)).unwrap();
        assert!(check_nonce(&"a".repeat(15)).is_err());
        assert!(check_nonce(&"a".repeat(65)).is_err());
        assert!(check_nonce("00112233445566778899AABBCCDDEEFF").is_err(), "lowercase");
        assert!(check_nonce("00112233445566778899aabbccddeegg").is_err());
    }

    #[test]
    fn audiences_and_scopes_are_bounded_visible_ascii() {
        check_audience("api://AzureADTokenExchange").unwrap();
        check_audience(&"a".repeat(MAX_AUDIENCE_BYTES)).unwrap();
        assert!(check_audience("").is_err());
        assert!(check_audience(&"a".repeat(MAX_AUDIENCE_BYTES + 1)).is_err());
        assert!(check_audience("two words").is_err());
        assert!(check_audience("line\nbreak").is_err());
        assert!(check_audience("caf\u{e9}").is_err());

        assert_eq!(parse_scope("read write").unwrap(), ["read", "write"]);
        assert!(parse_scope("read  write").is_err(), "double space");
        assert!(parse_scope(" read").is_err(), "leading space");
        assert_eq!(parse_scope("read write read").unwrap(), ["read", "write"], "a set");
        assert!(parse_scope("").is_err());
        assert!(parse_scope("a\"b").is_err());
        assert!(parse_scope(&"a".repeat(MAX_SCOPE_BYTES + 1)).is_err());
    }

    #[test]
    fn an_exchanged_token_has_no_member_a_jwt_svid_needs() {
        let claims = ExchangedClaims {
            iss: "https://id.example.org".into(),
            sub: "spiffe://example.org/vm/web/ab".into(),
            aud: "sts.amazonaws.com".into(),
            exp: 2,
            iat: 1,
            jti: "0a".into(),
            class: "web".into(),
            svid_serial: "0b".into(),
            scope: None,
        };
        let json = serde_json::to_value(&claims).unwrap();
        // A JWT-SVID verifier needs `cnf` and `bound_address`: it refuses this as malformed.
        assert!(serde_json::from_value::<super::super::JwtSvidClaims>(json).is_err());
    }
}

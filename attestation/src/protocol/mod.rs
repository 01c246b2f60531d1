//! Broker API v1: the JSON messages a VM client and a relying service exchange with the
//! broker, and the digests that bind evidence to a challenge. One definition for both
//! sides; `broker/openapi.json` documents the same shapes.
//!
//! Binary fields are standard base64 (RFC 4648 §4, with padding); digests and PCR values
//! are lowercase hex.

mod admin;
mod attest;
mod code;
mod credentials;
mod documents;
mod federation;
mod jwt;

use sha2::{Digest, Sha256, Sha512};

pub use self::admin::{
    AuditVerification, Decision, DryRunReport, DryRunRequest, DryRunResult, HardwareId, IdentityChange,
    IdentityStatus, PolicyInForce, RevocationRequest,
};
pub use self::attest::{
    AzureBeginRequest, AzureChallenge, AzureFinishRequest, IssuedCredentials, RecordedEvidence,
    RecordedExchange, Sealed, SealedSecret, SnpBeginRequest, SnpChallenge, SnpFinishRequest, TpmBeginRequest,
    TpmChallenge, TpmFinishRequest,
};
pub use self::code::Code;
pub use self::credentials::{
    CredentialClaims, ErrorBody, Possession, PossessionStatement, PresentedCredential, RetireRequest,
    RetireResponse, VerifyRequest, VerifyResponse, RETIRE_AUDIENCE,
};
pub use self::documents::{
    BundleDocument, Health, Jwk, JwkSet, Revocation, RevocationCode, RevocationList, RevocationTarget,
    JWT_SVID_USE, X509_SVID_USE,
};
pub use self::federation::{
    check_audience, check_nonce, check_scope_token, exchange_request, parse_scope, ExchangeRequest,
    ExchangeResponse, ExchangedClaims, OidcDiscovery, EXCHANGED_TOKEN_ALG, EXCHANGE_AUDIENCE, JWT_TOKEN_TYPE,
    MAX_AUDIENCE_BYTES, MAX_SCOPE_BYTES, NOT_APPLICABLE_TOKEN_TYPE, OIDC_DISCOVERY_PATH, OIDC_JWKS_PATH,
    OIDC_SIG_USE, TOKEN_EXCHANGE_GRANT,
};
pub use self::jwt::{Audience, Confirmation, JwtSvidClaims};

/// Path prefix of every API route.
pub const API_PREFIX: &str = "/v1";

/// Qualifying data (`extraData`) the broker requires in a TPM quote:
/// `SHA-256(nonce || SHA-256(K))`, where `K` is the credential key's `TPM2B_PUBLIC` as sent.
/// Binds the quote both to this challenge and to the key the credential is issued for.
#[must_use]
pub fn tpm_qualifying_data(nonce: &[u8], key_public: &[u8]) -> Vec<u8> {
    let key_digest = Sha256::digest(key_public);
    Sha256::new().chain_update(nonce).chain_update(key_digest).finalize().to_vec()
}

/// `REPORT_DATA` the broker requires in an SEV-SNP report:
/// `SHA-512(nonce || SHA-256(K) || SHA-256(S))`, where `K` is the credential key's
/// SubjectPublicKeyInfo (DER) and `S` the raw X25519 public key secrets are sealed to.
#[must_use]
pub fn snp_report_data(nonce: &[u8], key_spki: &[u8], sealing_key: &[u8]) -> [u8; 64] {
    let digest = Sha512::new()
        .chain_update(nonce)
        .chain_update(Sha256::digest(key_spki))
        .chain_update(Sha256::digest(sealing_key))
        .finalize();
    digest.into()
}

/// HPKE `info` of every secret the broker seals to an SEV-SNP VM.
pub const HPKE_SECRET_INFO: &[u8] = b"mooring sealed secret v1";

/// HPKE `aad` of a sealed secret: `name || 0x00 || spiffe_id`, so a box opens only as
/// the secret it was released as, to the VM it was released to.
#[must_use]
pub fn hpke_secret_aad(name: &str, spiffe_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(name.len() + 1 + spiffe_id.len());
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(spiffe_id.as_bytes());
    aad
}

/// Standard base64 for `Vec<u8>` fields.
pub mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as base64.
    ///
    /// # Errors
    /// Never, beyond the serializer's own.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Deserializes base64 into bytes.
    ///
    /// # Errors
    /// When the string is not valid padded standard base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// Standard base64 for `Option<Vec<u8>>` fields.
pub mod b64_option {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes optional bytes as base64 or null.
    ///
    /// # Errors
    /// Never, beyond the serializer's own.
    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::b64::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    /// Deserializes optional base64.
    ///
    /// # Errors
    /// When present and not valid base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::b64")] Vec<u8>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(bytes)| bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_digests_commit_to_every_input() {
        let base = tpm_qualifying_data(b"nonce", b"key");
        assert_eq!(base.len(), 32);
        assert_ne!(base, tpm_qualifying_data(b"nonce2", b"key"));
        assert_ne!(base, tpm_qualifying_data(b"nonce", b"key2"));
        let snp = snp_report_data(b"n", b"k", b"s");
        assert_ne!(snp, snp_report_data(b"n", b"k", b"t"));
        assert_ne!(snp, snp_report_data(b"n", b"j", b"s"));
        assert_ne!(snp, snp_report_data(b"m", b"k", b"s"));
    }

    #[test]
    fn malformed_base64_is_refused_with_a_reason() {
        let err = serde_json::from_str::<SnpChallenge>(
            r#"{"challenge_id":"x","nonce":"not base64!","expires_at":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid base64"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<SnpChallenge>(
            r#"{"challenge_id":"x","nonce":"","expires_at":1,"extra":true}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}

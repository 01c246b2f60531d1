//! Broker API v1: the JSON messages a VM client and a relying service exchange with the
//! broker, and the digests that bind evidence to a challenge. One definition for both
//! sides; `broker/openapi.yaml` documents the same shapes.
//!
//! Binary fields are standard base64 (RFC 4648 §4, with padding); digests and PCR values
//! are lowercase hex.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

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

/// `POST /v1/tpm/begin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmBeginRequest {
    /// The EK's `TPM2B_PUBLIC`, recreated from its standard template.
    #[serde(with = "b64")]
    pub ek_public: Vec<u8>,
    /// The EK certificate (DER, as read from NV). May be absent only for an enrolled EK.
    #[serde(default, with = "b64_option", skip_serializing_if = "Option::is_none")]
    pub ek_certificate: Option<Vec<u8>>,
    /// The AK's `TPM2B_PUBLIC`.
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
    /// The credential key K's `TPM2B_PUBLIC` (a non-exportable signing key in the TPM).
    #[serde(with = "b64")]
    pub key_public: Vec<u8>,
}

/// Answer to [`TpmBeginRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmChallenge {
    /// Identifies the challenge at `finish`.
    pub challenge_id: String,
    /// Fresh random nonce; the quote's qualifying data is [`tpm_qualifying_data`] of it.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// `TPM2B_ID_OBJECT` from MakeCredential(EK, AK name, secret).
    #[serde(with = "b64")]
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` for ActivateCredential.
    #[serde(with = "b64")]
    pub encrypted_secret: Vec<u8>,
    /// PCRs to quote, bank name to indices.
    pub pcr_selection: BTreeMap<String, Vec<u8>>,
    /// Unix time (seconds) after which `finish` is refused.
    pub expires_at: i64,
}

/// `POST /v1/tpm/finish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmFinishRequest {
    /// From [`TpmChallenge::challenge_id`].
    pub challenge_id: String,
    /// The secret ActivateCredential recovered.
    #[serde(with = "b64")]
    pub activated_secret: Vec<u8>,
    /// `TPMS_ATTEST` of the quote, as the TPM returned it.
    #[serde(with = "b64")]
    pub quote: Vec<u8>,
    /// `TPMT_SIGNATURE` over `quote`.
    #[serde(with = "b64")]
    pub quote_signature: Vec<u8>,
    /// The quoted PCR values: bank name to index to hex value.
    pub pcrs: BTreeMap<String, BTreeMap<String, String>>,
    /// The measured-boot event log (`binary_bios_measurements`), when the VM has one.
    #[serde(default, with = "b64_option", skip_serializing_if = "Option::is_none")]
    pub event_log: Option<Vec<u8>>,
    /// `TPMS_ATTEST` of TPM2_Certify(K) by the AK. Its qualifying data is not checked:
    /// K is fixedTPM, so proof that it was ever in this TPM stays true, and K is bound to
    /// this challenge by the quote's qualifying data.
    #[serde(with = "b64")]
    pub certify: Vec<u8>,
    /// `TPMT_SIGNATURE` over `certify`.
    #[serde(with = "b64")]
    pub certify_signature: Vec<u8>,
}

/// Answer to `POST /v1/snp/begin` (an empty JSON object as the request).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpChallenge {
    /// Identifies the challenge at `finish`.
    pub challenge_id: String,
    /// Fresh random nonce for [`snp_report_data`].
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// Unix time (seconds) after which `finish` is refused.
    pub expires_at: i64,
}

/// `POST /v1/snp/finish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpFinishRequest {
    /// From [`SnpChallenge::challenge_id`].
    pub challenge_id: String,
    /// The raw 1184-byte `ATTESTATION_REPORT`.
    #[serde(with = "b64")]
    pub report: Vec<u8>,
    /// The extended report's certificate table, when the host provides one.
    #[serde(default, with = "b64_option", skip_serializing_if = "Option::is_none")]
    pub certificate_table: Option<Vec<u8>>,
    /// Credential key K: SubjectPublicKeyInfo (DER) of a P-256 key in guest memory.
    #[serde(with = "b64")]
    pub key_spki: Vec<u8>,
    /// Raw X25519 public key that releasable secrets are sealed to (HPKE).
    #[serde(with = "b64")]
    pub sealing_key: Vec<u8>,
}

/// Answer to a successful `finish`: the VM's credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedCredentials {
    /// `spiffe://<trust-domain>/vm/<class>/<id>`.
    pub spiffe_id: String,
    /// Policy class that admitted the VM.
    pub class: String,
    /// X.509-SVID for K (PEM, leaf first, then the issuing CA).
    pub x509_svid: String,
    /// Serial of the X.509-SVID (hex).
    pub x509_serial: String,
    /// JWT-SVID (compact JWS, ES256).
    pub jwt_svid: String,
    /// Trust bundle: the X.509 CA certificates (PEM).
    pub x509_bundle: String,
    /// Expiry of both credentials (Unix seconds).
    pub expires_at: i64,
    /// When the client should attest again (Unix seconds): half of the lifetime.
    pub renew_after: i64,
    /// The address the credentials are bound to.
    pub bound_address: IpAddr,
    /// Releasable secrets, sealed to this VM.
    #[serde(default)]
    pub secrets: Vec<SealedSecret>,
}

/// A secret released to a VM, readable only by that VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// Name from the policy.
    pub name: String,
    /// The sealed form.
    pub sealed: Sealed,
}

/// How a secret is sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sealed {
    /// TPM2_Import blob to the EK; unseals under a PolicyPCR session on the quoted PCRs.
    TpmImport {
        /// Sealed object's `TPM2B_PUBLIC`.
        #[serde(with = "b64")]
        public: Vec<u8>,
        /// `TPM2B_PRIVATE` duplicate (outer wrapper to the EK).
        #[serde(with = "b64")]
        duplicate: Vec<u8>,
        /// `TPM2B_ENCRYPTED_SECRET` seed.
        #[serde(with = "b64")]
        encrypted_seed: Vec<u8>,
        /// PCRs the unseal policy covers: bank name to indices.
        pcr_selection: BTreeMap<String, Vec<u8>>,
    },
    /// HPKE (RFC 9180) to the sealing key committed in `REPORT_DATA`.
    Hpke {
        /// Encapsulated key.
        #[serde(with = "b64")]
        enc: Vec<u8>,
        /// AEAD ciphertext.
        #[serde(with = "b64")]
        ciphertext: Vec<u8>,
    },
}

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
}

/// Proof that the caller holds K.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Possession {
    /// The relying service terminated mutual TLS with exactly this X.509-SVID as the
    /// client certificate (only meaningful for X.509 credentials).
    MutualTls,
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
    pub code: Option<String>,
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
    pub code: String,
    /// One line a person can act on.
    pub reason: String,
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

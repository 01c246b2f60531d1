//! Issuing credentials for a VM's key K, and checking credentials the broker issued.

mod jwt;
pub(crate) mod keys;
mod svid;

use std::net::IpAddr;
use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use mooring_attestation::crypto::PublicKey;
use mooring_attestation::tpm::alg::EccCurve;
use serde::{Deserialize, Serialize};

pub(crate) use self::jwt::{Jwk, JwtClaims};
use self::keys::KeySet;
use crate::refusal::{Code, Refusal};

/// What a credential is issued for.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) spiffe_id: String,
    pub(crate) class: String,
    pub(crate) hardware_id: String,
    /// The credential key K (ECC P-256).
    pub(crate) key: CredentialKey,
    pub(crate) bound_address: IpAddr,
    pub(crate) ttl_seconds: u32,
    pub(crate) audiences: Vec<String>,
}

/// A P-256 public key held by the VM (in its TPM or its encrypted memory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CredentialKey {
    /// Uncompressed SEC1 point.
    point: Vec<u8>,
}

impl CredentialKey {
    /// Accepts ECC P-256 keys only.
    pub(crate) fn from_public_key(key: &PublicKey) -> Result<Self, Refusal> {
        match key {
            PublicKey::Ecc { curve: EccCurve::NistP256, .. } => key
                .sec1_uncompressed()
                .map(|point| Self { point })
                .ok_or_else(|| Refusal::new(Code::KeyInvalid, "credential key point unusable")),
            other => Err(Refusal::new(
                Code::KeyInvalid,
                format!("credential key must be ECC P-256, got {}", other.describe()),
            )),
        }
    }

    /// From an uncompressed SEC1 point taken from a credential the broker signed.
    pub(crate) fn from_point(point: Vec<u8>) -> Self {
        Self { point }
    }

    /// Uncompressed SEC1 point.
    pub(crate) fn point(&self) -> &[u8] {
        &self.point
    }

    /// Checks an ECDSA P-256 / SHA-256 signature (ASN.1 DER) by K over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            &self.point,
        )
        .verify(message, signature)
        .is_ok()
    }
}

/// Credentials issued for one attestation.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) serial: String,
    pub(crate) x509_svid_pem: String,
    pub(crate) jwt_svid: String,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
}

/// The issuer: key generations and the trust domain.
#[derive(Debug)]
pub(crate) struct Issuer {
    keys: KeySet,
    trust_domain: String,
}

impl Issuer {
    /// Opens the key store in `dir`.
    pub(crate) fn open(
        dir: &Path,
        trust_domain: &str,
        rotate_after_hours: u32,
        now: i64,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            keys: KeySet::open(dir, trust_domain, rotate_after_hours, now)?,
            trust_domain: trust_domain.to_owned(),
        })
    }

    pub(crate) fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Issues an X.509-SVID and a JWT-SVID with one serial.
    pub(crate) fn issue(&self, subject: &Subject, now: i64) -> anyhow::Result<Issued> {
        let generation = self.keys.current(now)?;
        let serial = new_serial()?;
        let expires_at = now + i64::from(subject.ttl_seconds);
        let x509_svid_pem = svid::issue(&generation, subject, &serial, now, expires_at)?;
        let claims = JwtClaims {
            sub: subject.spiffe_id.clone(),
            aud: subject.audiences.clone(),
            exp: expires_at,
            iat: now,
            jti: serial.clone(),
            cnf: jwt::Confirmation { jwk: Jwk::ec_p256(subject.key.point()) },
            class: subject.class.clone(),
            hardware_id: subject.hardware_id.clone(),
            bound_address: subject.bound_address,
        };
        let jwt_svid = jwt::sign(&generation, &claims)?;
        Ok(Issued { serial, x509_svid_pem, jwt_svid, issued_at: now, expires_at })
    }

    /// The X.509 CA certificates of every generation still in use (PEM).
    pub(crate) fn x509_bundle_pem(&self, now: i64) -> String {
        self.keys.all(now).iter().map(|g| svid::pem("CERTIFICATE", &g.ca_der)).collect()
    }

    /// The JWT verification keys (RFC 7517 JWK Set, SPIFFE bundle style).
    pub(crate) fn jwks(&self, now: i64) -> jwt::JwkSet {
        jwt::JwkSet {
            keys: self
                .keys
                .all(now)
                .iter()
                .map(|g| {
                    let mut jwk = Jwk::ec_p256(g.jwt_public());
                    jwk.kid = Some(g.kid.clone());
                    jwk.use_ = Some("jwt-svid".into());
                    jwk
                })
                .collect(),
        }
    }

    /// Checks a JWT-SVID's signature (by any generation in use) and expiry.
    pub(crate) fn verify_jwt(&self, token: &str, now: i64) -> Result<JwtClaims, Refusal> {
        jwt::verify(token, |kid| self.keys.find(kid, now), now)
    }

    /// Checks an X.509-SVID chain's signature (by any generation in use) and validity.
    pub(crate) fn verify_x509(&self, chain_pem: &str, now: i64) -> Result<svid::SvidClaims, Refusal> {
        svid::verify(chain_pem, &self.keys.all(now), now)
    }

    /// Makes sure a current generation exists (rotating if due).
    pub(crate) fn rotate_if_due(&self, now: i64) -> anyhow::Result<()> {
        self.keys.current(now).map(|_| ())
    }
}

/// A random positive 128-bit serial (hex).
fn new_serial() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(hex::encode(bytes))
}

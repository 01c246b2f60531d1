//! Issuing credentials for a VM's key K, and checking credentials the broker issued.

mod jwt;
pub(crate) mod keys;
mod svid;

use std::net::IpAddr;
use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use mooring_attestation::crypto::PublicKey;
use mooring_attestation::tpm::alg::EccCurve;
use serde::{Deserialize, Serialize};

pub(crate) use self::jwt::{Jwk, JwtClaims};
use self::keys::KeySet;
use crate::refusal::{Code, Refusal};
use crate::store::KeyVault;

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
    /// Opens the signing keys kept in `vault`.
    pub(crate) fn open(
        vault: Arc<dyn KeyVault>,
        trust_domain: &str,
        rotate_after_hours: u32,
        now: i64,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            keys: KeySet::open(vault, trust_domain, rotate_after_hours, now)?,
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
        match svid::verify(chain_pem, &self.keys.all(now), now) {
            // Signed by a generation another replica made since this one last looked.
            Err(refusal) if refusal.code == Code::UnknownSigningKey && self.keys.reload_if_stale(now) => {
                svid::verify(chain_pem, &self.keys.all(now), now)
            }
            other => other,
        }
    }

    /// Reads the shared keys again (another replica may have rotated) and makes sure a
    /// current generation exists (rotating if due).
    pub(crate) fn rotate_if_due(&self, now: i64) -> anyhow::Result<()> {
        self.keys.reload(now)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn subject() -> Subject {
        let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        use aws_lc_rs::signature::KeyPair as _;
        Subject {
            spiffe_id: "spiffe://test/vm/web/ab".into(),
            class: "web".into(),
            hardware_id: "ab".into(),
            key: CredentialKey::from_point(key.public_key().as_ref().to_vec()),
            bound_address: "10.0.0.1".parse().unwrap(),
            ttl_seconds: 600,
            audiences: vec!["payments".into()],
        }
    }

    fn vault(dir: &std::path::Path) -> Arc<dyn KeyVault> {
        Arc::new(crate::store::KeyFiles::new(dir))
    }

    fn issuer(dir: &std::path::Path) -> Issuer {
        Issuer::open(vault(dir), "test", 24, NOW).unwrap()
    }

    #[test]
    fn issued_credentials_verify_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let issued = issuer.issue(&subject(), NOW).unwrap();
        let claims = issuer.verify_jwt(&issued.jwt_svid, NOW + 1).unwrap();
        assert_eq!(claims.jti, issued.serial);
        let svid = issuer.verify_x509(&issued.x509_svid_pem, NOW + 1).unwrap();
        assert_eq!(svid.serial, issued.serial);
        assert_eq!(svid.bound_address, subject().bound_address);

        assert_eq!(issuer.verify_jwt(&issued.jwt_svid, NOW + 600).unwrap_err().code, Code::Expired);
        assert_eq!(issuer.verify_x509(&issued.x509_svid_pem, NOW + 600).unwrap_err().code, Code::Expired);
    }

    #[test]
    fn a_changed_token_or_foreign_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let token = issuer.issue(&subject(), NOW).unwrap().jwt_svid;
        let parts: Vec<&str> = token.split('.').collect();

        // Claims rewritten (another address) under the original signature.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["bound_address"] = "10.9.9.9".into();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
        assert_eq!(issuer.verify_jwt(&forged, NOW).unwrap_err().code, Code::BadSignature);

        // alg "none", and a key id not in the bundle.
        let none =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x","typ":"JWT"}"#), parts[1]);
        assert_eq!(issuer.verify_jwt(&none, NOW).unwrap_err().code, Code::BadSignature);
        let other = tempfile::tempdir().unwrap();
        let foreign =
            Issuer::open(vault(other.path()), "test", 24, NOW).unwrap().issue(&subject(), NOW).unwrap();
        assert_eq!(issuer.verify_jwt(&foreign.jwt_svid, NOW).unwrap_err().code, Code::UnknownSigningKey);
        assert_eq!(
            issuer.verify_x509(&foreign.x509_svid_pem, NOW).unwrap_err().code,
            Code::UnknownSigningKey
        );

        // Not a JWS at all.
        assert_eq!(issuer.verify_jwt("a.b", NOW).unwrap_err().code, Code::CredentialMalformed);
        assert_eq!(issuer.verify_jwt(&"a".repeat(9000), NOW).unwrap_err().code, Code::CredentialMalformed);
    }

    #[test]
    fn rotation_keeps_old_keys_until_their_credentials_expire() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let old = issuer.issue(&subject(), NOW).unwrap();
        let later = NOW + 24 * 3600 + 1;
        let new = issuer.issue(&subject(), later).unwrap();
        assert_eq!(issuer.jwks(later).keys.len(), 2, "the old key stays in the bundle");
        issuer.verify_jwt(&new.jwt_svid, later).unwrap();
        // The old credential expired on its own; its key leaves once nothing it signed can be valid.
        let gone = NOW + 24 * 3600 + keys::MAX_CREDENTIAL_TTL + 1;
        assert_eq!(issuer.jwks(gone).keys.len(), 1);
        assert_eq!(issuer.verify_jwt(&old.jwt_svid, gone).unwrap_err().code, Code::UnknownSigningKey);
        // Reopening finds the same generations.
        assert_eq!(Issuer::open(vault(dir.path()), "test", 24, later).unwrap().jwks(later).keys.len(), 2);
    }
}

//! Every check of the offline verifier, each flipped on its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::IpAddr;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use serde_json::{json, Value};

use super::*;
use crate::protocol::{BundleDocument, Jwk, JwkSet, PossessionStatement, JWT_SVID_USE, X509_SVID_USE};

const NOW: i64 = 1_800_000_000;
const AUDIENCE: &str = "payments";
const SPIFFE_ID: &str = "spiffe://test.mooring/vm/web/ab";
const REQUEST: &str = "5ca1ab1e";

fn bound() -> IpAddr {
    IpAddr::from([127, 0, 0, 2])
}

/// K as rcgen wants it (the bare SEC1 point).
struct SubjectKey(Vec<u8>);

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A broker's keys and a VM's K.
struct Fixture {
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca_pem: String,
    jwt_key: EcdsaKeyPair,
    k: EcdsaKeyPair,
}

fn ecdsa(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap()
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 3600).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 3600).unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

impl Fixture {
    fn new() -> Self {
        Self::with_ca("Mooring test CA")
    }

    /// A broker whose CA is named `name` (each key generation's CA has its own name).
    fn with_ca(name: &str) -> Self {
        let (ca_params, ca_key, ca_pem) = ca(name);
        Self {
            ca_params,
            ca_key,
            ca_pem,
            jwt_key: ecdsa(&ECDSA_P256_SHA256_FIXED_SIGNING),
            k: ecdsa(&ECDSA_P256_SHA256_ASN1_SIGNING),
        }
    }

    fn jwks(&self) -> JwkSet {
        let mut jwk = Jwk::ec_p256(self.jwt_key.public_key().as_ref());
        jwk.kid = Some("gen1".into());
        JwkSet { keys: vec![jwk] }
    }

    /// The CA as a SPIFFE bundle's `x509-svid` key.
    fn x509_key(&self) -> Jwk {
        let mut jwk = Jwk::ec_p256(self.ca_key.public_key_raw());
        jwk.use_ = Some(X509_SVID_USE.into());
        let der = crate::x509::bundle::parse_one_certificate(self.ca_pem.as_bytes()).unwrap().der().to_vec();
        jwk.x5c = Some(vec![base64::engine::general_purpose::STANDARD.encode(der)]);
        jwk
    }

    /// The SPIFFE bundle a broker with these keys serves.
    fn document(&self) -> BundleDocument {
        let mut jwt = self.jwks().keys.remove(0);
        jwt.use_ = Some(JWT_SVID_USE.into());
        BundleDocument {
            keys: vec![self.x509_key(), jwt],
            spiffe_sequence: Some(7),
            spiffe_refresh_hint: Some(300),
        }
    }

    fn bundle(&self) -> TrustBundle {
        TrustBundle::from_document("test.mooring", &self.document()).unwrap()
    }

    fn claims(&self) -> Value {
        json!({
            "sub": SPIFFE_ID, "aud": [AUDIENCE], "exp": NOW + 600, "iat": NOW, "jti": "0a1b",
            "cnf": {"jwk": Jwk::ec_p256(self.k.public_key().as_ref())},
            "class": "web", "hardware_id": "ab", "bound_address": bound(),
        })
    }

    fn jwt_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.jwt_key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn jwt(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims();
        edit(&mut claims);
        self.jwt_with(&json!({"alg": "ES256", "kid": "gen1", "typ": "JWT"}), &claims)
    }

    fn leaf_params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.subject_alt_names =
            vec![SanType::URI(SPIFFE_ID.try_into().unwrap()), SanType::IpAddress(bound())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 60).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(NOW + 600).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0x1b]));
        params
    }

    fn leaf_signed_by(&self, params: &CertificateParams, ca: (&CertificateParams, &KeyPair)) -> Vec<u8> {
        let issuer = Issuer::from_params(ca.0, ca.1);
        let point = self.k.public_key().as_ref().to_vec();
        params.signed_by(&SubjectKey(point), &issuer).unwrap().der().to_vec()
    }

    fn leaf(&self, edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let mut params = self.leaf_params();
        edit(&mut params);
        self.leaf_signed_by(&params, (&self.ca_params, &self.ca_key))
    }

    fn proof_with(&self, statement: &PossessionStatement) -> PossessionProof {
        let bytes = serde_json::to_vec(statement).unwrap();
        let signature = self.k.sign(&SystemRandom::new(), &bytes).unwrap();
        PossessionProof::new(bytes, signature.as_ref().to_vec())
    }

    fn proof(&self) -> PossessionProof {
        self.proof_with(&statement())
    }
}

fn statement() -> PossessionStatement {
    PossessionStatement {
        purpose: PossessionStatement::PURPOSE.into(),
        audience: AUDIENCE.into(),
        issued_at: NOW,
        request: REQUEST.into(),
    }
}

fn revocations(list: Vec<Revocation>) -> RevocationList {
    RevocationList { generated_at: NOW - 10, revocations: list, ..RevocationList::default() }
}

/// Verifies a JWT-SVID from `peer` with `proof` against the fixture's bundle.
fn check_jwt(
    f: &Fixture,
    token: &str,
    peer: IpAddr,
    proof: Option<Proof<'_>>,
) -> Result<VerifiedCredential, SvidError> {
    let bundle = f.bundle();
    let revocations = revocations(Vec::new());
    let verifier =
        Verifier { bundle: &bundle, revocations: &revocations, max_revocation_age: 60, audience: AUDIENCE };
    verifier.verify(&Presentation { credential: Presented::Jwt(token), peer, proof }, NOW)
}

fn code_of(result: Result<VerifiedCredential, SvidError>) -> &'static str {
    let err = result.expect_err("must be refused");
    assert!(!err.to_string().is_empty());
    err.code().as_str()
}

fn signed(proof: &PossessionProof) -> Option<Proof<'_>> {
    Some(Proof::Signature { proof, request: REQUEST })
}

mod bundle;
mod exchanged;
mod jwt;
mod possession;
mod revocation;
mod x509;

/// K is an ECC P-256 key: any other key is refused and named.
#[test]
fn the_credential_key_is_p256_only() {
    let ecdsa = ecdsa(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING);
    let point = ecdsa.public_key().as_ref();
    let p256 = crate::crypto::PublicKey::Ecc {
        curve: crate::tpm::alg::EccCurve::NistP256,
        x: point[1..33].to_vec(),
        y: point[33..].to_vec(),
    };
    assert_eq!(CredentialKey::from_public_key(&p256).unwrap().point(), point);
    let p384 = crate::crypto::PublicKey::Ecc {
        curve: crate::tpm::alg::EccCurve::NistP384,
        x: vec![1; 48],
        y: vec![2; 48],
    };
    assert!(CredentialKey::from_public_key(&p384).unwrap_err().contains("must be ECC P-256, got ECC P-384"));
    let rsa = crate::crypto::PublicKey::Rsa { modulus: vec![0xc5; 256], exponent: 65537 };
    assert!(CredentialKey::from_public_key(&rsa).unwrap_err().contains("got RSA-2048"));
}

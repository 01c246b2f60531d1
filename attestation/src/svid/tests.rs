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
use crate::protocol::{BundleDocument, Jwk, JwkSet, PossessionStatement, RevocationTarget};

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

    fn bundle(&self) -> TrustBundle {
        TrustBundle::new("test.mooring", self.ca_pem.as_bytes(), &self.jwks()).unwrap()
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

#[test]
fn a_jwt_svid_with_a_possession_proof_from_its_address_is_accepted() {
    let f = Fixture::new();
    let proof = f.proof();
    let verified = check_jwt(&f, &f.jwt(|_| {}), bound(), signed(&proof)).unwrap();
    assert_eq!(verified.spiffe_id(), SPIFFE_ID);
    assert_eq!(verified.serial(), "0a1b");
    assert_eq!(verified.bound_address(), bound());
    assert_eq!(verified.class(), Some("web"));
    assert_eq!(verified.hardware_id(), Some("ab"));
    assert_eq!(verified.expires_at(), NOW + 600);
    // `aud` as a single string is the same audience.
    check_jwt(&f, &f.jwt(|c| c["aud"] = AUDIENCE.into()), bound(), signed(&proof)).unwrap();
}

#[test]
fn jwt_svid_signature_and_encoding_negatives() {
    let f = Fixture::new();
    let proof = f.proof();
    let good = f.jwt(|_| {});
    let parts: Vec<&str> = good.split('.').collect();

    // Claims rewritten (another bound address) under the original signature.
    let mut claims = f.claims();
    claims["bound_address"] = "127.0.0.9".into();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    assert_eq!(code_of(check_jwt(&f, &forged, bound(), signed(&proof))), "bad_signature");

    // alg none; a key id not in the bundle; no key id.
    let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"gen1"}"#), parts[1]);
    assert_eq!(code_of(check_jwt(&f, &none, bound(), signed(&proof))), "bad_signature");
    let other_kid = f.jwt_with(&json!({"alg": "ES256", "kid": "gen2"}), &f.claims());
    assert_eq!(code_of(check_jwt(&f, &other_kid, bound(), signed(&proof))), "unknown_signing_key");
    let no_kid = f.jwt_with(&json!({"alg": "ES256"}), &f.claims());
    assert_eq!(code_of(check_jwt(&f, &no_kid, bound(), signed(&proof))), "credential_malformed");

    // Signed by a key of another broker under the same kid.
    let stranger = Fixture::new();
    let foreign = stranger.jwt(|_| {});
    assert_eq!(code_of(check_jwt(&f, &foreign, bound(), signed(&proof))), "bad_signature");

    // Not a JWS; too long; claims missing; cnf not P-256; SPIFFE ID of another trust domain.
    assert_eq!(code_of(check_jwt(&f, "a.b", bound(), signed(&proof))), "credential_malformed");
    assert_eq!(code_of(check_jwt(&f, &"a".repeat(9000), bound(), signed(&proof))), "credential_malformed");
    let no_cnf = f.jwt(|c| drop(c.as_object_mut().unwrap().remove("cnf")));
    assert_eq!(code_of(check_jwt(&f, &no_cnf, bound(), signed(&proof))), "credential_malformed");
    let rsa_cnf = f.jwt(|c| c["cnf"]["jwk"]["crv"] = "P-384".into());
    assert_eq!(code_of(check_jwt(&f, &rsa_cnf, bound(), signed(&proof))), "credential_malformed");
    let other_domain = f.jwt(|c| c["sub"] = "spiffe://evil.example/vm/web/ab".into());
    assert_eq!(code_of(check_jwt(&f, &other_domain, bound(), signed(&proof))), "credential_malformed");
    let prefix_domain = f.jwt(|c| c["sub"] = "spiffe://test.mooring.evil/vm/web/ab".into());
    assert_eq!(code_of(check_jwt(&f, &prefix_domain, bound(), signed(&proof))), "credential_malformed");
}

#[test]
fn jwt_svid_time_and_audience_negatives() {
    let f = Fixture::new();
    let proof = f.proof();
    let expired = f.jwt(|c| c["exp"] = NOW.into());
    assert_eq!(code_of(check_jwt(&f, &expired, bound(), signed(&proof))), "expired");
    let future = f.jwt(|c| c["iat"] = (NOW + 3600).into());
    assert_eq!(code_of(check_jwt(&f, &future, bound(), signed(&proof))), "expired");
    let elsewhere = f.jwt(|c| c["aud"] = json!(["ledger"]));
    assert_eq!(code_of(check_jwt(&f, &elsewhere, bound(), signed(&proof))), "wrong_audience");
}

#[test]
fn a_copied_credential_without_the_key_or_from_elsewhere_is_refused() {
    let f = Fixture::new();
    let token = f.jwt(|_| {});
    let proof = f.proof();
    // From another address, even with a good proof.
    let err = check_jwt(&f, &token, IpAddr::from([127, 0, 0, 3]), signed(&proof)).unwrap_err();
    assert_eq!(err, SvidError::AddressOutsideBinding { bound: bound(), peer: IpAddr::from([127, 0, 0, 3]) });
    assert_eq!(err.code().as_str(), "address_outside_binding");
    // No proof at all; mutual TLS claimed for a JWT.
    assert_eq!(code_of(check_jwt(&f, &token, bound(), None)), "no_proof_of_possession");
    assert_eq!(code_of(check_jwt(&f, &token, bound(), Some(Proof::MutualTls))), "no_proof_of_possession");
}

#[test]
fn possession_proof_negatives() {
    let f = Fixture::new();
    let token = f.jwt(|_| {});
    let refused = |proof: &PossessionProof| code_of(check_jwt(&f, &token, bound(), signed(proof)));

    // Signed by another key (the thief's own).
    let thief = Fixture::new();
    assert_eq!(refused(&thief.proof()), "proof_invalid");
    // The signature over other bytes than the statement sent.
    let good = f.proof();
    let mut longer = good.statement().to_vec();
    longer.push(b' ');
    assert_eq!(refused(&PossessionProof::new(longer, good.signature().to_vec())), "proof_invalid");
    // Each field of the statement.
    let with = |edit: fn(&mut PossessionStatement)| {
        let mut s = statement();
        edit(&mut s);
        f.proof_with(&s)
    };
    assert_eq!(refused(&with(|s| s.purpose = "login".into())), "proof_invalid");
    assert_eq!(refused(&with(|s| s.audience = "ledger".into())), "proof_invalid");
    assert_eq!(refused(&with(|s| s.request = "00".into())), "proof_invalid");
    assert_eq!(refused(&with(|s| s.issued_at = NOW - POSSESSION_SKEW_SECONDS - 1)), "proof_invalid");
    assert_eq!(refused(&with(|s| s.issued_at = NOW + POSSESSION_SKEW_SECONDS + 1)), "proof_invalid");
    // Within the skew passes.
    check_jwt(&f, &token, bound(), signed(&with(|s| s.issued_at = NOW - POSSESSION_SKEW_SECONDS))).unwrap();
    // Signed, but not a statement.
    let junk = f.k.sign(&SystemRandom::new(), b"{}").unwrap();
    assert_eq!(refused(&PossessionProof::new(b"{}".to_vec(), junk.as_ref().to_vec())), "proof_invalid");
}

#[test]
fn the_possession_header_round_trips_and_refuses_junk() {
    let f = Fixture::new();
    let proof = f.proof();
    assert_eq!(PossessionProof::from_header(&proof.to_header()).unwrap(), proof);
    for junk in ["", "nodot", "!!.AA", "AA.!!", &"A".repeat(MAX_PROOF_HEADER_BYTES + 1)] {
        assert_eq!(
            PossessionProof::from_header(junk).unwrap_err().code().as_str(),
            "proof_invalid",
            "{junk:.20}"
        );
    }
    // The statement check alone (what a service relying on the broker still does).
    assert_eq!(proof.check_statement(AUDIENCE, REQUEST, NOW).unwrap(), statement());
    assert_eq!(proof.check_statement(AUDIENCE, "other", NOW).unwrap_err().code().as_str(), "proof_invalid");
}

#[test]
fn the_request_digest_commits_to_method_path_and_body() {
    let base = request_digest("POST", "/pay", b"{}");
    assert_eq!(base.len(), 64);
    assert_ne!(base, request_digest("PUT", "/pay", b"{}"));
    assert_ne!(base, request_digest("POST", "/refund", b"{}"));
    assert_ne!(base, request_digest("POST", "/pay", b"{ }"));
}

#[test]
fn revocation_negatives() {
    let f = Fixture::new();
    let token = f.jwt(|_| {});
    let proof = f.proof();
    let bundle = f.bundle();
    let check = |list: &RevocationList| {
        let verifier =
            Verifier { bundle: &bundle, revocations: list, max_revocation_age: 60, audience: AUDIENCE };
        verifier.verify(
            &Presentation { credential: Presented::Jwt(&token), peer: bound(), proof: signed(&proof) },
            NOW,
        )
    };
    let revoked = |target| Revocation {
        target,
        revoked_at: NOW - 5,
        reason: "stolen laptop".into(),
        code: RevocationCode::Revoked,
    };
    // Serials match exactly, as in the broker's store (its admin API takes lowercase hex only).
    let other_spelling = revocations(vec![revoked(RevocationTarget::Credential("0A1B".into()))]);
    assert!(check(&other_spelling).is_ok());
    let by_serial = revocations(vec![revoked(RevocationTarget::Credential("0a1b".into()))]);
    let err = check(&by_serial).unwrap_err();
    assert_eq!(err.code().as_str(), "revoked");
    assert!(err.to_string().contains("stolen laptop"), "{err}");
    let by_vm = revocations(vec![revoked(RevocationTarget::Vm(SPIFFE_ID.into()))]);
    assert_eq!(check(&by_vm).unwrap_err().code().as_str(), "revoked");
    // Given up by the VM at shutdown: refused as retired.
    let retired = revocations(vec![Revocation {
        code: RevocationCode::Retired,
        ..revoked(RevocationTarget::Credential("0a1b".into()))
    }]);
    assert_eq!(check(&retired).unwrap_err().code().as_str(), "retired");
    // Others' revocations do not matter; a list older than allowed is refused.
    let others = revocations(vec![
        revoked(RevocationTarget::Credential("ffff".into())),
        revoked(RevocationTarget::Vm("spiffe://test.mooring/vm/web/cd".into())),
    ]);
    check(&others).unwrap();
    let stale =
        RevocationList { generated_at: NOW - 61, revocations: Vec::new(), ..RevocationList::default() };
    assert_eq!(check(&stale).unwrap_err().code().as_str(), "revocation_list_stale");
    // A list dated in the future (beyond the skew allowed) would look fresh for too long.
    let skewed = RevocationList {
        generated_at: NOW + REVOCATION_CLOCK_SKEW_SECONDS,
        revocations: Vec::new(),
        ..RevocationList::default()
    };
    check(&skewed).unwrap();
    let future = RevocationList {
        generated_at: NOW + REVOCATION_CLOCK_SKEW_SECONDS + 1,
        revocations: Vec::new(),
        ..RevocationList::default()
    };
    let err = check(&future).unwrap_err();
    assert_eq!(err.code().as_str(), "revocation_list_stale");
    assert!(err.to_string().contains("in the future"), "{err}");
    let wire: RevocationList = serde_json::from_str(
        r#"{"generated_at":1,"revocations":[{"target":{"kind":"vm","id":"spiffe://x/vm/a"},"revoked_at":1,"reason":"r"}]}"#,
    )
    .unwrap();
    assert_eq!(wire.revocations[0].target, RevocationTarget::Vm("spiffe://x/vm/a".into()));
}

/// Verifies an X.509-SVID leaf presented over mutual TLS from `peer`.
fn check_x509(f: &Fixture, leaf: &[u8], peer: IpAddr) -> Result<VerifiedCredential, SvidError> {
    let bundle = f.bundle();
    let revocations = revocations(Vec::new());
    let verifier =
        Verifier { bundle: &bundle, revocations: &revocations, max_revocation_age: 60, audience: AUDIENCE };
    verifier
        .verify(&Presentation { credential: Presented::X509(leaf), peer, proof: Some(Proof::MutualTls) }, NOW)
}

#[test]
fn an_x509_svid_over_mutual_tls_is_accepted() {
    let f = Fixture::new();
    let verified = check_x509(&f, &f.leaf(|_| {}), bound()).unwrap();
    assert_eq!(verified.spiffe_id(), SPIFFE_ID);
    assert_eq!(verified.serial(), "0a1b");
    assert_eq!(verified.class(), None);
    // A signed possession statement proves K for an X.509-SVID too.
    let proof = f.proof();
    let bundle = f.bundle();
    let list = revocations(Vec::new());
    let verifier =
        Verifier { bundle: &bundle, revocations: &list, max_revocation_age: 60, audience: AUDIENCE };
    let leaf = f.leaf(|_| {});
    verifier
        .verify(
            &Presentation { credential: Presented::X509(&leaf), peer: bound(), proof: signed(&proof) },
            NOW,
        )
        .unwrap();
}

#[test]
fn x509_svid_negatives() {
    let f = Fixture::new();
    let code = |leaf: &[u8]| code_of(check_x509(&f, leaf, bound()));

    // Issued by a CA outside the bundle; by one with the bundle CA's name but another key.
    let stranger = Fixture::new();
    let mut foreign = f.leaf_params();
    foreign.distinguished_name.push(DnType::CommonName, "x");
    assert_eq!(
        code(&f.leaf_signed_by(&foreign, (&ca("Other CA").0, &ca("Other CA").1))),
        "unknown_signing_key"
    );
    assert_eq!(
        code(&f.leaf_signed_by(&f.leaf_params(), (&stranger.ca_params, &stranger.ca_key))),
        "bad_signature"
    );
    // One flipped bit in the signature.
    let mut flipped = f.leaf(|_| {});
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(["bad_signature", "credential_malformed"].contains(&code(&flipped)));
    // Validity.
    assert_eq!(
        code(&f.leaf(|p| p.not_after = time::OffsetDateTime::from_unix_timestamp(NOW).unwrap())),
        "expired"
    );
    assert_eq!(
        code(&f.leaf(|p| p.not_before = time::OffsetDateTime::from_unix_timestamp(NOW + 10).unwrap())),
        "expired"
    );
    // Names: no IP, two IPs, two URIs, another trust domain; a CA as the leaf; not DER.
    assert_eq!(code(&f.leaf(|p| p.subject_alt_names.truncate(1))), "credential_malformed");
    assert_eq!(
        code(&f.leaf(|p| p.subject_alt_names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 3]))))),
        "credential_malformed"
    );
    assert_eq!(
        code(&f.leaf(|p| {
            p.subject_alt_names.push(SanType::URI("spiffe://test.mooring/vm/x".try_into().unwrap()))
        })),
        "credential_malformed"
    );
    assert_eq!(
        code(
            &f.leaf(|p| p.subject_alt_names[0] = SanType::URI("spiffe://evil/vm/web/ab".try_into().unwrap()))
        ),
        "credential_malformed"
    );
    assert_eq!(
        code(&f.leaf(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained))),
        "credential_malformed"
    );
    assert_eq!(code(b"not a certificate"), "credential_malformed");
    // From elsewhere; without mutual TLS.
    assert_eq!(
        code_of(check_x509(&f, &f.leaf(|_| {}), IpAddr::from([127, 0, 0, 3]))),
        "address_outside_binding"
    );
    let bundle = f.bundle();
    let list = revocations(Vec::new());
    let verifier =
        Verifier { bundle: &bundle, revocations: &list, max_revocation_age: 60, audience: AUDIENCE };
    let leaf = f.leaf(|_| {});
    let bare = Presentation { credential: Presented::X509(&leaf), peer: bound(), proof: None };
    assert_eq!(code_of(verifier.verify(&bare, NOW)), "no_proof_of_possession");
}

#[test]
fn bundle_negatives() {
    let f = Fixture::new();
    let invalid = |domain: &str, pem: &[u8], jwks: &JwkSet| {
        TrustBundle::new(domain, pem, jwks).unwrap_err().code().as_str()
    };
    assert_eq!(invalid("", f.ca_pem.as_bytes(), &f.jwks()), "bundle_invalid");
    assert_eq!(invalid("a/b", f.ca_pem.as_bytes(), &f.jwks()), "bundle_invalid");
    assert_eq!(invalid("test.mooring", b"", &f.jwks()), "bundle_invalid");
    let leaf_pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(f.leaf(|_| {}))
    );
    assert_eq!(invalid("test.mooring", leaf_pem.as_bytes(), &f.jwks()), "bundle_invalid");
    let mut no_kid = f.jwks();
    no_kid.keys[0].kid = None;
    assert_eq!(invalid("test.mooring", f.ca_pem.as_bytes(), &no_kid), "bundle_invalid");
    let mut bad_key = f.jwks();
    bad_key.keys[0].x = "AA".into();
    assert_eq!(invalid("test.mooring", f.ca_pem.as_bytes(), &bad_key), "bundle_invalid");
    // The broker's document form.
    let document: BundleDocument = serde_json::from_value(json!({
        "trust_domain": "test.mooring", "x509_authorities": f.ca_pem, "jwt_authorities": f.jwks(), "refresh_hint": 300
    }))
    .unwrap();
    assert_eq!(TrustBundle::from_document(&document).unwrap().x509_authorities().len(), 1);
}

#[test]
fn a_bundle_of_two_generations_accepts_what_either_signed() {
    // After a rotation the broker's bundle holds the retained generation and the new one.
    let old = Fixture::with_ca("Mooring test CA gen0");
    let new = Fixture::new();
    let mut old_jwk = Jwk::ec_p256(old.jwt_key.public_key().as_ref());
    old_jwk.kid = Some("gen0".into());
    let mut jwks = new.jwks();
    jwks.keys.insert(0, old_jwk);
    let authorities =
        crate::x509::bundle::parse_certificates(format!("{}{}", old.ca_pem, new.ca_pem).as_bytes()).unwrap();
    let bundle = TrustBundle::from_authorities("test.mooring", authorities, &jwks).unwrap();
    let by_old = old.jwt_with(&json!({"alg": "ES256", "kid": "gen0", "typ": "JWT"}), &old.claims());
    CheckedCredential::check(Presented::Jwt(&by_old), &bundle, NOW).unwrap();
    CheckedCredential::check(Presented::Jwt(&new.jwt(|_| {})), &bundle, NOW).unwrap();
    CheckedCredential::check(Presented::X509(&old.leaf(|_| {})), &bundle, NOW).unwrap();
    CheckedCredential::check(Presented::X509(&new.leaf(|_| {})), &bundle, NOW).unwrap();
    // The old key under the new kid does not pass; neither does anything once it leaves.
    let swapped = old.jwt(|_| {});
    assert_eq!(
        CheckedCredential::check(Presented::Jwt(&swapped), &bundle, NOW).unwrap_err().code().as_str(),
        "bad_signature"
    );
    let after = TrustBundle::from_authorities(
        "test.mooring",
        crate::x509::bundle::parse_certificates(new.ca_pem.as_bytes()).unwrap(),
        &new.jwks(),
    )
    .unwrap();
    let refused = |credential| CheckedCredential::check(credential, &after, NOW).unwrap_err().code().as_str();
    assert_eq!(refused(Presented::Jwt(&by_old)), "unknown_signing_key");
    assert_eq!(refused(Presented::X509(&old.leaf(|_| {}))), "unknown_signing_key");
    // An empty bundle trusts nothing.
    let empty = TrustBundle::from_authorities("test.mooring", Vec::new(), &JwkSet::default()).unwrap();
    assert_eq!(
        CheckedCredential::check(Presented::Jwt(&new.jwt(|_| {})), &empty, NOW).unwrap_err().code().as_str(),
        "unknown_signing_key"
    );
    assert_eq!(
        CheckedCredential::check(Presented::X509(&new.leaf(|_| {})), &empty, NOW)
            .unwrap_err()
            .code()
            .as_str(),
        "unknown_signing_key"
    );
}

#[test]
fn the_checks_one_at_a_time_as_the_broker_runs_them() {
    let f = Fixture::new();
    let bundle = f.bundle();
    let token = f.jwt(|c| c["aud"] = json!([AUDIENCE, "ledger"]));
    let checked = CheckedCredential::check(Presented::Jwt(&token), &bundle, NOW).unwrap();
    assert_eq!(checked.credential().serial(), "0a1b");
    assert_eq!(checked.audiences(), Some(&[AUDIENCE.to_owned(), "ledger".to_owned()][..]));
    checked.check_audience("ledger").unwrap();
    assert_eq!(checked.check_audience("billing").unwrap_err().code().as_str(), "wrong_audience");
    checked.check_binding(bound()).unwrap();
    assert_eq!(
        checked.check_binding(IpAddr::from([127, 0, 0, 3])).unwrap_err().code().as_str(),
        "address_outside_binding"
    );

    // The broker's form: `request` is the relying service's to check, the rest is not.
    let any = |proof: &PossessionProof| {
        checked.clone().check_possession(Some(Proof::SignatureAnyRequest { proof }), AUDIENCE, NOW)
    };
    let other_request = f.proof_with(&PossessionStatement { request: "00".into(), ..statement() });
    assert_eq!(any(&other_request).unwrap().spiffe_id(), SPIFFE_ID);
    let thief = Fixture::new();
    assert_eq!(code_of(any(&thief.proof())), "proof_invalid");
    let other_audience = f.proof_with(&PossessionStatement { audience: "ledger".into(), ..statement() });
    assert_eq!(code_of(any(&other_audience)), "proof_invalid");
    let stale = f.proof_with(&PossessionStatement { issued_at: NOW - 3600, ..statement() });
    assert_eq!(code_of(any(&stale)), "proof_invalid");
    let wrong_purpose = f.proof_with(&PossessionStatement { purpose: "login".into(), ..statement() });
    assert_eq!(code_of(any(&wrong_purpose)), "proof_invalid");
    let mut altered = f.proof().statement().to_vec();
    altered[10] ^= 1;
    assert_eq!(code_of(any(&PossessionProof::new(altered, f.proof().signature().to_vec()))), "proof_invalid");
    assert_eq!(code_of(checked.clone().check_possession(None, AUDIENCE, NOW)), "no_proof_of_possession");
    assert_eq!(
        code_of(checked.check_possession(Some(Proof::MutualTls), AUDIENCE, NOW)),
        "no_proof_of_possession"
    );

    // An X.509-SVID has no audience to check.
    let leaf = f.leaf(|_| {});
    let x509 = CheckedCredential::check(Presented::X509(&leaf), &bundle, NOW).unwrap();
    assert_eq!(x509.audiences(), None);
    x509.check_audience("anyone").unwrap();
    x509.check_possession(Some(Proof::MutualTls), AUDIENCE, NOW).unwrap();
}

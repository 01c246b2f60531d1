//! Proofs of possession of K: the `Mooring-Possession` header, the statement it carries,
//! and its signature, checked for a fixed, valid JWT-SVID whose `cnf` is K.
//!
//! First byte: mode; the rest:
//! - 0: the header value (parsed, re-encoded, the statement checked without signature);
//! - 1: the statement bytes, signed by K (the path past the signature);
//! - 2: statement, a 0 byte, signature (arbitrary signature bytes against K).
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use mooring_attestation::svid::{CheckedCredential, PossessionProof, Presented, Proof, TrustBundle};
use mooring_attestation::protocol::{Jwk, JwkSet};

const NOW: i64 = 1_800_000_000;
const AUDIENCE: &str = "payments";
const REQUEST: &str = "5ca1ab1e";

struct Fixture {
    k: EcdsaKeyPair,
    checked: CheckedCredential,
}

fn key(alg: &'static EcdsaSigningAlgorithm) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("key");
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("key")
}

/// A JWT-SVID for K, signed by the bundle's key, checked once.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let jwt_key = key(&ECDSA_P256_SHA256_FIXED_SIGNING);
        let k = key(&ECDSA_P256_SHA256_ASN1_SIGNING);
        let mut jwk = Jwk::ec_p256(jwt_key.public_key().as_ref());
        jwk.kid = Some("gen1".into());
        let bundle = TrustBundle::from_authorities("test.mooring", Vec::new(), &JwkSet { keys: vec![jwk] })
            .expect("bundle");
        let claims = serde_json::json!({
            "sub": "spiffe://test.mooring/vm/web/ab", "aud": [AUDIENCE], "exp": NOW + 600, "iat": NOW,
            "jti": "0a1b", "cnf": {"jwk": Jwk::ec_p256(k.public_key().as_ref())},
            "class": "web", "hardware_id": "ab", "bound_address": IpAddr::from([127, 0, 0, 2]),
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"gen1"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = jwt_key.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        let checked =
            CheckedCredential::check(Presented::Jwt(&token), &bundle, NOW).expect("a valid JWT-SVID");
        Fixture { k, checked }
    })
}

fn check(fixture: &Fixture, proof: &PossessionProof) {
    let _ = proof.check_statement(AUDIENCE, REQUEST, NOW);
    let with_request = Proof::Signature { proof, request: REQUEST };
    let _ = fixture.checked.clone().check_possession(Some(with_request), AUDIENCE, NOW);
    let _ =
        fixture.checked.clone().check_possession(Some(Proof::SignatureAnyRequest { proof }), AUDIENCE, NOW);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let fixture = fixture();
    match mode % 3 {
        0 => {
            let Ok(header) = std::str::from_utf8(rest) else { return };
            if let Ok(proof) = PossessionProof::from_header(header) {
                let again =
                    PossessionProof::from_header(&proof.to_header()).expect("a re-encoded header parses");
                assert_eq!(again, proof, "header round trip");
                check(fixture, &proof);
            }
        }
        1 => {
            let signature = fixture.k.sign(&SystemRandom::new(), rest).expect("sign");
            check(fixture, &PossessionProof::new(rest.to_vec(), signature.as_ref().to_vec()));
        }
        _ => {
            let (statement, signature) = match rest.iter().position(|&b| b == 0) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            check(fixture, &PossessionProof::new(statement.to_vec(), signature.to_vec()));
        }
    }
});

//! JWT-SVID verification against a fixed trust bundle, every check in the broker's order.
//!
//! First byte: mode; the rest:
//! - 0: the token as presented (its signature will not verify: this is the header, `kid`,
//!   base64url and signature-encoding path);
//! - 1: the claims JSON, signed by the bundle's key under a valid header (the path past the
//!   signature: claims, expiry, SPIFFE ID, `cnf`, audience, revocation, binding);
//! - 2: header JSON, a 0 byte, claims JSON, signed by the bundle's key;
//! - 3: an X.509-SVID leaf (DER), checked against the same bundle.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use mooring_attestation::svid::{Presentation, Presented, Proof, TrustBundle, Verifier};
use mooring_attestation::protocol::{Jwk, JwkSet, Revocation, RevocationCode, RevocationList, RevocationTarget};

const NOW: i64 = 1_800_000_000;
const HEADER: &str = r#"{"alg":"ES256","kid":"gen1","typ":"JWT"}"#;

struct Fixture {
    key: EcdsaKeyPair,
    bundle: TrustBundle,
    revocations: RevocationList,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("key");
        let mut jwk = Jwk::ec_p256(key.public_key().as_ref());
        jwk.kid = Some("gen1".into());
        let bundle = TrustBundle::from_authorities("test.mooring", Vec::new(), &JwkSet { keys: vec![jwk] })
            .expect("bundle");
        let revoke = |target, code| Revocation { target, revoked_at: NOW - 10, reason: "fuzz".into(), code };
        let revocations = RevocationList {
            generated_at: NOW - 60,
            version: "1".into(),
            revocations: vec![
                revoke(RevocationTarget::Credential("dead".into()), RevocationCode::Revoked),
                revoke(
                    RevocationTarget::Vm("spiffe://test.mooring/vm/web/revoked".into()),
                    RevocationCode::Retired,
                ),
            ],
        };
        Fixture { key, bundle, revocations }
    })
}

fn signed(fixture: &Fixture, header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = fixture.key.sign(&SystemRandom::new(), input.as_bytes()).expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

fn verify(fixture: &Fixture, credential: Presented<'_>) {
    let verifier = Verifier {
        bundle: &fixture.bundle,
        revocations: &fixture.revocations,
        max_revocation_age: 300,
        audience: "payments",
    };
    let peer = IpAddr::from([127, 0, 0, 2]);
    for proof in [None, Some(Proof::MutualTls)] {
        let _ = verifier.verify(&Presentation { credential, peer, proof }, NOW);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let fixture = fixture();
    match mode % 4 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                verify(fixture, Presented::Jwt(token));
            }
        }
        1 => verify(fixture, Presented::Jwt(&signed(fixture, HEADER.as_bytes(), rest))),
        2 => {
            let (header, claims) = match rest.iter().position(|&b| b == 0) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            verify(fixture, Presented::Jwt(&signed(fixture, header, claims)));
        }
        _ => verify(fixture, Presented::X509(rest)),
    }
});

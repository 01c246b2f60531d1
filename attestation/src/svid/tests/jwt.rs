//! JWT-SVIDs: signature, encoding, time, audience, and a copy used without its key.

use super::*;

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

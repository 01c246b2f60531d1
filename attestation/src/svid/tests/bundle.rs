//! Trust bundles, key generations, and the checks one at a time.

use super::*;

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

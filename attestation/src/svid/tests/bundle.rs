//! Trust bundles, key generations, and the checks one at a time.

use super::*;

#[test]
fn a_spiffe_bundle_gives_its_authorities_keys_and_sequence() {
    let f = Fixture::new();
    // As the broker writes it, and as SPIFFE Trust Domain and Bundle's Appendix A shows one
    // (members the format does not define are ignored).
    let text = serde_json::to_value(f.document()).unwrap();
    assert_eq!(text["keys"][0]["use"], "x509-svid");
    assert!(text["keys"][0].get("kid").is_none(), "X509-SVID §6.1: an x509-svid key has no kid");
    assert_eq!(text["keys"][1]["use"], "jwt-svid");
    let mut extended = text.clone();
    extended["spiffe_extra"] = json!("ignored");
    let document: BundleDocument = serde_json::from_value(extended).unwrap();
    let bundle = TrustBundle::from_document("test.mooring", &document).unwrap();
    assert_eq!(bundle.x509_authorities().len(), 1);
    assert_eq!((bundle.sequence(), bundle.refresh_hint()), (Some(7), Some(300)));
    CheckedCredential::check(Presented::Jwt(&f.jwt(|_| {})), &bundle, NOW).unwrap();
    CheckedCredential::check(Presented::X509(&f.leaf(|_| {})), &bundle, NOW).unwrap();
    // The trust domain is the relying service's: credentials of another are refused.
    let other = TrustBundle::from_document("other.mooring", &document).unwrap();
    let refused = CheckedCredential::check(Presented::Jwt(&f.jwt(|_| {})), &other, NOW).unwrap_err();
    assert_eq!(refused.code().as_str(), "credential_malformed", "{refused}");
}

#[test]
fn a_key_of_another_use_is_left_out_and_trusts_nothing() {
    // SPIFFE Trust Domain and Bundle §4.2.2: keys of unknown uses are ignored, not refused.
    let f = Fixture::new();
    let mut document = f.document();
    for key in &mut document.keys {
        key.use_ = Some("wit-svid".into());
    }
    let bundle = TrustBundle::from_document("test.mooring", &document).unwrap();
    assert!(bundle.x509_authorities().is_empty());
    let refused =
        |credential| CheckedCredential::check(credential, &bundle, NOW).unwrap_err().code().as_str();
    let (token, leaf) = (f.jwt(|_| {}), f.leaf(|_| {}));
    assert_eq!(refused(Presented::Jwt(&token)), "unknown_signing_key");
    assert_eq!(refused(Presented::X509(&leaf)), "unknown_signing_key");
}

#[test]
fn spiffe_bundle_negatives() {
    let f = Fixture::new();
    let refused = |document: &BundleDocument, says: &str| {
        let err = TrustBundle::from_document("test.mooring", document).unwrap_err();
        assert_eq!(err.code().as_str(), "bundle_invalid", "{err}");
        assert!(err.to_string().contains(says), "{err:?} does not say {says:?}");
    };
    let edited = |edit: &dyn Fn(&mut BundleDocument)| {
        let mut document = f.document();
        edit(&mut document);
        document
    };
    let x5c = |cert: &[u8]| Some(vec![base64::engine::general_purpose::STANDARD.encode(cert)]);
    let ca_der = f.x509_key().x5c.unwrap().remove(0);

    refused(&edited(&|d| d.keys[0].x5c = None), "x509-svid key 0: x5c holds 0 certificates");
    refused(&edited(&|d| d.keys[0].x5c = Some(vec![ca_der.clone(), ca_der.clone()])), "x5c holds 2");
    refused(&edited(&|d| d.keys[0].x5c = Some(vec!["%%".into()])), "x5c is not base64");
    refused(&edited(&|d| d.keys[0].x5c = Some(vec!["AAAA".into()])), "x509-svid key 0: x5c: ");
    // A leaf in x5c, stated with its own key.
    let leaf = f.leaf(|_| {});
    refused(
        &edited(&|d| {
            d.keys[0] = Jwk { x5c: x5c(&leaf), ..Jwk::ec_p256(f.k.public_key().as_ref()) };
            d.keys[0].use_ = Some(X509_SVID_USE.into());
        }),
        "is not a CA certificate",
    );
    // Another CA's certificate under this CA's key.
    let other = Fixture::with_ca("Another CA");
    refused(&edited(&|d| d.keys[0].x5c = other.x509_key().x5c), "is not the key of its certificate");
    refused(&edited(&|d| d.keys[1].use_ = None), "key 1 has no use");
    refused(&edited(&|d| d.keys[1].kid = None), "JWT key 0 has no kid");
    refused(&edited(&|d| d.keys.push(d.keys[1].clone())), "two JWT keys have kid \"gen1\"");
    refused(&edited(&|d| d.keys[1].crv = "P-384".into()), "curve \"P-384\"");
    refused(&edited(&|d| d.keys[0].crv = "P-521".into()), "x509-svid key 0: curve \"P-521\"");
    refused(&edited(&|d| d.keys[1].x = "AA".into()), "not two base64url 32-byte coordinates");
    let rsa: Jwk = serde_json::from_value(
        json!({"kty": "RSA", "use": "jwt-svid", "kid": "r1", "n": "AQAB", "e": "AQAB"}),
    )
    .unwrap();
    refused(&edited(&|d| d.keys[1] = rsa.clone()), "key type \"RSA\"");
    refused(
        &edited(&|d| d.keys.extend(std::iter::repeat_n(d.keys[0].clone(), MAX_BUNDLE_KEYS))),
        "66 keys; at most 64",
    );
    refused(&edited(&|d| d.spiffe_sequence = None), "no spiffe_sequence");
    let err = TrustBundle::from_document("", &f.document()).unwrap_err();
    assert_eq!(err.code().as_str(), "bundle_invalid");
    assert_eq!(
        TrustBundle::from_document("a/b", &f.document()).unwrap_err().code().as_str(),
        "bundle_invalid"
    );
    // The document shape itself: `keys` is required (RFC 7517 §5).
    assert!(serde_json::from_value::<BundleDocument>(json!({"spiffe_sequence": 1})).is_err());
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

//! Exchanged tokens: signature, issuer, time, subject, audience, each flipped on its own,
//! and neither an exchanged token nor a JWT-SVID passing for the other.

use super::*;

const ISSUER: &str = "https://id.test.mooring";
const DOWNSTREAM: &str = "sts.amazonaws.com";

fn claims() -> Value {
    json!({
        "iss": ISSUER, "sub": SPIFFE_ID, "aud": DOWNSTREAM, "exp": NOW + 300, "iat": NOW,
        "jti": "7f00", "class": "web", "svid_serial": "0a1b", "scope": "read",
    })
}

fn exchanged(f: &Fixture, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = claims();
    edit(&mut claims);
    f.jwt_with(&json!({"alg": "ES256", "kid": "gen1", "typ": "JWT"}), &claims)
}

fn check(f: &Fixture, token: &str) -> Result<ExchangedToken, SvidError> {
    ExchangedToken::check(token, &f.bundle(), ISSUER, DOWNSTREAM, NOW)
}

fn code(result: Result<ExchangedToken, SvidError>) -> &'static str {
    let err = result.expect_err("must be refused");
    assert!(!err.to_string().is_empty());
    err.code().as_str()
}

#[test]
fn an_exchanged_token_checks_out_and_names_its_credential() {
    let f = Fixture::new();
    let token = check(&f, &exchanged(&f, |_| {})).unwrap();
    assert_eq!(token.spiffe_id(), SPIFFE_ID);
    assert_eq!(token.svid_serial(), "0a1b");
    assert_eq!(token.token_id(), "7f00");
    assert_eq!(token.class(), "web");
    assert_eq!(token.expires_at(), NOW + 300);
    // No scope is no scope claim at all.
    check(&f, &exchanged(&f, |c| drop(c.as_object_mut().unwrap().remove("scope")))).unwrap();
}

#[test]
fn exchanged_token_negatives() {
    let f = Fixture::new();
    let good = exchanged(&f, |_| {});
    let parts: Vec<&str> = good.split('.').collect();
    // Another audience written under the original signature.
    let mut forged = claims();
    forged["aud"] = "vault".into();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged.to_string()), parts[2]);
    assert_eq!(code(check(&f, &forged)), "bad_signature");
    // Another broker's key under the same kid.
    assert_eq!(code(check(&f, &exchanged(&Fixture::new(), |_| {}))), "bad_signature");
    // Another issuer; expired; issued in the future; another trust domain; another audience.
    assert_eq!(
        code(check(&f, &exchanged(&f, |c| c["iss"] = "https://elsewhere".into()))),
        "credential_malformed"
    );
    assert_eq!(code(check(&f, &exchanged(&f, |c| c["exp"] = NOW.into()))), "expired");
    assert_eq!(code(check(&f, &exchanged(&f, |c| c["iat"] = (NOW + 3600).into()))), "expired");
    let foreign = exchanged(&f, |c| c["sub"] = "spiffe://evil.example/vm/web/ab".into());
    assert_eq!(code(check(&f, &foreign)), "credential_malformed");
    assert_eq!(code(check(&f, &exchanged(&f, |c| c["aud"] = "vault".into()))), "wrong_audience");
    // A link to no credential is no exchanged token.
    let unlinked = exchanged(&f, |c| drop(c.as_object_mut().unwrap().remove("svid_serial")));
    assert_eq!(code(check(&f, &unlinked)), "credential_malformed");
}

#[test]
fn a_jwt_svid_and_an_exchanged_token_never_pass_for_each_other() {
    let f = Fixture::new();
    // A JWT-SVID (here even with an `iss` and the downstream audience) is not an exchanged token.
    let svid = f.jwt(|c| {
        c["iss"] = ISSUER.into();
        c["aud"] = DOWNSTREAM.into();
    });
    assert_eq!(code(check(&f, &svid)), "credential_malformed");
    // An exchanged token is not a JWT-SVID, even for the JWT-SVID audience.
    let token = exchanged(&f, |c| c["aud"] = AUDIENCE.into());
    assert_eq!(code_of(check_jwt(&f, &token, bound(), signed(&f.proof()))), "credential_malformed");
}

//! X.509-SVIDs over mutual TLS.

use super::*;

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

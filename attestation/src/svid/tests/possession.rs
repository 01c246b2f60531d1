//! Proofs of possession of K: the statement, its header, the request digest.

use super::*;

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

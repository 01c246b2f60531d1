//! Revocation lists: what they name, their age, their codes.

use super::*;
use crate::protocol::RevocationTarget;

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

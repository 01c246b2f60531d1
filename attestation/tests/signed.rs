//! Each check on AK-signed structures, broken alone on an otherwise valid, correctly
//! signed structure built in software.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mooring_attestation::crypto::CryptoError;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::{Ak, Signature, SignedAttestError};
use mooring_attestation::tpm::certify::{verify_certify, CertifyError, NON_EXPORTABLE_SIGNING_KEY};
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::public::ObjectAttributes;
use mooring_attestation::tpm::quote::{verify_quote, QuoteError, QuoteExpectation};
use mooring_attestation::tpm::sim::{self, SoftKey};

const NONCE: &[u8] = b"0123456789abcdef0123456789abcdef";

fn pcrs() -> (PcrSelection, PcrValues) {
    let selection = PcrSelection::single(HashAlg::Sha256, &[0, 7]).unwrap();
    let mut values = PcrValues::new();
    values.insert(HashAlg::Sha256, 0, vec![1; 32]).unwrap();
    values.insert(HashAlg::Sha256, 7, vec![7; 32]).unwrap();
    (selection, values)
}

fn quote_with(ak: &SoftKey, fields: &sim::AttestFields) -> Result<(), QuoteError> {
    let (selection, values) = pcrs();
    let digest = values.digest(&selection, HashAlg::Sha256).unwrap();
    let attest = fields.quote(&selection, &digest);
    let signature = Signature::parse(&ak.sign(&attest)).unwrap();
    let expected = QuoteExpectation { qualifying_data: NONCE, selection: &selection };
    verify_quote(Ak::Tpm(ak.public()), &attest, &signature, &values, &expected).map(|_| ())
}

#[test]
fn well_formed_software_quote_verifies() {
    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    quote_with(&ak, &sim::quote_fields(NONCE)).unwrap();
}

#[test]
fn wrong_magic_is_refused_even_when_signed() {
    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    let mut fields = sim::quote_fields(NONCE);
    fields.magic = 0xff54_4348;
    let err = quote_with(&ak, &fields).unwrap_err();
    assert_eq!(err, QuoteError::Signed(SignedAttestError::BadMagic(0xff54_4348)));
}

#[test]
fn certify_structure_is_not_a_quote() {
    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    let (selection, values) = pcrs();
    let attest = sim::certify_fields(NONCE).certify(&ak.public().name());
    let signature = Signature::parse(&ak.sign(&attest)).unwrap();
    let expected = QuoteExpectation { qualifying_data: NONCE, selection: &selection };
    let err = verify_quote(Ak::Tpm(ak.public()), &attest, &signature, &values, &expected).unwrap_err();
    assert_eq!(err, QuoteError::NotAQuote(0x8017));
}

#[test]
fn padded_or_truncated_nonce_is_refused() {
    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    let mut padded = NONCE.to_vec();
    padded.push(0);
    assert!(matches!(quote_with(&ak, &sim::quote_fields(&padded)), Err(QuoteError::QualifyingData { .. })));
    assert!(matches!(
        quote_with(&ak, &sim::quote_fields(&NONCE[..31])),
        Err(QuoteError::QualifyingData { .. })
    ));
}

#[test]
fn ak_that_can_decrypt_or_is_unrestricted_is_refused() {
    let decrypting = SoftKey::new(sim::AK_ATTRIBUTES | ObjectAttributes::DECRYPT);
    assert_eq!(
        quote_with(&decrypting, &sim::quote_fields(NONCE)).unwrap_err(),
        QuoteError::Signed(SignedAttestError::AkDecrypts)
    );
    let unrestricted = SoftKey::new(sim::AK_ATTRIBUTES & !ObjectAttributes::RESTRICTED);
    assert!(matches!(
        quote_with(&unrestricted, &sim::quote_fields(NONCE)).unwrap_err(),
        QuoteError::Signed(SignedAttestError::AkAttributes { .. })
    ));
}

#[test]
fn empty_selection_is_refused() {
    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    let empty = PcrSelection::new();
    let attest = sim::quote_fields(NONCE).quote(&empty, &HashAlg::Sha256.digest(&[]));
    let signature = Signature::parse(&ak.sign(&attest)).unwrap();
    let expected = QuoteExpectation { qualifying_data: NONCE, selection: &empty };
    let err =
        verify_quote(Ak::Tpm(ak.public()), &attest, &signature, &PcrValues::new(), &expected).unwrap_err();
    assert!(matches!(err, QuoteError::Selection { .. }));
}

fn certify(ak: &SoftKey, key: &SoftKey, name: &[u8], extra: &[u8]) -> Result<(), CertifyError> {
    let attest = sim::certify_fields(extra).certify(name);
    let signature = Signature::parse(&ak.sign(&attest)).unwrap();
    verify_certify(
        Ak::Tpm(ak.public()),
        key.public(),
        &attest,
        &signature,
        Some(NONCE),
        NON_EXPORTABLE_SIGNING_KEY,
    )
    .map(|_| ())
}

const K_ATTRIBUTES: u32 = NON_EXPORTABLE_SIGNING_KEY | ObjectAttributes::USER_WITH_AUTH;

#[test]
fn certify_checks_each_property() {
    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    let k = SoftKey::new(K_ATTRIBUTES);
    certify(&ak, &k, &k.public().name(), NONCE).unwrap();

    let other = SoftKey::new(K_ATTRIBUTES);
    assert!(matches!(
        certify(&ak, &k, &other.public().name(), NONCE),
        Err(CertifyError::NameMismatch { .. })
    ));
    assert!(matches!(
        certify(&ak, &k, &k.public().name(), b"stale"),
        Err(CertifyError::QualifyingData { .. })
    ));

    let exportable = SoftKey::new(K_ATTRIBUTES & !ObjectAttributes::FIXED_TPM);
    match certify(&ak, &exportable, &exportable.public().name(), NONCE) {
        Err(CertifyError::KeyAttributes { missing }) => assert_eq!(missing, vec!["fixedTPM"]),
        other => panic!("{other:?}"),
    }

    let attest = sim::certify_fields(NONCE).certify(&k.public().name());
    let forged = Signature::parse(&other.sign(&attest)).unwrap();
    assert!(matches!(
        verify_certify(
            Ak::Tpm(ak.public()),
            k.public(),
            &attest,
            &forged,
            Some(NONCE),
            NON_EXPORTABLE_SIGNING_KEY
        ),
        Err(CertifyError::Signed(SignedAttestError::Signature(_)))
    ));

    let quote = sim::quote_fields(NONCE).quote(&pcrs().0, &[0; 32]);
    let signature = Signature::parse(&ak.sign(&quote)).unwrap();
    assert_eq!(
        verify_certify(
            Ak::Tpm(ak.public()),
            k.public(),
            &quote,
            &signature,
            Some(NONCE),
            NON_EXPORTABLE_SIGNING_KEY
        )
        .unwrap_err(),
        CertifyError::NotACertify(0x8018)
    );
}

#[test]
fn signature_of_another_scheme_than_the_ak_fixes_is_refused() {
    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    let (selection, values) = pcrs();
    let attest =
        sim::quote_fields(NONCE).quote(&selection, &values.digest(&selection, HashAlg::Sha256).unwrap());
    // An RSASSA signature block presented for the ECDSA-only AK.
    let rsa_sig = mooring_testdata::testdata("tpm/quotes/sim-keylime/quotesig.out");
    let signature = Signature::parse(&rsa_sig).unwrap();
    let expected = QuoteExpectation { qualifying_data: NONCE, selection: &selection };
    let err = verify_quote(Ak::Tpm(ak.public()), &attest, &signature, &values, &expected).unwrap_err();
    assert!(
        matches!(
            err,
            QuoteError::Signed(SignedAttestError::Signature(CryptoError::SchemeKeyMismatch { .. }))
        ),
        "{err}"
    );
}

//! Real quotes from `../shared/testdata/tpm/quotes` verify, and each fails when exactly
//! one of nonce, a quoted byte, the signature, a PCR value or the AK changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mooring_attestation::codec::Reader;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::{Ak, Attest, Attested, Signature, SignedAttestError};
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::public::Public;
use mooring_attestation::tpm::quote::{verify_quote, QuoteError, QuoteExpectation};
use mooring_testdata::testdata;

struct Vector {
    label: String,
    ak: Public,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: PcrValues,
    nonce: Vec<u8>,
}

impl Vector {
    fn selection(&self) -> PcrSelection {
        match Attest::parse(&self.attest).unwrap().attested() {
            Attested::Quote { selection, .. } => selection.clone(),
            other => panic!("{}: not a quote: {other:?}", self.label),
        }
    }

    fn verify(
        &self,
        ak: &Public,
        attest: &[u8],
        sig: &[u8],
        pcrs: &PcrValues,
        nonce: &[u8],
    ) -> Result<(), QuoteError> {
        let selection = self.selection();
        let signature = Signature::parse(sig).map_err(|e| QuoteError::Signed(e.into()))?;
        let expected = QuoteExpectation { qualifying_data: nonce, selection: &selection };
        verify_quote(Ak::Tpm(ak), attest, &signature, pcrs, &expected).map(|_| ())
    }
}

fn all_vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    for (dir, nonce) in [("nonce9009", vec![0x90, 0x09]), ("no-nonce", vec![])] {
        let base = format!("tpm/quotes/gce-cos85-vtpm/{dir}");
        let ak = Public::from_tpmt(&testdata("tpm/quotes/gce-cos85-vtpm/nonce9009/ak_pub.tpmt_public.bin"))
            .unwrap();
        let pcrs = PcrValues::from_json(&String::from_utf8(testdata(&format!("{base}/pcrs.json"))).unwrap())
            .unwrap();
        for bank in ["sha1", "sha256", "sha384"] {
            out.push(Vector {
                label: format!("gce-cos85 {dir} {bank}"),
                ak: ak.clone(),
                attest: testdata(&format!("{base}/quote_{bank}.attest.bin")),
                signature: testdata(&format!("{base}/quote_{bank}.sig.tpmt_signature.bin")),
                pcrs: pcrs.clone(),
                nonce: nonce.clone(),
            });
        }
    }
    let win = "tpm/quotes/gce-windows-vtpm";
    out.push(Vector {
        label: "gce-windows".into(),
        ak: Public::from_tpmt(&testdata(&format!("{win}/ak_pub.tpmt_public.bin"))).unwrap(),
        attest: testdata(&format!("{win}/quote.attest.bin")),
        signature: testdata(&format!("{win}/quote.sig.tpmt_signature.bin")),
        pcrs: PcrValues::from_json(&String::from_utf8(testdata(&format!("{win}/pcrs.json"))).unwrap())
            .unwrap(),
        nonce: vec![],
    });
    let sim = "tpm/quotes/sim-keylime";
    let attest = testdata(&format!("{sim}/quote.out"));
    let selection = match Attest::parse(&attest).unwrap().attested() {
        Attested::Quote { selection, .. } => selection.clone(),
        _ => unreachable!(),
    };
    out.push(Vector {
        label: "sim-keylime".into(),
        ak: Public::from_tpm2b(&testdata(&format!("{sim}/ak.pub"))).unwrap(),
        attest,
        signature: testdata(&format!("{sim}/quotesig.out")),
        pcrs: PcrValues::from_tpm2_tools(&testdata(&format!("{sim}/quotepcr.out")), &selection).unwrap(),
        nonce: hex::decode("db1db298db6d60e6385b7231743e9c3056a18003").unwrap(),
    });
    out
}

#[test]
fn every_real_quote_verifies() {
    let vectors = all_vectors();
    assert_eq!(vectors.len(), 8);
    for v in &vectors {
        v.verify(&v.ak, &v.attest, &v.signature, &v.pcrs, &v.nonce)
            .unwrap_or_else(|e| panic!("{}: {e}", v.label));
    }
}

#[test]
fn changed_nonce_fails_with_qualifying_data_error() {
    for v in all_vectors() {
        let mut nonce = v.nonce.clone();
        nonce.push(0);
        let err = v.verify(&v.ak, &v.attest, &v.signature, &v.pcrs, &nonce).unwrap_err();
        assert!(matches!(err, QuoteError::QualifyingData { .. }), "{}: {err}", v.label);
        if !v.nonce.is_empty() {
            let truncated = &v.nonce[..v.nonce.len() - 1];
            let err = v.verify(&v.ak, &v.attest, &v.signature, &v.pcrs, truncated).unwrap_err();
            assert!(matches!(err, QuoteError::QualifyingData { .. }), "{}: {err}", v.label);
        }
    }
}

#[test]
fn any_flipped_quoted_byte_fails() {
    for v in all_vectors() {
        for i in 0..v.attest.len() {
            let mut attest = v.attest.clone();
            attest[i] ^= 0x01;
            let result = v.verify(&v.ak, &attest, &v.signature, &v.pcrs, &v.nonce);
            assert!(result.is_err(), "{}: flipping byte {i} still verifies", v.label);
        }
    }
}

#[test]
fn flipped_signature_fails_with_signature_error() {
    for v in all_vectors() {
        let mut sig = v.signature.clone();
        let last = sig.len() - 1;
        sig[last] ^= 0x80;
        let err = v.verify(&v.ak, &v.attest, &sig, &v.pcrs, &v.nonce).unwrap_err();
        assert!(matches!(err, QuoteError::Signed(SignedAttestError::Signature(_))), "{}: {err}", v.label);
    }
}

#[test]
fn changed_pcr_value_fails_with_digest_error() {
    for v in all_vectors() {
        let (bank, list) = v.selection().iter().next().unwrap();
        let index = list[list.len() / 2];
        let mut pcrs = v.pcrs.clone();
        let mut value = pcrs.get(bank, index).unwrap().to_vec();
        value[0] ^= 1;
        pcrs.insert(bank, index, value).unwrap();
        let err = v.verify(&v.ak, &v.attest, &v.signature, &pcrs, &v.nonce).unwrap_err();
        assert!(matches!(err, QuoteError::PcrDigest { .. }), "{}: {err}", v.label);
    }
}

#[test]
fn other_ak_fails_with_signature_error() {
    let vectors = all_vectors();
    let other = Public::from_tpm2b(&testdata("tpm/quotes/sim-keylime/ak.pub")).unwrap();
    for v in vectors.iter().filter(|v| v.label != "sim-keylime") {
        let err = v.verify(&other, &v.attest, &v.signature, &v.pcrs, &v.nonce).unwrap_err();
        assert!(matches!(err, QuoteError::Signed(SignedAttestError::Signature(_))), "{}: {err}", v.label);
    }
}

#[test]
fn selection_must_equal_the_required_one() {
    let v = &all_vectors()[1];
    let signature = Signature::parse(&v.signature).unwrap();
    let required = PcrSelection::single(HashAlg::Sha256, &(0..10).collect::<Vec<u8>>()).unwrap();
    let expected = QuoteExpectation { qualifying_data: &v.nonce, selection: &required };
    let err = verify_quote(Ak::Tpm(&v.ak), &v.attest, &signature, &v.pcrs, &expected).unwrap_err();
    assert!(matches!(err, QuoteError::Selection { .. }), "{err}");
    assert!(err.to_string().contains("policy requires sha256:0,1,2,3,4,5,6,7,8,9"), "{err}");
}

#[test]
fn ak_without_restricted_or_fixed_tpm_is_refused() {
    let v = &all_vectors()[1];
    // objectAttributes sit after type (2) and nameAlg (2) in TPMT_PUBLIC.
    for (bit, name) in
        [(16u32, "restricted"), (1, "fixedTPM"), (4, "fixedParent"), (5, "sensitiveDataOrigin")]
    {
        let mut tpmt = v.ak.tpmt_bytes().to_vec();
        let mut attrs = u32::from_be_bytes(tpmt[4..8].try_into().unwrap());
        attrs &= !(1 << bit);
        tpmt[4..8].copy_from_slice(&attrs.to_be_bytes());
        let ak = Public::from_tpmt(&tpmt).unwrap();
        let err = v.verify(&ak, &v.attest, &v.signature, &v.pcrs, &v.nonce).unwrap_err();
        match err {
            QuoteError::Signed(SignedAttestError::AkAttributes { missing }) => {
                assert_eq!(missing, vec![name])
            }
            other => panic!("{name}: {other}"),
        }
    }
}

#[test]
fn pcr_file_round_trip_matches_json() {
    let sim = "tpm/quotes/sim-keylime";
    let selection = PcrSelection::read(&mut Reader::new(&[0, 0, 0, 1, 0, 0x0b, 3, 0, 0x80, 0x41])).unwrap();
    let pcrs = PcrValues::from_tpm2_tools(&testdata(&format!("{sim}/quotepcr.out")), &selection).unwrap();
    assert_eq!(pcrs.bank(HashAlg::Sha256).map(|(i, _)| i).collect::<Vec<_>>(), vec![15, 16, 22]);
    let values: Vec<u8> = pcrs.bank(HashAlg::Sha256).flat_map(|(_, v)| v.to_vec()).collect();
    assert_eq!(PcrValues::from_tpm2_tools(&values, &selection).unwrap(), pcrs);
    assert!(PcrValues::from_tpm2_tools(&values[1..], &selection).is_err());
}

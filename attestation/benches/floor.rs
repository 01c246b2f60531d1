//! The crypto floor of one TPM attestation, operation by operation and all together, as
//! the broker does it with an ECC P-256 EK (what `mooring-load` simulates): EK
//! certificate chain with the issuer path cached, MakeCredential, quote and certify
//! checks, event-log replay against the quote, and the two credential signatures
//! (X.509-SVID and JWT-SVID, ECDSA P-256). Also the VM side's software
//! ActivateCredential, which the load generator pays per attestation.
//!
//! `cargo bench -p mooring-attestation --bench floor`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::SystemTime;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING};
use criterion::{criterion_group, criterion_main, Criterion};
use mooring_attestation::protocol::tpm_qualifying_data;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::{Ak, Signature};
use mooring_attestation::tpm::certify::{verify_certify, NON_EXPORTABLE_SIGNING_KEY};
use mooring_attestation::tpm::credential::make_credential;
use mooring_attestation::tpm::ekcert::verify_ek_certificate;
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::public::{ObjectAttributes, Public};
use mooring_attestation::tpm::quote::{verify_quote, QuoteExpectation};
use mooring_attestation::tpm::sim::activate::SoftEk;
use mooring_attestation::tpm::sim::{self, SoftKey};
use mooring_attestation::x509::{Certificate, TrustStore};
use mooring_testdata::testdata;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, PublicKeyData,
    SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};

struct Point(Vec<u8>);

impl PublicKeyData for Point {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// Everything one attestation presents, built in software.
struct Evidence {
    store: TrustStore,
    ek_cert: Vec<u8>,
    ek: SoftEk,
    ek_public: Public,
    ak: SoftKey,
    key: SoftKey,
    log: Vec<u8>,
    indices: Vec<u8>,
    selection: PcrSelection,
    pcrs: PcrValues,
    qualifying: Vec<u8>,
    quote: Vec<u8>,
    quote_signature: Vec<u8>,
    certify: Vec<u8>,
    certify_signature: Vec<u8>,
}

fn evidence() -> Evidence {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params.distinguished_name.push(DnType::CommonName, "bench EK CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let store = TrustStore::builder().anchors([Certificate::from_der(ca.der()).unwrap()]).build();

    let ek = SoftEk::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name = DistinguishedName::new();
    let point = ek.public().key().sec1_uncompressed().unwrap();
    let ek_cert = leaf.signed_by(&Point(point), &issuer).unwrap().der().to_vec();
    let ek_public = Public::from_tpm2b(&ek.tpm2b_public()).unwrap();

    let ak = SoftKey::new(sim::AK_ATTRIBUTES);
    let key = SoftKey::new(NON_EXPORTABLE_SIGNING_KEY | ObjectAttributes::USER_WITH_AUTH);
    let log = testdata("tpm/eventlogs/go-tpm-tools/ubuntu-2404-amd-sevsnp.bin");
    let replayed = EventLog::parse(&log).unwrap().replay();
    let indices: Vec<u8> = (0..=9).filter(|i| replayed.get(HashAlg::Sha256, *i).is_some()).collect();
    let selection = PcrSelection::single(HashAlg::Sha256, &indices).unwrap();
    let mut pcrs = PcrValues::new();
    for &i in &indices {
        pcrs.insert(HashAlg::Sha256, i, replayed.get(HashAlg::Sha256, i).unwrap().to_vec()).unwrap();
    }
    let qualifying = tpm_qualifying_data(&[7; 32], &key.tpm2b_public());
    let quote =
        sim::quote_fields(&qualifying).quote(&selection, &pcrs.digest(&selection, HashAlg::Sha256).unwrap());
    let quote_signature = ak.sign(&quote);
    let certify = sim::certify_fields(&[]).certify(&key.public().name());
    let certify_signature = ak.sign(&certify);
    Evidence {
        store,
        ek_cert,
        ek,
        ek_public,
        ak,
        key,
        log,
        indices,
        selection,
        pcrs,
        qualifying,
        quote,
        quote_signature,
        certify,
        certify_signature,
    }
}

impl Evidence {
    fn ek_chain(&self) {
        let verified = verify_ek_certificate(&self.ek_cert, &[], &self.store, SystemTime::now()).unwrap();
        verified.matches_public_key(self.ek_public.key()).unwrap();
    }

    fn make_credential(&self, rng: &SystemRandom) {
        make_credential(&self.ek_public, &self.ak.public().name(), &[1; 32], rng).unwrap();
    }

    fn quote(&self) {
        let signature = Signature::parse(&self.quote_signature).unwrap();
        let expected = QuoteExpectation { qualifying_data: &self.qualifying, selection: &self.selection };
        verify_quote(Ak::Tpm(self.ak.public()), &self.quote, &signature, &self.pcrs, &expected).unwrap();
    }

    fn certify(&self) {
        let signature = Signature::parse(&self.certify_signature).unwrap();
        verify_certify(
            Ak::Tpm(self.ak.public()),
            self.key.public(),
            &self.certify,
            &signature,
            None,
            NON_EXPORTABLE_SIGNING_KEY,
        )
        .unwrap();
    }

    fn event_log(&self) {
        EventLog::parse(&self.log)
            .unwrap()
            .check_against(&self.pcrs, HashAlg::Sha256, &self.indices)
            .unwrap();
    }
}

/// The two credential signatures, over inputs the size of an X.509-SVID's TBSCertificate
/// and a JWT-SVID's signing input.
struct Signer {
    x509: EcdsaKeyPair,
    jwt: EcdsaKeyPair,
    tbs: Vec<u8>,
    input: Vec<u8>,
}

impl Signer {
    fn new(rng: &SystemRandom) -> Self {
        let key = |alg| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng).unwrap();
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap()
        };
        Self {
            x509: key(&ECDSA_P256_SHA256_ASN1_SIGNING),
            jwt: key(&ECDSA_P256_SHA256_FIXED_SIGNING),
            tbs: vec![0x30; 640],
            input: vec![b'e'; 480],
        }
    }

    fn sign(&self, rng: &SystemRandom) {
        self.x509.sign(rng, &self.tbs).unwrap();
        self.jwt.sign(rng, &self.input).unwrap();
    }
}

fn floor(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let evidence = evidence();
    let signer = Signer::new(&rng);
    evidence.ek_chain(); // caches the issuer path
    c.bench_function("ek_chain_p256_cached_path", |b| b.iter(|| evidence.ek_chain()));
    c.bench_function("make_credential_ecc_p256", |b| b.iter(|| evidence.make_credential(&rng)));
    c.bench_function("quote_verify_p256_event_log_pcrs", |b| b.iter(|| evidence.quote()));
    c.bench_function("certify_verify_p256", |b| b.iter(|| evidence.certify()));
    c.bench_function("eventlog_parse_check_against_quote", |b| b.iter(|| evidence.event_log()));
    c.bench_function("credential_signatures_x509_and_jwt_p256", |b| b.iter(|| signer.sign(&rng)));
    c.bench_function("tpm_attestation_crypto_floor", |b| {
        b.iter(|| {
            evidence.ek_chain();
            evidence.make_credential(&rng);
            evidence.quote();
            evidence.certify();
            evidence.event_log();
            signer.sign(&rng);
        })
    });
}

fn activation(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let evidence = evidence();
    let name = evidence.ak.public().name();
    let made = make_credential(&evidence.ek_public, &name, &[1; 32], &rng).unwrap();
    c.bench_function("activate_credential_soft_ecc_p256", |b| {
        b.iter(|| evidence.ek.activate_credential(&name, made.id_object(), made.encrypted_secret()).unwrap())
    });
}

criterion_group!(benches, floor, activation);
criterion_main!(benches);

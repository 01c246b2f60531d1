//! A confidential VM on the SEV-SNP path, without hardware: the test signer is its
//! platform (its chain configured in the broker as a test root), K is a P-256 key in
//! memory, and secrets are sealed to an X25519 key. For test bodies: everything here
//! panics on failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use mooring_attestation::crypto::PublicKey;
use mooring_attestation::protocol::{
    snp_report_data, IssuedCredentials, PossessionStatement, SnpChallenge, SnpFinishRequest,
};
use mooring_attestation::seal::SealingKeyPair;
use mooring_attestation::snp::sim::{ReportFields, TestSigner};
use mooring_attestation::svid::PossessionProof;
use mooring_attestation::tpm::alg::EccCurve;
use serde_json::json;

use crate::broker::{loopback, Broker, BrokerSetup};

/// The launch measurement a good guest reports.
pub const MEASUREMENT: [u8; 48] = [0x5a; 48];

/// A confidential VM: its platform (the test signer), K and the sealing key.
#[derive(Debug)]
pub struct Cvm {
    pub signer: TestSigner,
    pub key: EcdsaKeyPair,
    /// K as PKCS#8 (for a TLS client identity).
    pkcs8: Vec<u8>,
    pub key_spki: Vec<u8>,
    pub sealing: SealingKeyPair,
}

impl Cvm {
    pub fn new(signer: TestSigner) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let point = key.public_key().as_ref();
        let key_spki = PublicKey::ecc(EccCurve::NistP256, &point[1..33], &point[33..]).unwrap().to_spki_der();
        Self {
            signer,
            key,
            pkcs8: pkcs8.as_ref().to_vec(),
            key_spki,
            sealing: SealingKeyPair::generate().unwrap(),
        }
    }

    /// Report fields a good guest produces for this challenge.
    pub fn fields(&self, challenge: &SnpChallenge) -> ReportFields {
        let mut fields = self.signer.report_fields();
        fields.measurement = MEASUREMENT;
        fields.report_data =
            snp_report_data(&challenge.nonce, &self.key_spki, self.sealing.public_key_bytes());
        fields
    }

    pub fn finish_request(&self, challenge: &SnpChallenge, fields: &ReportFields) -> SnpFinishRequest {
        SnpFinishRequest {
            challenge_id: challenge.challenge_id.clone(),
            report: self.signer.sign(fields),
            certificate_table: Some(self.signer.cert_table()),
            key_spki: self.key_spki.clone(),
            sealing_key: self.sealing.public_key_bytes().to_vec(),
        }
    }

    /// `begin` and `finish` from 127.0.0.`source`: the VM's credentials.
    pub fn attest(&self, broker: &Broker, source: u8) -> IssuedCredentials {
        let client = broker.client(loopback(source));
        let challenge = begin(broker, &client);
        let request = self.finish_request(&challenge, &self.fields(&challenge));
        let (status, body) = broker.post(&client, "snp/finish", &request);
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// A possession statement for `audience` and `request`, made at `now`, and K's
    /// signature over its bytes.
    pub fn sign_statement(&self, audience: &str, request: &str, now: i64) -> (Vec<u8>, Vec<u8>) {
        let statement = serde_json::to_vec(&PossessionStatement {
            purpose: PossessionStatement::PURPOSE.into(),
            audience: audience.into(),
            issued_at: now,
            request: request.into(),
        })
        .unwrap();
        let signature = self.key.sign(&SystemRandom::new(), &statement).unwrap();
        (statement, signature.as_ref().to_vec())
    }

    /// The same, as a `mooring-possession` header value.
    pub fn possession_header(&self, audience: &str, request: &str, now: i64) -> String {
        let (statement, signature) = self.sign_statement(audience, request, now);
        PossessionProof::new(statement, signature).to_header()
    }

    /// K's private key (PKCS#8 PEM), as the client keeps it in its runtime directory.
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// A TLS client identity: the X.509-SVID chain (PEM) and K.
    pub fn tls_identity(&self, x509_svid: &str) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{x509_svid}{}", self.key_pem()).as_bytes()).unwrap()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A broker configuration trusting `signer`'s chain as a test root (files `ark.der`,
/// `ask.der`, `asvk.der` beside the policy).
pub fn snp_broker_setup(signer: &TestSigner, policy: String) -> BrokerSetup {
    let product = signer.product().name().to_ascii_lowercase();
    BrokerSetup {
        policy,
        extra_config: format!(
            "[[snp.test_roots]]\nproduct = \"{product}\"\nark = \"ark.der\"\nask = \"ask.der\"\nasvk = \"asvk.der\"\n"
        ),
        secrets: vec![
            ("ark.der".into(), signer.ark_der().to_vec()),
            ("ask.der".into(), signer.ask_der().to_vec()),
            ("asvk.der".into(), signer.asvk_der().to_vec()),
        ],
        ..BrokerSetup::default()
    }
}

/// `POST /v1/snp/begin`.
pub fn begin(broker: &Broker, client: &reqwest::blocking::Client) -> SnpChallenge {
    let (status, body) = broker.post(client, "snp/begin", &json!({}));
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// Unix time now.
pub fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs())
        .unwrap()
}

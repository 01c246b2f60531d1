//! Simulated SEV-SNP guests: hosts are test signers (each its own ARK/ASK/VCEK chain,
//! configured in the broker as a test root), many guests per host, each with its own
//! credential key K and sealing key, and a report signed per challenge.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use mooring_attestation::crypto::PublicKey;
use mooring_attestation::protocol::{snp_report_data, SnpChallenge, SnpFinishRequest};
use mooring_attestation::seal::SealingKeyPair;
use mooring_attestation::snp::sim::TestSigner;
use mooring_attestation::snp::Product;
use mooring_attestation::tpm::alg::EccCurve;

/// Most hosts: the verifier picks a test root by the certificate's issuer name and the
/// report's product, and every test signer's ASK has the same name, so two test roots of
/// one product cannot be told apart. One Milan and one Genoa host can.
pub(crate) const MAX_HOSTS: usize = 2;

/// One host: its platform signer and the certificate table it hands its guests.
#[derive(Debug)]
pub(crate) struct SnpHost {
    signer: TestSigner,
    cert_table: Vec<u8>,
}

impl SnpHost {
    /// A fresh test platform of host number `n`'s product (see [`MAX_HOSTS`]).
    pub(crate) fn generate(n: usize) -> Self {
        let product = if n % MAX_HOSTS == 0 { Product::Milan } else { Product::Genoa };
        let signer = TestSigner::generate_for(product);
        let cert_table = signer.cert_table();
        Self { signer, cert_table }
    }

    /// The signer (its chain goes into the broker configuration).
    pub(crate) fn signer(&self) -> &TestSigner {
        &self.signer
    }

    /// The launch measurement its guests report.
    pub(crate) fn measurement(&self) -> [u8; 48] {
        self.signer.report_fields().measurement
    }
}

/// One guest: which host it runs on, K and its sealing key (public parts).
#[derive(Debug)]
pub(crate) struct SnpVm {
    host: usize,
    key_spki: Vec<u8>,
    sealing_key: Vec<u8>,
}

impl SnpVm {
    /// A guest on host number `host`.
    pub(crate) fn new(host: usize) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("generating K"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .map_err(|e| anyhow::anyhow!("K: {e}"))?;
        let point = key.public_key().as_ref();
        let coordinates = point.get(1..).ok_or_else(|| anyhow::anyhow!("K: empty public point"))?;
        let (x, y) = coordinates.split_at(coordinates.len() / 2);
        let key_spki = PublicKey::ecc(EccCurve::NistP256, x, y)?.to_spki_der();
        let sealing = SealingKeyPair::generate()?;
        Ok(Self { host, key_spki, sealing_key: sealing.public_key_bytes().to_vec() })
    }

    /// The host number.
    pub(crate) fn host(&self) -> usize {
        self.host
    }

    /// The `finish` request: a report binding the nonce, K and the sealing key.
    pub(crate) fn finish(&self, host: &SnpHost, challenge: &SnpChallenge) -> SnpFinishRequest {
        let mut fields = host.signer.report_fields();
        fields.report_data = snp_report_data(&challenge.nonce, &self.key_spki, &self.sealing_key);
        SnpFinishRequest {
            challenge_id: challenge.challenge_id.clone(),
            report: host.signer.sign(&fields),
            certificate_table: Some(host.cert_table.clone()),
            key_spki: self.key_spki.clone(),
            sealing_key: self.sealing_key.clone(),
        }
    }
}

//! The fleet's TPM manufacturer: a test EK CA (ECDSA P-256) that certifies each simulated
//! VM's EK. The broker trusts it as `[tpm] ek_roots`; the policy matches its name.

use std::path::Path;

use anyhow::Context as _;
use mooring_attestation::tpm::sim::activate::SoftEk;
use mooring_attestation::x509::Certificate;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};

/// Common name of the test EK CA.
const CA_NAME: &str = "Mooring load-test EK CA";
/// Files of a persisted CA in a setup directory.
pub(crate) const CA_CERT_FILE: &str = "ek-ca.pem";
const CA_KEY_FILE: &str = "ek-ca.key";

/// The test EK CA.
pub(crate) struct EkCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert: Certificate,
    /// The issuer name as the broker reads it from an EK certificate (policy `ek_issuers`).
    name: String,
}

impl std::fmt::Debug for EkCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EkCa").field("name", &self.name).finish_non_exhaustive()
    }
}

/// An EK public key as rcgen wants it: the SEC1 point of a P-256 key.
struct EkKey(Vec<u8>);

impl PublicKeyData for EkKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

impl EkCa {
    /// A fresh CA.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        Self::from_key(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
    }

    /// The CA persisted in `dir`, or a fresh one written there.
    pub(crate) fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let key_path = dir.join(CA_KEY_FILE);
        if key_path.is_file() {
            let pem = std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            return Self::from_key(KeyPair::from_pem(&pem).with_context(|| key_path.display().to_string())?);
        }
        let ca = Self::generate()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&key_path, ca.issuer.key().serialize_pem())
            .with_context(|| format!("writing {}", key_path.display()))?;
        ca.write_certificate(&dir.join(CA_CERT_FILE))?;
        Ok(ca)
    }

    fn from_key(key: KeyPair) -> anyhow::Result<Self> {
        let params = ca_params()?;
        let cert = params.self_signed(&key)?;
        let parsed = Certificate::from_der(cert.der()).context("parsing the generated EK CA")?;
        let name = parsed.subject().to_owned();
        Ok(Self { issuer: Issuer::new(params, key), cert_pem: cert.pem(), cert: parsed, name })
    }

    /// Writes the CA certificate (PEM) for the broker's `ek_roots`.
    pub(crate) fn write_certificate(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, &self.cert_pem).with_context(|| format!("writing {}", path.display()))
    }

    /// The CA certificate.
    pub(crate) fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The CA's name as the policy's `ek_issuers` lists it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// An EK certificate (DER) for `ek`.
    pub(crate) fn certify(&self, ek: &SoftEk) -> anyhow::Result<Vec<u8>> {
        let point = ek.public().key().sec1_uncompressed().context("the EK is not an ECC key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.key_usages = vec![KeyUsagePurpose::KeyAgreement];
        let cert = params.signed_by(&EkKey(point), &self.issuer)?;
        Ok(cert.der().to_vec())
    }
}

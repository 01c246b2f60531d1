//! The broker's TLS material for the VMs.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::GUEST_BROKER;

/// The broker's TLS material for the VMs: a CA and a server certificate naming
/// [`GUEST_BROKER`]'s address (what the guest dials) as well as localhost and 127.0.0.1
/// (what the harness dials).
#[derive(Debug)]
pub struct BrokerTls {
    dir: tempfile::TempDir,
}

impl BrokerTls {
    /// Generates the CA and the server certificate (ECDSA P-256).
    ///
    /// # Errors
    /// Key generation, signing or writing the files failed.
    pub fn generate() -> anyhow::Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let dir = tempfile::Builder::new().prefix("mooring-realvm-tls-").tempdir()?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "Mooring real-VM test broker CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server.distinguished_name.push(DnType::CommonName, "mooring-broker");
        server.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(GUEST_BROKER.0)));
        server.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;

        fs::write(dir.path().join("ca.pem"), ca_cert.pem())?;
        fs::write(dir.path().join("server.pem"), format!("{}{}", server_cert.pem(), ca_cert.pem()))?;
        fs::write(dir.path().join("server.key"), server_key.serialize_pem())?;
        Ok(Self { dir })
    }

    /// The CA certificate (PEM) the client pins.
    #[must_use]
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The broker configuration's `[tls]` table.
    #[must_use]
    pub fn config(&self) -> String {
        let quoted = |name: &str| format!("{:?}", self.dir.path().join(name).display().to_string());
        format!("[tls]\ncertificate = {}\nprivate_key = {}\n", quoted("server.pem"), quoted("server.key"))
    }
}

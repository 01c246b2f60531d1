//! The server's TLS material: configured, or generated on first start (a server CA and
//! certificate, and an admin CA with one admin client certificate).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::Config;
use crate::files;

/// Paths of generated TLS material, for the operator.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    /// The generated server CA; none when `[tls]` names the operator's own certificate.
    pub(crate) server_ca: Option<PathBuf>,
    pub(crate) admin_certificate: Option<(PathBuf, PathBuf)>,
}

/// The server configuration; generates what is missing under `data_dir/tls`.
pub(crate) fn server_config(config: &Config) -> anyhow::Result<(Arc<ServerConfig>, Option<Generated>)> {
    let dir = config.data_dir.join("tls");
    files::private_dir(&dir)?;
    let mut generated = None;
    let (chain, key) = match &config.tls {
        Some(tls) => (
            mooring_serve::read_certificates(&tls.certificate)?,
            mooring_serve::read_private_key(&tls.private_key)?,
        ),
        None => {
            let server = dir.join("server.pem");
            if !server.exists() {
                create_server_certificate(&dir, config)?;
                generated = Some(Generated { server_ca: Some(dir.join("ca.pem")), admin_certificate: None });
            }
            (
                mooring_serve::read_certificates(&server)?,
                mooring_serve::read_private_key(&dir.join("server.key"))?,
            )
        }
    };
    let admin_ca = match &config.admin.client_ca {
        Some(path) => path.clone(),
        None => {
            let path = dir.join("admin-ca.pem");
            if !path.exists() {
                create_admin_certificates(&dir)?;
                let admin = (dir.join("admin.pem"), dir.join("admin.key"));
                generated
                    .get_or_insert(Generated { server_ca: None, admin_certificate: None })
                    .admin_certificate = Some(admin);
            }
            path
        }
    };
    let mut roots = RootCertStore::empty();
    for cert in mooring_serve::read_certificates(&admin_ca)? {
        roots.add(cert).context("admin client CA unusable")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), mooring_serve::provider())
        .allow_unauthenticated()
        .build()
        .context("admin client verifier")?;
    let server = ServerConfig::builder_with_provider(mooring_serve::provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("server certificate and key do not fit")?;
    Ok((Arc::new(server), generated))
}

/// The OIDC issuer's own listener (`[federation] listen`): its certificate (one relying
/// parties trust, e.g. a public CA's), and no client certificates asked for.
pub(crate) fn issuer_config(certificate: &Path, private_key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let server = ServerConfig::builder_with_provider(mooring_serve::provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(
            mooring_serve::read_certificates(certificate)?,
            mooring_serve::read_private_key(private_key)?,
        )
        .context("federation certificate and key do not fit")?;
    Ok(Arc::new(server))
}

fn ca(name: &str) -> anyhow::Result<(CertificateParams, KeyPair)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    Ok((params, key))
}

fn leaf(name: &str, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(825);
    params
}

fn create_server_certificate(dir: &Path, config: &Config) -> anyhow::Result<()> {
    let (ca_params, ca_key) = ca("Mooring broker local CA")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let mut sans = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
    ];
    if !config.listen.ip().is_unspecified() && !config.listen.ip().is_loopback() {
        sans.push(SanType::IpAddress(config.listen.ip()));
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        if let Ok(name) = host.trim().to_owned().try_into() {
            sans.push(SanType::DnsName(name));
        }
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = leaf("mooring-broker", sans, ExtendedKeyUsagePurpose::ServerAuth).signed_by(&key, &issuer)?;
    files::write_public(&dir.join("ca.pem"), ca_cert.pem().as_bytes())?;
    files::write_public(&dir.join("server.pem"), format!("{}{}", cert.pem(), ca_cert.pem()).as_bytes())?;
    files::write_private(&dir.join("server.key"), key.serialize_pem().as_bytes())
}

fn create_admin_certificates(dir: &Path) -> anyhow::Result<()> {
    let (ca_params, ca_key) = ca("Mooring broker admin CA")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let cert =
        leaf("mooring-admin", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth).signed_by(&key, &issuer)?;
    files::write_public(&dir.join("admin-ca.pem"), ca_cert.pem().as_bytes())?;
    files::write_public(&dir.join("admin.pem"), cert.pem().as_bytes())?;
    files::write_private(&dir.join("admin.key"), key.serialize_pem().as_bytes())
}

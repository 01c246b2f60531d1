//! X.509-SVIDs (SPIFFE X509-SVID specification) for the VM's key K.

use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mooring_attestation::x509::bundle::parse_certificates;
use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, PublicKeyData, SanType,
    SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::extensions::GeneralName;

use super::keys::Generation;
use super::Subject;
use crate::refusal::{Code, Refusal};

/// K as rcgen wants it.
struct SubjectKey<'a>(&'a [u8]);

impl PublicKeyData for SubjectKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

pub(super) fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(super) fn issue(
    generation: &Generation,
    subject: &Subject,
    serial: &str,
    now: i64,
    expires_at: i64,
) -> anyhow::Result<String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names =
        vec![SanType::URI(subject.spiffe_id.clone().try_into()?), SanType::IpAddress(subject.bound_address)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(now - 60)?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(expires_at)?;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&hex::decode(serial)?));
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_params(&generation.ca_params, &generation.ca_key);
    let leaf = params.signed_by(&SubjectKey(&subject_point(subject)), &issuer)?;
    Ok(format!("{}{}", pem("CERTIFICATE", leaf.der()), pem("CERTIFICATE", &generation.ca_der)))
}

fn subject_point(subject: &Subject) -> Vec<u8> {
    subject.key.point().to_vec()
}

/// What a verified X.509-SVID says.
#[derive(Debug, Clone)]
pub(crate) struct SvidClaims {
    pub(crate) spiffe_id: String,
    pub(crate) serial: String,
    pub(crate) bound_address: IpAddr,
    pub(crate) expires_at: i64,
    /// K: the leaf's key (uncompressed SEC1 point).
    pub(crate) key_point: Vec<u8>,
}

pub(super) fn verify(
    chain_pem: &str,
    generations: &[Arc<Generation>],
    now: i64,
) -> Result<SvidClaims, Refusal> {
    let malformed = |what: String| Refusal::new(Code::CredentialMalformed, format!("X.509-SVID: {what}"));
    let chain = parse_certificates(chain_pem.as_bytes()).map_err(|e| malformed(e.to_string()))?;
    let leaf = chain.first().ok_or_else(|| malformed("no certificate".into()))?;
    let issuer =
        generations.iter().map(|g| &g.ca_cert).find(|ca| ca.subject_der() == leaf.issuer_der()).ok_or_else(
            || {
                Refusal::new(
                    Code::UnknownSigningKey,
                    format!("X.509-SVID issuer {} is not in the trust bundle", leaf.issuer()),
                )
            },
        )?;
    leaf.verify_issued_by(issuer).map_err(|e| {
        Refusal::new(Code::BadSignature, format!("X.509-SVID signature does not verify: {e}"))
    })?;
    if leaf.is_ca() {
        return Err(malformed("leaf is a CA certificate".into()));
    }
    if leaf.not_after_unix() <= now {
        return Err(Refusal::new(
            Code::Expired,
            format!("X.509-SVID expired {} s ago", now - leaf.not_after_unix()),
        ));
    }
    if leaf.not_before_unix() > now {
        return Err(Refusal::new(Code::Expired, "X.509-SVID is not valid yet"));
    }
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf.der()).map_err(|e| malformed(format!("unreadable: {e}")))?;
    let san = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or_else(|| malformed("no subjectAltName".into()))?;
    let mut spiffe_id = None;
    let mut address = None;
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => spiffe_id = Some((*uri).to_owned()),
            GeneralName::IPAddress(bytes) => {
                address = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    let key_point = leaf
        .public_key()
        .ok()
        .and_then(|k| k.sec1_uncompressed())
        .ok_or_else(|| malformed("leaf key is not ECC".into()))?;
    Ok(SvidClaims {
        spiffe_id: spiffe_id.ok_or_else(|| malformed("no SPIFFE ID URI".into()))?,
        serial: hex::encode(leaf.serial()),
        bound_address: address.ok_or_else(|| malformed("no bound IP address".into()))?,
        expires_at: leaf.not_after_unix(),
        key_point,
    })
}

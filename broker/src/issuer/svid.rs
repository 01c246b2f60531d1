//! X.509-SVIDs (SPIFFE X509-SVID specification) for the VM's key K. Verified by
//! [`mooring_attestation::svid`].

use mooring_attestation::pem;
use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, PublicKeyData, SanType,
    SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};

use super::keys::Generation;
use super::Subject;

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
    Ok(format!(
        "{}{}",
        pem::encode("CERTIFICATE", leaf.der()),
        pem::encode("CERTIFICATE", &generation.ca_der)
    ))
}

fn subject_point(subject: &Subject) -> Vec<u8> {
    subject.key.point().to_vec()
}

//! X.509-SVIDs (SPIFFE X509-SVID specification) as the broker issues them: a leaf for K
//! signed directly by a bundle CA, with one SPIFFE ID URI and the bound IP address in its
//! subjectAltName.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;

use super::bundle::TrustBundle;
use super::{check_spiffe_id, CheckedCredential, CredentialKey, SvidError, VerifiedCredential};
use crate::crypto::PublicKey;
use crate::tpm::alg::EccCurve;
use crate::x509::Certificate;

/// Signature (by a bundle CA), validity, names and key of an X.509-SVID leaf (DER).
pub(super) fn verify(
    leaf_der: &[u8],
    bundle: &TrustBundle,
    now: i64,
) -> Result<CheckedCredential, SvidError> {
    let malformed = |what: String| SvidError::Malformed(format!("X.509-SVID: {what}"));
    let leaf = Certificate::from_der(leaf_der).map_err(|e| malformed(e.to_string()))?;
    let issuer =
        bundle.x509_authorities().iter().find(|ca| ca.subject_der() == leaf.issuer_der()).ok_or_else(
            || {
                SvidError::UnknownSigningKey(format!(
                    "X.509-SVID issuer {} is not in the trust bundle",
                    leaf.issuer()
                ))
            },
        )?;
    leaf.verify_issued_by(issuer)
        .map_err(|e| SvidError::BadSignature(format!("X.509-SVID signature does not verify: {e}")))?;
    if leaf.is_ca() {
        return Err(malformed("leaf is a CA certificate".into()));
    }
    if leaf.not_after_unix() <= now {
        return Err(SvidError::Expired(format!(
            "X.509-SVID expired {} s ago",
            now.saturating_sub(leaf.not_after_unix())
        )));
    }
    if leaf.not_before_unix() > now {
        return Err(SvidError::Expired("X.509-SVID is not valid yet".into()));
    }
    let (spiffe_id, bound_address) = names(&leaf).map_err(malformed)?;
    check_spiffe_id(&spiffe_id, bundle.trust_domain())?;
    let point = match leaf.public_key() {
        Ok(key @ PublicKey::Ecc { curve: EccCurve::NistP256, .. }) => key.sec1_uncompressed(),
        _ => None,
    }
    .ok_or_else(|| malformed("leaf key is not ECC P-256".into()))?;
    Ok(CheckedCredential {
        credential: VerifiedCredential {
            spiffe_id,
            serial: hex::encode(leaf.serial()),
            bound_address,
            expires_at: leaf.not_after_unix(),
            class: None,
            hardware_id: None,
        },
        key: CredentialKey { point },
        audiences: None,
        x509: true,
    })
}

/// The one SPIFFE ID URI and the one IP address of the subjectAltName.
fn names(leaf: &Certificate) -> Result<(String, IpAddr), String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf.der()).map_err(|e| format!("unreadable: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| format!("subjectAltName: {e}"))?
        .ok_or("no subjectAltName")?;
    let mut uris = Vec::new();
    let mut addresses = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(uri) => uris.push((*uri).to_owned()),
            GeneralName::IPAddress(bytes) => addresses.push(match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).map_err(|_| "bad IPv4 SAN")?,
                16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).map_err(|_| "bad IPv6 SAN")?,
                n => return Err(format!("IP address SAN of {n} bytes")),
            }),
            _ => {}
        }
    }
    let [uri] = uris.as_slice() else {
        return Err(format!("{} URI names; an SVID has exactly one SPIFFE ID", uris.len()));
    };
    let [address] = addresses.as_slice() else {
        return Err(format!("{} IP addresses; a Mooring SVID is bound to exactly one", addresses.len()));
    };
    Ok((uri.clone(), *address))
}

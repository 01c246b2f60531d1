//! HCL reports as an Azure confidential VM's paravisor writes them into the vTPM's NV index
//! 0x01400001, made with the test signer: the layout [`crate::snp::azure::HclReport`]
//! parses, runtime claims naming a vTPM's AK (`HCLAkPub`) and EK (`HCLEkPub`) as RSA JWKs,
//! and an SNP report whose `REPORT_DATA` is SHA-256 of those claims, then zeros.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{ReportFields, TestSigner};
use crate::crypto::PublicKey;
use crate::snp::azure::{
    AK_KID, EK_KID, HASH_TYPE_SHA256, HCL_HEADER_LEN, HCL_SIGNATURE, IGVM_HEADER_LEN, IGVM_VERSION,
    REPORT_TYPE_SNP,
};

/// The HCL header version current paravisors write.
pub const HCL_VERSION: u32 = 2;
/// HCL header `request_type` of the report in NV 0x01400001 (an AK certificate request).
pub const REQUEST_TYPE_AK_CERT: u32 = 2;

/// One RSA key of the runtime claims, as a JWK (RFC 7517; `n` and `e` base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimsKey {
    /// `HCLAkPub` or `HCLEkPub`.
    pub kid: String,
    /// `["sign"]` for the AK, `["encrypt"]` for the EK; left out when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// Always `RSA`.
    pub kty: String,
    /// Public exponent, big-endian without leading zeros, base64url.
    pub e: String,
    /// Modulus, big-endian, base64url.
    pub n: String,
}

impl ClaimsKey {
    /// The JWK of an RSA `key` named `kid` with `key_ops`; `None` for a non-RSA key.
    #[must_use]
    pub fn rsa(kid: &str, key_ops: Option<&str>, key: &PublicKey) -> Option<Self> {
        let PublicKey::Rsa { modulus, exponent } = key else { return None };
        let exponent = exponent.to_be_bytes();
        let start = exponent.iter().position(|b| *b != 0).unwrap_or(exponent.len());
        Some(Self {
            kid: kid.to_owned(),
            key_ops: key_ops.map(|op| vec![op.to_owned()]),
            kty: "RSA".to_owned(),
            e: URL_SAFE_NO_PAD.encode(exponent.get(start..).unwrap_or_default()),
            n: URL_SAFE_NO_PAD.encode(modulus),
        })
    }
}

/// The runtime claims JSON (`keys`, `vm-configuration`, `user-data`), in the paravisor's
/// field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeClaimsJson {
    /// The vTPM keys.
    pub keys: Vec<ClaimsKey>,
    /// Secure boot, TPM enabled, VM id and the like; left out when `None`.
    #[serde(rename = "vm-configuration", skip_serializing_if = "Option::is_none")]
    pub vm_configuration: Option<serde_json::Value>,
    /// Data the guest asked the paravisor to bind (upper-case hex); left out when `None`.
    #[serde(rename = "user-data", skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

impl RuntimeClaimsJson {
    /// Claims as a paravisor writes them: the AK (`["sign"]`) and the EK (`["encrypt"]`),
    /// a VM configuration with secure boot and the TPM on, and 64 zero bytes of user data.
    /// `None` when either key is not RSA.
    #[must_use]
    pub fn new(ak: &PublicKey, ek: &PublicKey) -> Option<Self> {
        Some(Self {
            keys: vec![
                ClaimsKey::rsa(AK_KID, Some("sign"), ak)?,
                ClaimsKey::rsa(EK_KID, Some("encrypt"), ek)?,
            ],
            vm_configuration: Some(serde_json::json!({
                "console-enabled": false,
                "secure-boot": true,
                "tpm-enabled": true,
                "vmUniqueId": "00000000-0000-0000-0000-000000000000",
            })),
            user_data: Some(hex::encode_upper([0u8; 64])),
        })
    }

    /// The same keys with nothing the verifier does not need (no `key_ops`, no VM
    /// configuration, no user data): the form that fits, with its HCL report, into an NV
    /// index of swtpm, whose libtpms caps an index at 2048 bytes (Azure's holds 2600).
    #[must_use]
    pub fn compact(ak: &PublicKey, ek: &PublicKey) -> Option<Self> {
        Some(Self {
            keys: vec![ClaimsKey::rsa(AK_KID, None, ak)?, ClaimsKey::rsa(EK_KID, None, ek)?],
            vm_configuration: None,
            user_data: None,
        })
    }

    /// The JSON bytes (no whitespace, as the paravisor writes them).
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings, vectors and a JSON value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `REPORT_DATA` committing to `claims`: SHA-256 of the bytes, then 32 zero bytes.
#[must_use]
pub fn claims_report_data(claims: &[u8]) -> [u8; 64] {
    let mut report_data = [0u8; 64];
    for (dst, src) in report_data.iter_mut().zip(Sha256::digest(claims)) {
        *dst = src;
    }
    report_data
}

/// An HCL report: `fields` with `REPORT_DATA` set to [`claims_report_data`] of `claims`,
/// signed by `signer`, wrapped with `claims` ([`assemble`]).
#[must_use]
pub fn hcl_report(signer: &TestSigner, fields: &ReportFields, claims: &[u8]) -> Vec<u8> {
    let fields = ReportFields { report_data: claims_report_data(claims), ..fields.clone() };
    assemble(&signer.sign(&fields), claims)
}

/// The HCL report layout around a signed `snp_report` and `claims`, as they are (no
/// padding; the NV index is zero-filled after it):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `"HCLA"` |
/// | 4 | 4 | version ([`HCL_VERSION`]) |
/// | 8 | 4 | report_size: header, SNP report and runtime data |
/// | 12 | 4 | request_type ([`REQUEST_TYPE_AK_CERT`]) |
/// | 16 | 4 | status (0) |
/// | 20 | 12 | reserved |
/// | 32 | 1184 | SNP `ATTESTATION_REPORT` |
/// | 1216 | 4 | IGVM data_size: 20 + variable_data_size |
/// | 1220 | 4 | IGVM version ([`IGVM_VERSION`]) |
/// | 1224 | 4 | IGVM report_type (2, SEV-SNP) |
/// | 1228 | 4 | IGVM report_data_hash_type ([`HASH_TYPE_SHA256`]) |
/// | 1232 | 4 | IGVM variable_data_size |
/// | 1236 | n | runtime claims JSON |
///
/// All integers little-endian.
///
/// # Panics
/// Only when the claims are longer than 4 GiB (test support code).
#[must_use]
#[allow(clippy::expect_used)]
pub fn assemble(snp_report: &[u8], claims: &[u8]) -> Vec<u8> {
    let header_len = u32::try_from(HCL_HEADER_LEN).expect("a small constant");
    let igvm_header_len = u32::try_from(IGVM_HEADER_LEN).expect("a small constant");
    let claims_len = u32::try_from(claims.len()).expect("claims under 4 GiB");
    let snp_len = u32::try_from(snp_report.len()).expect("report under 4 GiB");
    let report_size = header_len + snp_len + igvm_header_len + claims_len;
    let mut out = Vec::with_capacity(report_size as usize);
    for word in [HCL_SIGNATURE, HCL_VERSION, report_size, REQUEST_TYPE_AK_CERT, 0, 0, 0, 0] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(snp_report);
    for word in [igvm_header_len + claims_len, IGVM_VERSION, REPORT_TYPE_SNP, HASH_TYPE_SHA256, claims_len] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(claims);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::snp::azure::{HclReport, MAX_HCL_REPORT_LEN};
    use crate::snp::report::REPORT_LEN;
    use crate::snp::{SnpCertSource, SnpVerifier};
    use crate::tpm::alg::HashAlg;

    /// A 2048-bit RSA key with exponent 65537 (the modulus need not be a product of primes
    /// for a JWK).
    fn key(fill: u8) -> PublicKey {
        PublicKey::rsa(&[fill; 256], 65_537).unwrap()
    }

    #[test]
    fn the_paravisor_form_parses_and_report_data_commits_to_the_claims() {
        let signer = TestSigner::generate();
        let claims = RuntimeClaimsJson::new(&key(0xa1), &key(0xe1)).unwrap().to_json();
        let mut nv = hcl_report(&signer, &signer.report_fields(), &claims);
        let used = nv.len();
        nv.resize(2600, 0);
        let hcl = HclReport::parse(&nv).unwrap();
        assert_eq!(hcl.version(), HCL_VERSION);
        assert_eq!(hcl.hash(), HashAlg::Sha256);
        assert_eq!(hcl.runtime_claims(), claims.as_slice());
        assert_eq!(used, HCL_HEADER_LEN + REPORT_LEN + IGVM_HEADER_LEN + claims.len());
        let verifier = SnpVerifier::builder()
            .trust_test_root(signer.product(), signer.ark_der(), signer.ask_der(), None)
            .build()
            .unwrap();
        let report = verifier
            .verify(hcl.snp_report(), SnpCertSource::CertTable(&signer.cert_table()), 1_700_000_000)
            .unwrap();
        assert_eq!(&report.report_data()[..32], Sha256::digest(&claims).as_slice());
        assert_eq!(&report.report_data()[32..], &[0; 32]);
        let json: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(json["keys"][0]["kid"], "HCLAkPub");
        assert_eq!(json["keys"][0]["key_ops"][0], "sign");
        assert_eq!(json["keys"][0]["e"], "AQAB");
        assert_eq!(json["keys"][1]["kid"], "HCLEkPub");
        assert_eq!(json["keys"][1]["key_ops"][0], "encrypt");
        assert_eq!(json["vm-configuration"]["secure-boot"], true);
        assert_eq!(json["user-data"].as_str().unwrap().len(), 128);
    }

    #[test]
    fn the_compact_form_fits_a_2048_byte_nv_index_and_parses() {
        let signer = TestSigner::generate();
        let claims = RuntimeClaimsJson::compact(&key(0xa1), &key(0xe1)).unwrap().to_json();
        let mut nv = hcl_report(&signer, &signer.report_fields(), &claims);
        assert!(nv.len() <= 2048, "{} bytes", nv.len());
        nv.resize(2048, 0);
        assert_eq!(HclReport::parse(&nv).unwrap().runtime_claims(), claims.as_slice());
        assert!(nv.len() <= MAX_HCL_REPORT_LEN);
    }

    #[test]
    fn only_rsa_keys_make_claims() {
        let ecc = PublicKey::ecc(crate::tpm::alg::EccCurve::NistP256, &[1; 32], &[2; 32]).unwrap();
        assert!(RuntimeClaimsJson::new(&key(1), &ecc).is_none());
        assert!(RuntimeClaimsJson::compact(&ecc, &key(1)).is_none());
    }
}

//! Azure confidential VM evidence: the paravisor's HCL report and the vTPM quote.
//!
//! The HCL report (read from the vTPM's NV index 0x01400001) is a 32-byte header
//! (`"HCLA"`, version, report size, request type, status, reserved), the 1184-byte SNP
//! `ATTESTATION_REPORT`, then an IGVM request-data block: `data_size`, `version` (1),
//! `report_type` (2 = SEV-SNP), `report_data_hash_type` (1 SHA-256, 2 SHA-384,
//! 3 SHA-512), `variable_data_size` (all `u32` little-endian) and that many bytes of
//! runtime-claims JSON; zero padding fills the NV index.
//!
//! The chain of trust, all of it checked by [`verify_azure_cvm`]:
//! SNP report (VCEK chain to the pinned AMD root) → `REPORT_DATA` starts with the hash
//! of the runtime claims as received (the rest zero) → the claims' `HCLAkPub` JWK is the
//! vTPM attestation key → it signed the TPM quote → the PCR values hash to the quote's
//! digest. The TPM part is [`crate::tpm::quote::verify_quote`] with the key vouched for
//! by the report ([`Ak::Vouched`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::appraisal::SnpAppraisal;
use super::verifier::{SnpCertSource, SnpVerifier};
use super::{report, SnpError, VerifiedReport};
use crate::codec::{CodecError, Reader};
use crate::crypto::PublicKey;
use crate::tpm::alg::HashAlg;
use crate::tpm::attest::{Ak, Signature};
use crate::tpm::pcr::PcrValues;
use crate::tpm::quote::{verify_quote, QuoteError, QuoteExpectation, VerifiedQuote};

/// `"HCLA"` read as a little-endian `u32`.
pub const HCL_SIGNATURE: u32 = u32::from_le_bytes(*b"HCLA");
/// Size of the HCL header before the SNP report.
pub const HCL_HEADER_LEN: usize = 0x20;
/// Size of the IGVM request-data header before the runtime claims.
pub const IGVM_HEADER_LEN: usize = 20;
/// Fill of the HCL report's vTPM NV index after the report (the paravisor zero-fills it).
const HCL_NV_FILL: u8 = 0x00;
/// Largest HCL report accepted (the vTPM NV index holds 2600 bytes).
pub const MAX_HCL_REPORT_LEN: usize = 8 * 1024;
/// IGVM `report_type` of an SEV-SNP report.
pub const REPORT_TYPE_SNP: u32 = 2;
/// IGVM request-data `version` (the only one defined).
pub const IGVM_VERSION: u32 = 1;
/// IGVM `report_data_hash_type` of SHA-256 (2: SHA-384, 3: SHA-512).
pub const HASH_TYPE_SHA256: u32 = 1;
/// The JWK `kid` of the vTPM attestation key in the runtime claims.
pub const AK_KID: &str = "HCLAkPub";
/// The JWK `kid` of the vTPM endorsement key in the runtime claims.
pub const EK_KID: &str = "HCLEkPub";
/// Largest RSA modulus accepted for the AK and EK.
const MAX_RSA_MODULUS_LEN: usize = 512;

/// Why Azure confidential-VM evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AzureError {
    /// The HCL report is shorter than its fields say or has a bad size.
    #[error("HCL report: {0}")]
    Codec(#[from] CodecError),
    /// Not an HCL report.
    #[error("HCL report signature is {0:#010x}, not \"HCLA\"")]
    NotHcl(u32),
    /// A header field holds a value this verifier does not handle.
    #[error("HCL report {field} is {value}, expected {expected}")]
    Header {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u32,
        /// What is accepted.
        expected: &'static str,
    },
    /// Bytes after the runtime claims are not zero padding.
    #[error("HCL report has non-zero bytes after the runtime claims (offset {offset})")]
    TrailingData {
        /// Offset of the first non-zero byte.
        offset: usize,
    },
    /// The SNP report inside does not verify.
    #[error("SNP report: {0}")]
    Snp(#[from] SnpError),
    /// REPORT_DATA does not commit to the runtime claims received.
    #[error(
        "REPORT_DATA {report_data} does not commit to the runtime claims ({hash} {computed}, then zeros)"
    )]
    RuntimeClaimsHash {
        /// The hash algorithm the header names.
        hash: HashAlg,
        /// The claims' hash, hex.
        computed: String,
        /// REPORT_DATA, hex.
        report_data: String,
    },
    /// The runtime claims are not the JSON expected, or lack a usable AK.
    #[error("runtime claims: {0}")]
    Claims(String),
    /// The TPM quote does not verify with the AK.
    #[error("vTPM quote: {0}")]
    Quote(#[from] QuoteError),
}

/// The parts of an HCL report, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport<'a> {
    version: u32,
    snp_report: &'a [u8],
    hash: HashAlg,
    runtime_claims: &'a [u8],
}

impl<'a> HclReport<'a> {
    /// Parses an HCL report: signature, sizes consistent with each other, SNP report type,
    /// a known hash type, and only zero bytes after the runtime claims.
    ///
    /// # Errors
    /// [`AzureError`] naming the field at fault.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AzureError> {
        if bytes.len() > MAX_HCL_REPORT_LEN {
            return Err(CodecError::TooLarge {
                field: "HCL report",
                size: bytes.len(),
                max: MAX_HCL_REPORT_LEN,
            }
            .into());
        }
        let mut r = Reader::new(bytes);
        let signature = r.u32_le("HCL header signature")?;
        if signature != HCL_SIGNATURE {
            return Err(AzureError::NotHcl(signature));
        }
        let version = r.u32_le("HCL header version")?;
        if !(1..=2).contains(&version) {
            return Err(AzureError::Header { field: "header version", value: version, expected: "1 or 2" });
        }
        let report_size = r.u32_le("HCL header report_size")?;
        let _request_type = r.u32_le("HCL header request_type")?;
        let _status = r.u32_le("HCL header status")?;
        r.take(12, "HCL header reserved")?;
        let snp_report = r.take(report::REPORT_LEN, "HCL hw_report")?;
        let data_size = r.u32_le("IGVM data_size")?;
        let igvm_version = r.u32_le("IGVM version")?;
        if igvm_version != IGVM_VERSION {
            return Err(AzureError::Header { field: "IGVM version", value: igvm_version, expected: "1" });
        }
        let report_type = r.u32_le("IGVM report_type")?;
        if report_type != REPORT_TYPE_SNP {
            return Err(AzureError::Header {
                field: "IGVM report_type",
                value: report_type,
                expected: "2 (SEV-SNP)",
            });
        }
        let hash_type = r.u32_le("IGVM report_data_hash_type")?;
        let hash = match hash_type {
            HASH_TYPE_SHA256 => HashAlg::Sha256,
            2 => HashAlg::Sha384,
            3 => HashAlg::Sha512,
            other => {
                return Err(AzureError::Header {
                    field: "IGVM report_data_hash_type",
                    value: other,
                    expected: "1, 2 or 3 (SHA-256/384/512)",
                })
            }
        };
        let runtime_claims = r.u32_le_prefixed(MAX_HCL_REPORT_LEN, "IGVM variable_data")?;
        let claims_len = u32::try_from(runtime_claims.len()).unwrap_or(u32::MAX);
        if u64::from(data_size) != u64::from(claims_len) + 20 {
            return Err(AzureError::Header {
                field: "IGVM data_size",
                value: data_size,
                expected: "20 + variable_data_size",
            });
        }
        let used = u32::try_from(r.position()).unwrap_or(u32::MAX);
        if report_size != used {
            return Err(AzureError::Header {
                field: "header report_size",
                value: report_size,
                expected: "the size of header, report and runtime data",
            });
        }
        r.expect_padding(HCL_NV_FILL).map_err(|e| AzureError::TrailingData { offset: e.offset })?;
        Ok(Self { version, snp_report, hash, runtime_claims })
    }

    /// The HCL header version.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The SNP `ATTESTATION_REPORT`, as received.
    #[must_use]
    pub fn snp_report(&self) -> &'a [u8] {
        self.snp_report
    }

    /// The hash REPORT_DATA commits to the runtime claims with.
    #[must_use]
    pub fn hash(&self) -> HashAlg {
        self.hash
    }

    /// The runtime-claims JSON, as received.
    #[must_use]
    pub fn runtime_claims(&self) -> &'a [u8] {
        self.runtime_claims
    }
}

/// What the runtime claims say, once their hash matched REPORT_DATA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeClaims {
    ak: PublicKey,
    ek: Option<PublicKey>,
    #[serde(serialize_with = "crate::serde_hex::option")]
    user_data: Option<Vec<u8>>,
    vm_configuration: Option<serde_json::Value>,
}

impl RuntimeClaims {
    /// The vTPM attestation key (`HCLAkPub`).
    #[must_use]
    pub fn ak(&self) -> &PublicKey {
        &self.ak
    }

    /// The vTPM endorsement key (`HCLEkPub`), when the paravisor names it.
    #[must_use]
    pub fn ek(&self) -> Option<&PublicKey> {
        self.ek.as_ref()
    }

    /// The `user-data` the guest asked the paravisor to bind (hex-decoded).
    #[must_use]
    pub fn user_data(&self) -> Option<&[u8]> {
        self.user_data.as_deref()
    }

    /// The `vm-configuration` object (secure boot, TPM enabled, VM id, ...).
    #[must_use]
    pub fn vm_configuration(&self) -> Option<&serde_json::Value> {
        self.vm_configuration.as_ref()
    }
}

/// The evidence an Azure confidential VM presents.
#[derive(Debug, Clone, Copy)]
pub struct AzureCvmEvidence<'a> {
    /// The HCL report bytes (NV index 0x01400001).
    pub hcl_report: &'a [u8],
    /// The VCEK (the paravisor does not include it; from the host's certificate cache
    /// or the provisioned set).
    pub certs: SnpCertSource<'a>,
    /// `TPMS_ATTEST` of the quote.
    pub quote: &'a [u8],
    /// Its signature.
    pub signature: &'a Signature,
    /// The PCR values quoted.
    pub pcrs: &'a PcrValues,
}

/// Evidence whose whole chain verified: SNP report, runtime claims, AK, quote, PCRs.
/// Only [`verify_azure_cvm`] makes one.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedAzureCvm {
    snp: super::SnpClaims,
    runtime_claims: RuntimeClaims,
    quote: VerifiedQuote,
    #[serde(skip)]
    report: VerifiedReport,
}

impl VerifiedAzureCvm {
    /// The verified SNP report.
    #[must_use]
    pub fn report(&self) -> &VerifiedReport {
        &self.report
    }

    /// The runtime claims (AK, user data, VM configuration).
    #[must_use]
    pub fn runtime_claims(&self) -> &RuntimeClaims {
        &self.runtime_claims
    }

    /// The verified quote and its PCRs.
    #[must_use]
    pub fn quote(&self) -> &VerifiedQuote {
        &self.quote
    }

    /// The parts policy appraises: the SNP report as an [`SnpAppraisal`] (its REPORT_DATA
    /// commits to the runtime claims, checked by [`verify_azure_cvm`]), the runtime claims
    /// and the quote.
    #[must_use]
    pub fn into_parts(self) -> (SnpAppraisal, RuntimeClaims, VerifiedQuote) {
        (SnpAppraisal::committed(self.report), self.runtime_claims, self.quote)
    }
}

/// Verifies Azure confidential-VM evidence end to end at `now_unix`.
///
/// # Errors
/// [`AzureError`] naming the first link that failed.
pub fn verify_azure_cvm(
    evidence: &AzureCvmEvidence<'_>,
    verifier: &SnpVerifier,
    expected: &QuoteExpectation<'_>,
    now_unix: i64,
) -> Result<VerifiedAzureCvm, AzureError> {
    let hcl = HclReport::parse(evidence.hcl_report)?;
    let report = verifier.verify(hcl.snp_report(), evidence.certs, now_unix)?;
    let digest = hcl.hash().digest(&[hcl.runtime_claims()]);
    let report_data = report.report_data();
    let (committed, rest) = report_data.split_at(digest.len().min(report_data.len()));
    if committed != digest.as_slice() || rest.iter().any(|b| *b != 0) {
        return Err(AzureError::RuntimeClaimsHash {
            hash: hcl.hash(),
            computed: hex::encode(&digest),
            report_data: hex::encode(report_data),
        });
    }
    let runtime_claims = parse_runtime_claims(hcl.runtime_claims())?;
    let quote = verify_quote(
        Ak::Vouched(&runtime_claims.ak),
        evidence.quote,
        evidence.signature,
        evidence.pcrs,
        expected,
    )?;
    Ok(VerifiedAzureCvm { snp: report.claims().clone(), runtime_claims, quote, report })
}

#[derive(Deserialize)]
struct ClaimsJson {
    keys: Vec<Jwk>,
    #[serde(rename = "vm-configuration")]
    vm_configuration: Option<serde_json::Value>,
    #[serde(rename = "user-data")]
    user_data: Option<String>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    n: Option<String>,
    e: Option<String>,
}

/// The AK (the one `HCLAkPub` RSA JWK), the EK (`HCLEkPub`, when present), user data and
/// VM configuration.
fn parse_runtime_claims(json: &[u8]) -> Result<RuntimeClaims, AzureError> {
    let claims: ClaimsJson = serde_json::from_slice(json)
        .map_err(|e| AzureError::Claims(format!("not the expected JSON: {e}")))?;
    let ak = rsa_key(&claims.keys, AK_KID)?
        .ok_or_else(|| AzureError::Claims(format!("no key with kid {AK_KID:?}")))?;
    let ek = rsa_key(&claims.keys, EK_KID)?;
    let user_data = match claims.user_data {
        Some(text) => {
            Some(hex::decode(&text).map_err(|e| AzureError::Claims(format!("user-data is not hex: {e}")))?)
        }
        None => None,
    };
    Ok(RuntimeClaims { ak, ek, user_data, vm_configuration: claims.vm_configuration })
}

/// The one RSA key with `kid` among `keys`, if any.
fn rsa_key(keys: &[Jwk], kid: &str) -> Result<Option<PublicKey>, AzureError> {
    let bad = |reason: String| AzureError::Claims(reason);
    let mut matching = keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
    let Some(jwk) = matching.next() else { return Ok(None) };
    if matching.next().is_some() {
        return Err(bad(format!("more than one key with kid {kid:?}")));
    }
    if jwk.kty != "RSA" {
        return Err(bad(format!("{kid} has kty {:?}, expected \"RSA\"", jwk.kty)));
    }
    let decode = |name: &str, value: &Option<String>| {
        let text = value.as_deref().ok_or_else(|| bad(format!("{kid} has no {name:?}")))?;
        URL_SAFE_NO_PAD.decode(text).map_err(|e| bad(format!("{kid} {name:?} is not base64url: {e}")))
    };
    let modulus = decode("n", &jwk.n)?;
    if modulus.len() > MAX_RSA_MODULUS_LEN {
        return Err(bad(format!("{kid} modulus of {} bytes is too large", modulus.len())));
    }
    let exponent = decode("e", &jwk.e)?;
    let exponent = match exponent.iter().position(|b| *b != 0) {
        Some(start) if exponent.len() - start <= 4 => {
            exponent.iter().skip(start).fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
        }
        _ => return Err(bad(format!("{kid} exponent is zero or longer than 4 bytes"))),
    };
    PublicKey::rsa(&modulus, exponent).map(Some).map_err(|e| bad(format!("{kid}: {e}")))
}

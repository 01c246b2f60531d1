//! `mooring-broker verify snp-report` and `verify azure-cvm`: offline verification of
//! AMD SEV-SNP evidence against the pinned AMD roots built into the library.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use mooring_attestation::crypto::Scheme;
use mooring_attestation::snp::azure::{verify_azure_cvm, AzureCvmEvidence};
use mooring_attestation::snp::report::REPORT_LEN;
use mooring_attestation::snp::{SnpCertSource, SnpVerifier, VerifiedReport};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::Signature;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::quote::QuoteExpectation;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{read, rejected, Failure, QuoteFiles};

#[derive(Debug, Args)]
pub(crate) struct SnpReportArgs {
    /// The 1184-byte ATTESTATION_REPORT (binary, or the same as hex text).
    #[arg(long)]
    report: PathBuf,
    /// The VCEK or VLEK certificate, DER or PEM (PEM may also hold the AMD KDS cert_chain).
    #[arg(long, conflicts_with = "cert_table")]
    cert: Option<PathBuf>,
    /// The certificate table an extended report (SNP_GET_EXT_REPORT) returned.
    #[arg(long)]
    cert_table: Option<PathBuf>,
    /// Verification time, RFC 3339 (for instance 2025-06-15T00:00:00Z); default now.
    #[arg(long)]
    at: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AzureCvmArgs {
    /// The HCL report (vTPM NV index 0x01400001).
    #[arg(long)]
    hcl_report: PathBuf,
    /// The VCEK certificate, DER or PEM.
    #[arg(long)]
    vcek: PathBuf,
    /// The vTPM quote.
    #[command(flatten)]
    files: QuoteFiles,
    /// Verification time, RFC 3339; default now.
    #[arg(long)]
    at: Option<String>,
}

pub(crate) fn snp_report(args: &SnpReportArgs) -> Result<serde_json::Value, Failure> {
    let verified = verify_report(args)?;
    serde_json::to_value(verified.claims()).map_err(|e| Failure::Usage(format!("encoding claims: {e}")))
}

/// Verifies the report named by `args` against the built-in AMD roots.
pub(crate) fn verify_report(args: &SnpReportArgs) -> Result<VerifiedReport, Failure> {
    let now = verification_time(args.at.as_deref())?;
    let report = read_report(&args.report)?;
    let certs = match (&args.cert, &args.cert_table) {
        (Some(path), _) => (read(path)?, false),
        (None, Some(path)) => (read(path)?, true),
        (None, None) => return Err(Failure::Usage("pass the VCEK/VLEK with --cert, or --cert-table".into())),
    };
    let source =
        if certs.1 { SnpCertSource::CertTable(&certs.0) } else { SnpCertSource::Certificates(&certs.0) };
    verifier()?.verify(&report, source, now).map_err(|e| rejected("SEV-SNP report")(&e))
}

pub(crate) fn azure_cvm(args: &AzureCvmArgs) -> Result<serde_json::Value, Failure> {
    let now = verification_time(args.at.as_deref())?;
    let (hcl_report, vcek) = (read(&args.hcl_report)?, read(&args.vcek)?);
    let attest = read(&args.files.quote)?;
    let sig_bytes = read(&args.files.signature)?;
    let signature = Signature::parse(&sig_bytes)
        .unwrap_or_else(|_| Signature::raw_rsa(Scheme::RsaPkcs1(HashAlg::Sha256), &sig_bytes));
    let pcrs = load_sha256_pcrs(&args.files.pcrs)?;
    let indices: Vec<u8> = pcrs.bank(HashAlg::Sha256).map(|(index, _)| index).collect();
    let selection =
        PcrSelection::single(HashAlg::Sha256, &indices).map_err(|e| Failure::Usage(e.to_string()))?;
    let certs = SnpCertSource::Certificates(&vcek);
    let evidence = AzureCvmEvidence {
        hcl_report: &hcl_report,
        certs,
        quote: &attest,
        signature: &signature,
        pcrs: &pcrs,
    };
    let nonce = args.files.nonce()?;
    let expected = QuoteExpectation { qualifying_data: &nonce, selection: &selection };
    let verified = verify_azure_cvm(&evidence, &verifier()?, &expected, now)
        .map_err(|e| rejected("Azure CVM evidence")(&e))?;
    serde_json::to_value(&verified).map_err(|e| Failure::Usage(format!("encoding claims: {e}")))
}

fn verifier() -> Result<SnpVerifier, Failure> {
    SnpVerifier::new().map_err(|e| Failure::Usage(format!("built-in AMD roots: {e}")))
}

/// The report file: binary, or hex text of the binary (as some tools store it).
fn read_report(path: &Path) -> Result<Vec<u8>, Failure> {
    let bytes = read(path)?;
    let text = bytes.trim_ascii();
    if text.len() == 2 * REPORT_LEN && text.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())));
    }
    Ok(bytes)
}

/// SHA-256 PCR values from `{"0": "hex", ...}` or `{"sha256": {...}}`.
fn load_sha256_pcrs(path: &Path) -> Result<PcrValues, Failure> {
    let bad = |e: &dyn std::fmt::Display| Failure::Usage(format!("{}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_slice(&read(path)?).map_err(|e| bad(&e))?;
    let flat = value.as_object().is_some_and(|map| map.keys().all(|k| k.bytes().all(|b| b.is_ascii_digit())));
    let value = if flat { serde_json::json!({ "sha256": value }) } else { value };
    let pcrs = PcrValues::from_json(&value.to_string()).map_err(|e| bad(&e))?;
    if pcrs.banks().any(|bank| bank != HashAlg::Sha256) || pcrs.bank(HashAlg::Sha256).next().is_none() {
        return Err(bad(&"expected SHA-256 PCR values only"));
    }
    Ok(pcrs)
}

pub(crate) fn verification_time(at: Option<&str>) -> Result<i64, Failure> {
    match at {
        Some(text) => parse_rfc3339(text).map_err(|e| {
            let what = match e {
                // Well formed, but a field names no such time (February 30th, hour 24).
                time::error::Parse::TryFromParsed(_) => "a field is out of range",
                _ => "not an RFC 3339 date-time",
            };
            Failure::Usage(format!("--at {text:?}: {what} ({e})"))
        }),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .ok_or_else(|| Failure::Usage("the system clock is before 1970".into())),
    }
}

/// Seconds since the Unix epoch of an RFC 3339 `date-time` (§5.6), such as
/// `2025-06-15T00:00:00Z` or `2025-06-15T02:00:00.5+02:00` (a fraction is dropped).
fn parse_rfc3339(text: &str) -> Result<i64, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339).map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2025-06-15T13:46:40Z"), Ok(1_749_995_200));
        assert_eq!(parse_rfc3339("2025-06-15T15:46:40+02:00"), Ok(1_749_995_200));
        assert_eq!(parse_rfc3339("2025-06-15T13:46:40.999z"), Ok(1_749_995_200));
        assert_eq!(parse_rfc3339("2000-02-29t00:00:00-00:30"), Ok(951_784_200));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1));
        for bad in [
            "2025-06-15",
            "2025-06-15T13:46:40",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-06-15T24:00:00Z",
            "2025-06-15T13:46:40+2:00",
            "2025-06-15T13:46:40Zjunk",
            "2025-06-15T13:46:40.Z",
            "１２３",
            "",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}

//! `mooring-broker verify ...`: offline verification of evidence files.

mod snp;

pub(crate) use snp::{verification_time, verify_report as verify_snp_report, SnpReportArgs};

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use mooring_attestation::crypto::PublicKey;
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::attest::{Ak, Attest, Attested, Signature};
use mooring_attestation::tpm::eventlog::EventLog;
use mooring_attestation::tpm::pcr::{PcrSelection, PcrValues};
use mooring_attestation::tpm::public::Public;
use mooring_attestation::tpm::quote::{verify_quote, QuoteError, QuoteExpectation};
use mooring_attestation::x509;
use serde_json::json;

use super::read_file as read;
use super::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum VerifyCommand {
    /// Verify a TPM 2.0 quote (as tpm2_quote writes it) against an attestation key.
    TpmQuote(TpmQuoteArgs),
    /// Parse and replay a TCG measured-boot event log.
    EventLog(EventLogArgs),
    /// Verify an AMD SEV-SNP attestation report: signature, VCEK/VLEK chain to the pinned
    /// AMD roots, CHIP_ID and TCB against the certificate.
    SnpReport(snp::SnpReportArgs),
    /// Verify Azure confidential-VM evidence: HCL report (SNP report and runtime claims),
    /// and the vTPM quote signed by the key the claims carry.
    AzureCvm(snp::AzureCvmArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TpmQuoteArgs {
    /// AK public area: TPM2B_PUBLIC (tpm2_createak -u), TPMT_PUBLIC, or a PEM public key.
    #[arg(long)]
    ak: PathBuf,
    #[command(flatten)]
    files: QuoteFiles,
    /// The one PCR bank the quote must cover; by default, every bank the PCR file holds.
    #[arg(long, value_parser = ["sha1", "sha256", "sha384"])]
    pcr_bank: Option<String>,
    /// Measured-boot event log (binary_bios_measurements) that must replay to the quoted PCRs.
    #[arg(long)]
    event_log: Option<PathBuf>,
}

/// The files of a TPM quote and the nonce it must carry (`verify tpm-quote` and
/// `verify azure-cvm`).
#[derive(Debug, Args)]
pub(crate) struct QuoteFiles {
    /// TPMS_ATTEST bytes of the quote (tpm2_quote -m).
    #[arg(long)]
    quote: PathBuf,
    /// The quote signature: TPMT_SIGNATURE (tpm2_quote -s); azure-cvm also takes the raw
    /// RSASSA-PKCS1-v1_5/SHA-256 block.
    #[arg(long)]
    signature: PathBuf,
    /// PCR values: the file tpm2_quote -o writes, or JSON {"sha256": {"0": "hex", ...}}
    /// (azure-cvm: SHA-256 values only, also as {"0": "hex", ...}, and the quote must cover
    /// exactly these PCRs).
    #[arg(long)]
    pcrs: PathBuf,
    /// Expected qualifying data (nonce), hex. Without it the quote must carry none.
    #[arg(long, default_value = "")]
    nonce: String,
}

impl QuoteFiles {
    fn nonce(&self) -> Result<Vec<u8>, Failure> {
        hex::decode(self.nonce.trim()).map_err(|e| Failure::Usage(format!("--nonce is not hex: {e}")))
    }
}

#[derive(Debug, Args)]
pub(crate) struct EventLogArgs {
    /// The event log file (binary_bios_measurements).
    #[arg(long)]
    log: PathBuf,
}

pub(crate) fn run(command: VerifyCommand) -> Result<String, Failure> {
    let claims = match command {
        VerifyCommand::TpmQuote(args) => tpm_quote(&args)?,
        VerifyCommand::EventLog(args) => event_log(&args)?,
        VerifyCommand::SnpReport(args) => snp::snp_report(&args)?,
        VerifyCommand::AzureCvm(args) => snp::azure_cvm(&args)?,
    };
    serde_json::to_string_pretty(&claims).map_err(|e| Failure::Usage(format!("encoding claims: {e}")))
}

fn rejected(what: &str) -> impl Fn(&dyn std::fmt::Display) -> Failure + '_ {
    move |e| Failure::Rejected(format!("{what}: {e}"))
}

/// The AK as a TPM public area, or a bare PEM key (no attributes to check).
enum AkFile {
    Tpm(Public),
    Bare(PublicKey),
}

fn load_ak(path: &Path) -> Result<AkFile, Failure> {
    let bytes = read(path)?;
    if bytes.starts_with(b"-----BEGIN") {
        let key = x509::spki_public_key_pem(&bytes).map_err(|e| rejected("AK PEM")(&e))?;
        return Ok(AkFile::Bare(key));
    }
    let prefixed = bytes.first_chunk::<2>().map(|s| usize::from(u16::from_be_bytes(*s)));
    let parsed = if prefixed == Some(bytes.len().saturating_sub(2)) {
        Public::from_tpm2b(&bytes)
    } else {
        Public::from_tpmt(&bytes)
    };
    parsed.map(AkFile::Tpm).map_err(|e| rejected("AK")(&e))
}

fn load_pcrs(path: &Path, quoted: &PcrSelection) -> Result<PcrValues, Failure> {
    let bytes = read(path)?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let text = String::from_utf8(bytes).map_err(|_| Failure::Usage("PCR JSON is not UTF-8".into()))?;
        return PcrValues::from_json(&text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())));
    }
    PcrValues::from_tpm2_tools(&bytes, quoted).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

/// The selection the quote must cover: every PCR supplied for the chosen bank, or without
/// one, every PCR supplied in every bank when those are the banks the quote covers (a
/// multi-bank quote, as `tpm2_checkquote` takes it).
fn required_selection(
    pcrs: &PcrValues,
    bank: Option<&str>,
    quoted: &PcrSelection,
) -> Result<PcrSelection, Failure> {
    let banks: Vec<HashAlg> = match bank {
        Some(name) => {
            vec![HashAlg::from_name(name).ok_or_else(|| Failure::Usage(format!("unknown bank {name}")))?]
        }
        None => {
            let supplied: Vec<HashAlg> = pcrs.banks().collect();
            let mut in_quote: Vec<HashAlg> = quoted.iter().map(|(bank, _)| bank).collect();
            in_quote.sort();
            let mut sorted = supplied.clone();
            sorted.sort();
            if supplied.len() > 1 && sorted != in_quote {
                let names: Vec<&str> = supplied.iter().map(|b| b.name()).collect();
                return Err(Failure::Usage(format!(
                    "the PCR file holds banks {} and the quote covers others: choose one with --pcr-bank",
                    names.join(", ")
                )));
            }
            supplied
        }
    };
    let mut selection = PcrSelection::new();
    for bank in banks {
        let indices: Vec<u8> = pcrs.bank(bank).map(|(index, _)| index).collect();
        if indices.is_empty() {
            return Err(Failure::Usage(format!("the PCR file has no {bank} values")));
        }
        selection.add(bank, &indices).map_err(|e| Failure::Usage(e.to_string()))?;
    }
    if selection.is_empty() {
        return Err(Failure::Usage("the PCR file holds no values".into()));
    }
    Ok(selection)
}

fn tpm_quote(args: &TpmQuoteArgs) -> Result<serde_json::Value, Failure> {
    let ak = load_ak(&args.ak)?;
    let attest = read(&args.files.quote)?;
    let signature = Signature::parse(&read(&args.files.signature)?).map_err(|e| rejected("signature")(&e))?;
    let nonce = args.files.nonce()?;
    // The selection is needed to read a values-format PCR file; anything but a quote is
    // refused here with the verifier's own error.
    let parsed = Attest::parse(&attest).map_err(|e| rejected("quote")(&e))?;
    let Attested::Quote { selection: quoted_selection, .. } = parsed.attested() else {
        return Err(rejected("quote")(&QuoteError::NotAQuote(parsed.kind())));
    };
    let pcrs = load_pcrs(&args.files.pcrs, quoted_selection)?;
    let required = required_selection(&pcrs, args.pcr_bank.as_deref(), quoted_selection)?;
    let expected = QuoteExpectation { qualifying_data: &nonce, selection: &required };
    let (ak_ref, ak_kind) = match &ak {
        AkFile::Tpm(public) => (Ak::Tpm(public), "tpm_public_area"),
        AkFile::Bare(key) => (Ak::Vouched(key), "bare_public_key_attributes_unchecked"),
    };
    let quote =
        verify_quote(ak_ref, &attest, &signature, &pcrs, &expected).map_err(|e| rejected("quote")(&e))?;
    let mut claims = serde_json::Map::new();
    claims.insert("ak".into(), json!(ak_kind));
    claims.insert("quote".into(), json!(quote));
    if let Some(path) = &args.event_log {
        let bytes = read(path)?;
        let log = EventLog::parse(&bytes).map_err(|e| rejected("event log")(&e))?;
        let replayed = log.replay();
        let mut summaries = Vec::new();
        for (bank, quoted) in required.iter() {
            // The firmware log speaks for the quoted PCRs it extends; the rest (IMA,
            // dynamic launch) are outside it.
            let logged: Vec<u8> =
                replayed.bank(bank).map(|(index, _)| index).filter(|i| quoted.contains(i)).collect();
            let matched =
                log.check_against(quote.pcrs(), bank, &logged).map_err(|e| rejected("event log")(&e))?;
            summaries.push(json!({ "pcrs_replayed": matched.pcrs(), "boot": matched.summary() }));
        }
        claims.insert("event_log".into(), json!(summaries));
    }
    Ok(claims.into())
}

fn event_log(args: &EventLogArgs) -> Result<serde_json::Value, Failure> {
    let bytes = read(&args.log)?;
    let log = EventLog::parse(&bytes).map_err(|e| rejected("event log")(&e))?;
    let summaries: Vec<_> = log.banks().iter().map(|bank| log.summary(*bank)).collect();
    Ok(json!({
        "format": format!("{:?}", log.format()),
        "events": log.events().len(),
        "startup_locality": log.startup_locality(),
        "replayed_pcrs": log.replay(),
        "boot": summaries,
    }))
}

//! `mooring-broker policy check|learn`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_attestation::x509::bundle::parse_one_certificate;

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::verify::{verification_time, verify_snp_report, SnpReportArgs};
use super::{read_file, Failure};
use crate::config::{Config, SnpConfig, TpmConfig};
use crate::policy::{learn, Policy};
use crate::service::dry_run::{appraise_azure_evidence, judge, parse_evidence, Verifiers};
use crate::service::ek_roots;
use crate::service::snp::verifier as snp_verifier;
use mooring_attestation::protocol::Decision;
use mooring_serve::ConfigFile as _;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Load a policy file and report the first error with its line.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Print a TPM class pinning a known-good VM's PCR values, with measured-boot rules
    /// (boot applications, Secure Boot, command line) from its event log.
    LearnTpm(LearnTpmArgs),
    /// Print an SEV-SNP class admitting a known-good VM's launch measurement at its
    /// reported TCB or newer (the report is verified against AMD's roots first).
    LearnSnp(LearnSnpArgs),
    /// Judge recorded evidence (`mooring-client --record`, or a public vector) against a
    /// policy as a live attestation would, skipping only freshness: one JSON line per
    /// evidence file with the class that admits it or the refusal; exit status 0 when every
    /// one is admitted, 1 when one is refused, 2 when a file cannot be read.
    DryRun(DryRunArgs),
    /// Print an Azure confidential VM class admitting a known-good VM's launch measurement,
    /// TCB, vTPM and PCR values (its evidence is verified and appraised first).
    LearnAzure(LearnAzureArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DryRunArgs {
    /// The policy to judge with.
    #[arg(long)]
    policy: PathBuf,
    /// The broker's configuration, for its EK roots and SEV-SNP roots and VCEKs (default:
    /// no EK roots, AMD's built-in roots).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Judge as at this time, RFC 3339 (certificate validity); default now.
    #[arg(long)]
    at: Option<String>,
    /// Evidence files (`--evidence A B` or `--evidence A --evidence B`).
    #[arg(long = "evidence", required = true, num_args = 1..)]
    evidence: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct LearnAzureArgs {
    /// Name of the class to write.
    #[arg(long)]
    class: String,
    /// The VM's evidence (recorded, or an Azure vector).
    #[arg(long)]
    evidence: PathBuf,
    /// PCR indices to pin, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7")]
    indices: Vec<u8>,
    /// The broker's configuration, for its SEV-SNP test roots and VCEK directory (evidence
    /// recorded without a VCEK chain); default: AMD's built-in roots only.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Verify as at this time, RFC 3339; default now.
    #[arg(long)]
    at: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LearnSnpArgs {
    /// Name of the class to write.
    #[arg(long)]
    class: String,
    #[command(flatten)]
    evidence: SnpReportArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LearnTpmArgs {
    /// Name of the class to write.
    #[arg(long)]
    class: String,
    /// PCR values as JSON {"sha256": {"0": "hex", ...}} (e.g. from `mooring-client status --pcrs`).
    #[arg(long)]
    pcrs: PathBuf,
    /// PCR bank to pin.
    #[arg(long, default_value = "sha256")]
    bank: String,
    /// PCR indices to quote and pin, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7")]
    indices: Vec<u8>,
    /// The VM's measured-boot event log; adds event-log rules (it must replay to the PCRs).
    #[arg(long)]
    event_log: Option<PathBuf>,
    /// The VM's EK certificate; the class then matches its issuer.
    #[arg(long)]
    ek_certificate: Option<PathBuf>,
    /// A network (CIDR) the class's VMs attest from; repeat for several.
    #[arg(long = "network")]
    networks: Vec<String>,
    /// The kernel command line the VM booted with (its /proc/cmdline), for boot chains whose
    /// log does not carry it as text (the kernel EFI stub, a UKI's .cmdline); it must be
    /// measured in a quoted PCR.
    #[arg(long)]
    kernel_cmdline: Option<String>,
}

pub(crate) fn run(command: &PolicyCommand) -> Result<String, Failure> {
    match command {
        PolicyCommand::Check { file } => {
            let policy = Policy::load(file).map_err(|e| Failure::Rejected(e.to_string()))?;
            Ok(format!(
                "{}: {} classes ({}), sha256 {}",
                file.display(),
                policy.classes().len(),
                policy.classes().iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
                policy.digest()
            ))
        }
        PolicyCommand::LearnTpm(args) => {
            let bank = HashAlg::from_name(&args.bank)
                .ok_or_else(|| Failure::Usage(format!("unknown bank {}", args.bank)))?;
            let text = String::from_utf8(read_file(&args.pcrs)?)
                .map_err(|_| Failure::Usage(format!("{}: not UTF-8 JSON", args.pcrs.display())))?;
            let values = PcrValues::from_json(&text)
                .map_err(|e| Failure::Usage(format!("{}: {e}", args.pcrs.display())))?;
            let log = args.event_log.as_deref().map(read_file).transpose()?;
            let issuer = match &args.ek_certificate {
                Some(path) => {
                    let cert = parse_one_certificate(&read_file(path)?)
                        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                    Some(cert.issuer().to_owned())
                }
                None => None,
            };
            learn::tpm_class(&learn::TpmReference {
                name: &args.class,
                bank,
                pcrs: &args.indices,
                values: &values,
                event_log: log.as_deref(),
                ek_issuer: issuer.as_deref(),
                networks: &args.networks,
                kernel_cmdline: args.kernel_cmdline.as_deref(),
            })
            .map_err(Failure::Rejected)
        }
        PolicyCommand::DryRun(args) => dry_run(args),
        PolicyCommand::LearnAzure(args) => learn_azure(args),
        PolicyCommand::LearnSnp(args) => {
            let report = verify_snp_report(&args.evidence)?;
            let claims = report.claims();
            Ok(learn::snp_class(
                &args.class,
                report.measurement(),
                claims.reported_tcb().parts(),
                report.policy().debug_allowed(),
            ))
        }
    }
}

fn dry_run(args: &DryRunArgs) -> Result<String, Failure> {
    // Judging evidence needs no secret: the policy's secret files may be the broker's alone.
    let policy = Policy::load_proposal(&args.policy).map_err(|e| Failure::Usage(e.to_string()))?;
    let (tpm, snp) = evidence_settings(args.config.as_deref())?;
    let ek_roots = ek_roots(&tpm).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let snp = snp_verifier(&snp).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let verifiers = Verifiers { ek_roots: &ek_roots, snp: &snp, now: at(args.at.as_deref())? };
    let mut refused = 0;
    let mut out = std::io::stdout().lock();
    for path in &args.evidence {
        let evidence = parse_evidence(&read_file(path)?)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        // Offline, no administrator enrolled or blocked anything.
        let decision = judge(&verifiers, &policy, &|_| Ok(None), &evidence, None);
        refused += usize::from(matches!(decision, Decision::Refused { .. }));
        let line = serde_json::json!({ "evidence": path.display().to_string(), "result": decision });
        let _ = writeln!(out, "{line}");
    }
    if refused > 0 {
        return Err(Failure::Rejected(format!("{refused} of {} refused", args.evidence.len())));
    }
    Ok(format!("{} admitted", args.evidence.len()))
}

fn learn_azure(args: &LearnAzureArgs) -> Result<String, Failure> {
    let evidence = parse_evidence(&read_file(&args.evidence)?)
        .map_err(|e| Failure::Usage(format!("{}: {e}", args.evidence.display())))?;
    let (_, snp) = evidence_settings(args.config.as_deref())?;
    let verifier = snp_verifier(&snp).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let appraisal = appraise_azure_evidence(&verifier, &evidence, at(args.at.as_deref())?)
        .map_err(|refusal| Failure::Rejected(format!("{}: {}", refusal.code.as_str(), refusal.reason)))?;
    learn::azure_class(&args.class, &appraisal, &args.indices).map_err(Failure::Rejected)
}

/// The broker configuration's EK roots and SEV-SNP settings (test roots, VCEK directory);
/// without one, no EK roots and AMD's built-in roots.
fn evidence_settings(config: Option<&std::path::Path>) -> Result<(TpmConfig, SnpConfig), Failure> {
    match config {
        Some(path) => {
            let config = Config::load(path).map_err(|e| Failure::Usage(format!("{e:#}")))?;
            Ok((config.tpm, config.snp))
        }
        None => Ok(Default::default()),
    }
}

fn at(text: Option<&str>) -> Result<SystemTime, Failure> {
    let unix = verification_time(text)?;
    Ok(UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0)))
}

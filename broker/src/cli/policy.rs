//! `mooring-broker policy check|learn`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use mooring_attestation::tpm::alg::HashAlg;
use mooring_attestation::tpm::pcr::PcrValues;
use mooring_attestation::x509::bundle::parse_one_certificate;

use super::verify::{verify_snp_report, SnpReportArgs};
use super::{read_file, Failure};
use crate::policy::{learn, Policy};

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

//! `mooring-broker identity ek --public FILE`: the body of `POST /v1/admin/identities` that
//! enrolls (or blocks) a TPM by its EK public key, for TPMs whose EK has no certificate the
//! broker can check (AWS NitroTPM: the key comes from the EC2 API, README "Clouds and
//! platforms"). The identity is the one the broker computes at `tpm/begin` from the EK the
//! VM presents, so the two can be compared.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use mooring_attestation::protocol::{HardwareId, IdentityChange, IdentityStatus};

use super::{public_key, Failure};
use crate::service::tpm::ek_hardware_id;

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Print the admin API body (JSON) enrolling or blocking a TPM by its EK public key.
    Ek(EkArgs),
}

#[derive(Debug, Args)]
pub(crate) struct EkArgs {
    /// The EK public key: DER SubjectPublicKeyInfo or TPMT_PUBLIC (as AWS EC2
    /// `get-instance-tpm-ek-pub` returns it, base64-decoded), PEM, or TPM2B_PUBLIC
    /// (`tpm2_createek -u`).
    #[arg(long)]
    public: PathBuf,
    /// What the TPM becomes.
    #[arg(long, value_enum, default_value_t = Status::Enrolled)]
    status: Status,
}

/// [`IdentityStatus`] on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Status {
    /// Admitted without an EK certificate.
    Enrolled,
    /// Refused, and its credentials refused.
    Blocked,
}

pub(crate) fn run(command: &IdentityCommand) -> Result<String, Failure> {
    let IdentityCommand::Ek(args) = command;
    let ek = public_key::load(&args.public, "EK public key")?;
    let status = match args.status {
        Status::Enrolled => IdentityStatus::Enrolled,
        Status::Blocked => IdentityStatus::Blocked,
    };
    let change = IdentityChange { identity: HardwareId::Ek(ek_hardware_id(ek.key())), status };
    serde_json::to_string(&change).map_err(|e| Failure::Usage(format!("encoding the body: {e}")))
}

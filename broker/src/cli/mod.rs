//! Command-line interface. Exit status: 0 success / verified, 1 evidence rejected (one
//! line on stderr says why), 2 usage or I/O error.

mod audit;
mod identity;
mod policy;
mod public_key;
mod serve;
mod store;
mod verify;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Mooring attested credential broker.
#[derive(Debug, Parser)]
#[command(name = "mooring-broker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify attestation evidence offline and print its claims as JSON (for debugging
    /// evidence; nothing is stored).
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// Run the broker service (HTTPS).
    Serve(serve::ServeArgs),
    /// Check a policy file, or learn reference values from a known-good VM.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Store tools: move an embedded store into PostgreSQL.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Admin API bodies for hardware identities (enroll an EK that has no certificate).
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
}

/// How a command ended.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The evidence was examined and refused.
    Rejected(String),
    /// The command could not run: bad arguments, unreadable files.
    Usage(String),
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Verify(command) => verify::run(command),
        Command::Serve(args) => serve::run(&args),
        Command::Policy(command) => policy::run(&command),
        Command::Audit(command) => audit::run(&command),
        Command::Store(command) => store::run(&command),
        Command::Identity(command) => identity::run(&command),
    };
    match result {
        Ok(output) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{output}");
            ExitCode::SUCCESS
        }
        Err(Failure::Rejected(reason)) => {
            eprintln!("rejected: {reason}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(reason)) => {
            eprintln!("error: {reason}");
            ExitCode::from(2)
        }
    }
}

/// Reads a file named on the command line.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

//! The load generator's parts, one domain concept each: the simulated fleet (`tpm_vm`,
//! `snp_vm`, `ek_ca`, `boot_log`), the broker under test (`target`, `procfs`), the
//! HTTPS driver (`drive`, `client`, `latency`), the crypto floor (`floor`) and the report;
//! the abuse mode (`under_abuse`).

mod boot_log;
mod client;
mod drive;
mod ek_ca;
mod fleet;
mod floor;
mod options;
mod procfs;
mod report;
mod run;
mod snp_vm;
mod target;
mod tpm_vm;
mod under_abuse;

use std::process::ExitCode;

use clap::Parser as _;

/// Parses the options, runs the benchmark and prints the report. Exit status: 0 when
/// every attestation succeeded, 1 when some failed, 2 on a setup error.
pub(crate) fn main() -> ExitCode {
    let options = options::Options::parse();
    if options.setup_only {
        return match run::write_setup(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mooring-load: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    // Either run prints its report and counts its failed attestations.
    let outcome = if options.abuse.is_empty() {
        run::run(&options).map(|report| {
            report.print(options.json);
            report.errors()
        })
    } else {
        under_abuse::run(&options).map(|report| {
            report.print(options.json);
            report.errors()
        })
    };
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("mooring-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

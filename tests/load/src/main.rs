//! `mooring-load`: the boot-storm benchmark. Simulates many VMs (software TPMs and SEV-SNP
//! guests) attesting at once against a real `mooring-broker serve` over HTTPS, and
//! compares the broker's CPU per attestation with the crypto floor measured in the same
//! run. `mooring-load --help` lists the options; README "Boot-storm benchmark" explains it.
//!
//! Its parts, one domain concept each: the simulated fleet (`fleet`, `tpm_vm`, `snp_vm`,
//! `ek_ca`, `boot_log`), the broker under test (`target`, `procfs`), the HTTPS driver
//! (`drive`, `client`), the crypto floor (`floor`), the run and its report (`options`, `run`,
//! `report`); the abuse mode (`under_abuse`, with the harness's abuse traffic).

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

/// The generator shares the machine with the broker: glibc's malloc cost it an eighth of
/// its CPU, CPU the broker then lacked.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parses the options, runs the benchmark and prints the report. Exit status: 0 when
/// every attestation succeeded, 1 when some failed, 2 on a setup error.
fn main() -> ExitCode {
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

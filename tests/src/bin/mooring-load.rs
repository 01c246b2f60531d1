//! `mooring-load`: the boot-storm benchmark. Simulates many VMs (software TPMs and SEV-SNP
//! guests) attesting at once against a real `mooring-broker serve` over HTTPS, and
//! compares the broker's CPU per attestation with the crypto floor measured in the same
//! run. `mooring-load --help` lists the options; README "Boot-storm benchmark" explains it.

#[path = "../load/mod.rs"]
mod load;

/// The generator shares the machine with the broker: glibc's malloc cost it an eighth of
/// its CPU, CPU the broker then lacked.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    load::main()
}

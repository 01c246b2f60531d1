//! `mooring-broker`: the attested credential broker's service and operator CLI.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under a boot storm glibc spent a tenth of the
/// broker's CPU in malloc and free, and its per-thread arenas grew resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    mooring_broker::run(mooring_broker::Cli::parse())
}

//! `mooring-broker`: the attested credential broker's service and operator CLI.
#![forbid(unsafe_code)]

mod audit;
mod challenge;
mod cli;
mod config;
mod files;
mod http;
mod issuer;
mod metrics;
mod policy;
mod refusal;
mod service;
mod store;
mod tally;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under a boot storm glibc spent a tenth of the
/// broker's CPU in malloc and free, and its per-thread arenas grew resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}

//! `mooring-broker`: the attested credential broker's service and operator CLI.
#![forbid(unsafe_code)]

mod audit;
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

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}

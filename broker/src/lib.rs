//! The attested credential broker: the service (`serve`) and the operator CLI, as a
//! library so the binary stays a shell and the fuzz targets reach the broker's own parsers.
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
mod records;
mod refusal;
mod service;
mod store;
mod tally;

pub use cli::{run, Cli};

/// Entry points for the fuzz targets (`fuzz/`): the broker's parsers of operator input.
#[doc(hidden)]
pub mod fuzz {
    /// Parses and compiles a policy file's text (secrets are read relative to a directory
    /// that does not exist, so a class naming a secret file is refused).
    pub fn policy_file(text: &str) {
        let _ = crate::policy::Policy::parse(text, std::path::Path::new("/nonexistent/policy.toml"));
    }
}

//! Test harness shared by the workspace's tests: real software TPMs ([`swtpm::Swtpm`]: one
//! swtpm process per test, own state, own loopback ports, EK certificates from a local CA),
//! and tpm2-tools as an
//! independent client ([`tpm2_tools::Tpm2Tools`]), and real PostgreSQL servers for the
//! replicated broker ([`postgres::Postgres`]), and real VMs with a UEFI measured boot
//! (qemu + OVMF + swtpm, [`realvm`]), and abuse traffic from many loopback addresses
//! (floods, slow bodies: [`abuse`]), and Azure-style confidential VMs (a swtpm holding a
//! paravisor's AK and HCL report, and a stand-in for the instance metadata service:
//! [`azure`]).
//!
//! TPM tests start with [`swtpm::Swtpm::start_or_skip`] (or [`prereq::require_tools`]): on a
//! machine without swtpm they print why they skip, and with `CI` set they fail instead.
//! The library part returns [`HarnessError`]; only the `*_or_skip` / `require_*` helpers
//! panic, and are meant for test bodies. The test vectors are read with `mooring-testdata`.

use std::path::PathBuf;

pub mod abuse;
pub mod azure;
pub mod broker;
pub mod client;
mod cmd;
pub mod cvm;
mod error;
pub mod measured_boot;
pub mod payments;
pub mod postgres;
pub mod prereq;
pub mod realvm;
pub mod swtpm;
pub mod tpm2_tools;

pub use error::HarnessError;
pub use postgres::Postgres;
pub use swtpm::{EkCaFiles, EkKind, Swtpm, SwtpmOptions};
pub use tpm2_tools::Tpm2Tools;

/// A binary of this workspace in `target/<profile>/`: next to the running executable (a
/// binary such as `mooring-demo`) or one level up from it (a test in `target/<profile>/deps`);
/// `$MOORING_BIN_DIR/<name>` when that is set. The README's test command builds the
/// binaries before running the tests.
#[must_use]
#[allow(clippy::panic)]
pub fn workspace_binary(name: &str) -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("MOORING_BIN_DIR") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => {
            let exe = std::env::current_exe()
                .unwrap_or_else(|e| panic!("cannot locate the running executable to find {name}: {e}"));
            exe.ancestors().skip(1).take(2).map(PathBuf::from).collect()
        }
    };
    let found = candidates.iter().map(|dir| dir.join(name)).find(|path| path.is_file());
    found.unwrap_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        panic!(
            "{name} is missing in {}: build it first (cargo build --workspace --bins)",
            looked.join(" and ")
        )
    })
}

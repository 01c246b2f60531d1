//! Shared by the broker's integration tests: the broker process harness lives in
//! `mooring-tests`; the VM simulated with tpm2-tools on a real swtpm is here.
#![allow(dead_code, unused_imports, unreachable_pub)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

pub mod vm;

pub use mooring_tests::broker::{assert_refused, loopback, read, Broker, BrokerSetup};

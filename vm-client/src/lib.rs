//! `mooring-client`: the boot-time service on each VM. It proves the VM to the Mooring
//! broker (a TPM 2.0 quote through tss-esapi, an AMD SEV-SNP report from `/dev/sev-guest`,
//! or an Azure confidential VM's HCL report and vTPM quote), stores the credentials it gets
//! in a runtime directory, and renews them before they expire.
//!
//! - [`config`]: the TOML configuration (broker URL, pinned broker CA, directories, evidence).
//! - [`api`]: the broker's HTTPS API, pinned to the configured CA, from a chosen source address.
//! - [`tpm`]: EK, AK (kept across reboots), credential key K, the challenge, sealed secrets,
//!   the TSS2 PEM key file, and signing with K.
//! - [`snp`]: K in guest memory, the report bound to the nonce and K, behind [`snp::SnpDevice`].
//! - [`azure`]: the HCL report from the vTPM's NV, the VCEK chain from the instance metadata
//!   service, and the TPM path's quote and certified K by the paravisor's AK.
//! - [`record`]: `--record FILE`, each exchange as `RecordedEvidence` for a policy dry run.
//! - [`runtime`]: atomic 0600 files in a 0700 tmpfs directory, and the status they record.
//! - [`service`]: attest once, or keep the credentials fresh (renewal, backoff, refusals).
//! - [`tls`]: a rustls client configuration that signs with K (mutual TLS with the X.509-SVID).
//! - [`possession`]: a signed proof of possession of K for one request to a relying service.
//! - [`logging`]: stderr logging filtered by `MOORING_LOG`.
#![deny(unsafe_code)]

pub mod api;
pub mod azure;
mod bounded;
pub mod config;
mod der;
pub mod logging;
pub mod possession;
pub mod record;
pub mod runtime;
pub mod service;
pub mod snp;
pub mod tls;
pub mod tpm;

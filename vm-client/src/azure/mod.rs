//! The Azure confidential VM path. An Azure CVM has no `/dev/sev-guest`: its paravisor
//! (the HCL) asks the SEV-SNP firmware for a report whose `REPORT_DATA` commits to runtime
//! claims naming the vTPM's attestation key (`HCLAkPub`, kept at persistent handle
//! 0x81000003) and endorsement key (`HCLEkPub`), and writes that HCL report to vTPM NV index
//! 0x01400001. The client sends the report, the VCEK chain from the instance metadata
//! service ([`thim`]), and the TPM path's answer by that AK ([`challenge::answer`]): a quote
//! of the challenge's PCRs bound to the nonce and K, K certified by the AK, and the event log.
//!
//! The AK is the paravisor's: the client never creates, replaces or evicts it. K is made and
//! kept as on the TPM path ([`key`]), so credentials, mutual TLS and possession proofs work
//! the same. The broker releases no sealed secrets on this path.

pub mod thim;

use std::path::{Path, PathBuf};

use mooring_attestation::protocol::AzureFinishRequest;
use mooring_attestation::snp::azure::{HclReport, MAX_HCL_REPORT_LEN};
use tss_esapi::Context;

use crate::api::BrokerApi;
use crate::config::AzureConfig;
use crate::service::{AttestError, Attested, Attester};
use crate::tpm::nv::{self, NvReader};
use crate::tpm::{ak, challenge, key, keyfile, open, TpmError};

/// Errors of the Azure path that are not the TPM's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AzureError {
    /// No key at the AK handle.
    #[error("no key at persistent handle {handle:#010x}: the paravisor of an Azure confidential VM keeps its AK there (evidence.ak_handle)")]
    NoAk {
        /// The handle.
        handle: u32,
    },
    /// The NV index is not defined.
    #[error("NV index {index:#010x} is not defined: the paravisor of an Azure confidential VM writes its HCL report there (evidence.hcl_report_index)")]
    NoHclReport {
        /// The index.
        index: u32,
    },
    /// The NV index does not hold an HCL report.
    #[error("NV index {index:#010x} does not hold an HCL report: {reason}")]
    NotHclReport {
        /// The index.
        index: u32,
        /// What the parser found.
        reason: String,
    },
    /// The TPM failed.
    #[error(transparent)]
    Tpm(#[from] TpmError),
}

/// Attests with the vTPM reached through the configured TCTI.
#[derive(Debug)]
pub struct AzureAttester {
    config: AzureConfig,
    state_dir: PathBuf,
}

impl AzureAttester {
    /// An attester keeping K's blobs in `state_dir`.
    #[must_use]
    pub fn new(config: AzureConfig, state_dir: &Path) -> Self {
        Self { config, state_dir: state_dir.to_owned() }
    }

    /// The HCL report as read from NV (with the index's zero fill), checked to parse.
    fn hcl_report(&self, context: &mut Context) -> Result<Vec<u8>, AzureError> {
        let index = self.config.hcl_report_index;
        let report = nv::read(context, index, NvReader::Owner, MAX_HCL_REPORT_LEN)?
            .ok_or(AzureError::NoHclReport { index })?;
        HclReport::parse(&report).map_err(|e| AzureError::NotHclReport { index, reason: e.to_string() })?;
        Ok(report)
    }

    fn with_context(&self, context: &mut Context, api: &BrokerApi) -> Result<Attested, AttestError> {
        let handle = self.config.ak_handle;
        let ak = ak::persistent_key(context, handle)?.ok_or(AzureError::NoAk { handle })?;
        let hcl_report = self.hcl_report(context)?;
        let key = key::ensure(context, &self.state_dir)?;
        let vcek_chain = match thim::vcek_chain(&self.config.vcek_url) {
            Ok(chain) => Some(chain),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "no VCEK chain from the instance metadata service: the broker must have this chip's VCEK provisioned"
                );
                None
            }
        };
        let challenge = api.azure_begin()?;
        let answer = challenge::answer(
            context,
            ak.handle,
            &key,
            &challenge.nonce,
            &challenge.pcr_selection,
            &self.config.event_log,
        )?;
        let issued = api.azure_finish(&AzureFinishRequest {
            challenge_id: challenge.challenge_id,
            hcl_report,
            vcek_chain,
            ak_public: ak.public,
            quote: answer.quote.attest,
            quote_signature: answer.quote.signature,
            pcrs: answer.quote.pcrs,
            event_log: answer.event_log,
            key_public: key.public.clone(),
            certify: answer.certify,
            certify_signature: answer.certify_signature,
        })?;
        if !issued.secrets.is_empty() {
            tracing::warn!(
                count = issued.secrets.len(),
                "the broker sent sealed secrets to an Azure confidential VM; they are not released on this path and were not opened"
            );
        }
        Ok(Attested { key_pem: keyfile::to_pem(&key), issued, secrets: Vec::new(), ak_handle: Some(handle) })
    }
}

impl Attester for AzureAttester {
    fn kind(&self) -> &'static str {
        "azure"
    }

    fn attest(&mut self, api: &BrokerApi) -> Result<Attested, AttestError> {
        let mut context = open(&self.config.tcti)?;
        self.with_context(&mut context, api)
    }
}

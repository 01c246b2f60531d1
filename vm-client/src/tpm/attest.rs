//! The TPM protocol with the broker, start to finish (DESIGN.md, section 3, TPM path).

use std::path::{Path, PathBuf};

use mooring_attestation::protocol::{TpmBeginRequest, TpmFinishRequest};
use tss_esapi::Context;

use super::ek::{self, Ek};
use super::{ak, challenge, key, keyfile, open, unseal};
use crate::api::BrokerApi;
use crate::config::TpmConfig;
use crate::service::{AttestError, Attested, Attester};

/// Attests with the TPM reached through the configured TCTI.
#[derive(Debug)]
pub struct TpmAttester {
    config: TpmConfig,
    state_dir: PathBuf,
}

impl TpmAttester {
    /// An attester keeping its AK record and K's blobs in `state_dir`.
    #[must_use]
    pub fn new(config: TpmConfig, state_dir: &Path) -> Self {
        Self { config, state_dir: state_dir.to_owned() }
    }

    fn with_ek(&self, context: &mut Context, ek: &Ek, api: &BrokerApi) -> Result<Attested, AttestError> {
        let certificate = ek::read_certificate(context, self.config.ek, self.config.ek_certificate_index)?;
        if certificate.is_none() {
            tracing::warn!("no EK certificate in NV: the broker admits this VM only if its EK is enrolled");
        }
        let ak = ak::ensure(context, ek, self.config.ak_handle, &self.state_dir)?;
        if ak.created {
            tracing::info!(
                handle = format!("{:#010x}", self.config.ak_handle),
                "created the AK and made it persistent"
            );
        }
        let key = key::ensure(context, &self.state_dir)?;
        let challenge = api.tpm_begin(&TpmBeginRequest {
            ek_public: ek.public.clone(),
            ek_certificate: certificate,
            ak_public: ak.public.clone(),
            key_public: key.public.clone(),
        })?;
        let activated_secret = challenge::activate(context, ak.handle, ek.handle, &challenge)?;
        let answer = challenge::answer(
            context,
            ak.handle,
            &key,
            &challenge.nonce,
            &challenge.pcr_selection,
            &self.config.event_log,
        )?;
        let issued = api.tpm_finish(&TpmFinishRequest {
            challenge_id: challenge.challenge_id,
            activated_secret,
            quote: answer.quote.attest,
            quote_signature: answer.quote.signature,
            pcrs: answer.quote.pcrs,
            event_log: answer.event_log,
            event_log_sha256: None,
            certify: answer.certify,
            certify_signature: answer.certify_signature,
        })?;
        let secrets = issued
            .secrets
            .iter()
            .map(|secret| {
                unseal::unseal(context, ek.handle, secret).map(|value| (secret.name.clone(), value))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Attested {
            key_pem: keyfile::to_pem(&key),
            issued,
            secrets,
            ak_handle: Some(self.config.ak_handle),
        })
    }
}

impl Attester for TpmAttester {
    fn kind(&self) -> &'static str {
        "tpm"
    }

    fn attest(&mut self, api: &BrokerApi) -> Result<Attested, AttestError> {
        let mut context = open(&self.config.tcti)?;
        let ek = ek::recreate(&mut context, self.config.ek)?;
        let result = self.with_ek(&mut context, &ek, api);
        let _ = context.flush_context(ek.handle.into());
        result
    }
}

//! A simulated TPM VM: an ECC EK certified by the fleet's EK CA, an AK and a credential
//! key K held as software keys with the attributes real TPM keys have, and the TPM
//! commands the protocol needs (ActivateCredential, Quote, Certify) done in software.

use anyhow::Context as _;
use mooring_attestation::protocol::{tpm_qualifying_data, TpmBeginRequest, TpmChallenge, TpmFinishRequest};
use mooring_attestation::tpm::certify::NON_EXPORTABLE_SIGNING_KEY;
use mooring_attestation::tpm::public::ObjectAttributes;
use mooring_attestation::tpm::sim::activate::SoftEk;
use mooring_attestation::tpm::sim::{self, SoftKey};

use super::boot_log::BootImage;
use super::ek_ca::EkCa;

/// The attributes `tpm2_create` gives K in the VM client.
const K_ATTRIBUTES: u32 = NON_EXPORTABLE_SIGNING_KEY | ObjectAttributes::USER_WITH_AUTH;

/// One VM's TPM.
#[derive(Debug)]
pub(crate) struct TpmVm {
    ek: SoftEk,
    ak: SoftKey,
    ak_name: Vec<u8>,
    key_public: Vec<u8>,
    /// The `begin` request, serialized once: it never changes.
    begin_body: Vec<u8>,
    /// TPM2_Certify(K) by the AK: bound to no challenge, so made once.
    certify: Vec<u8>,
    certify_signature: Vec<u8>,
}

impl TpmVm {
    /// A fresh VM whose EK `ca` certifies.
    pub(crate) fn new(ca: &EkCa) -> anyhow::Result<Self> {
        let ek = SoftEk::generate()?;
        let ek_certificate = ca.certify(&ek)?;
        let ak = SoftKey::new(sim::AK_ATTRIBUTES);
        let key = SoftKey::new(K_ATTRIBUTES);
        let key_public = key.tpm2b_public();
        let begin = TpmBeginRequest {
            ek_public: ek.tpm2b_public(),
            ek_certificate: Some(ek_certificate),
            ak_public: ak.tpm2b_public(),
            key_public: key_public.clone(),
        };
        let certify = sim::certify_fields(&[]).certify(&key.public().name());
        let certify_signature = ak.sign(&certify);
        Ok(Self {
            ak_name: ak.public().name(),
            ek,
            ak,
            key_public,
            begin_body: serde_json::to_vec(&begin)?,
            certify,
            certify_signature,
        })
    }

    /// The JSON body of `POST /v1/tpm/begin`.
    pub(crate) fn begin_body(&self) -> &[u8] {
        &self.begin_body
    }

    /// What the VM answers to `challenge`: the activated secret, a quote of the requested
    /// PCRs bound to the nonce and K, the certification of K, and the event log.
    pub(crate) fn finish(
        &self,
        challenge: &TpmChallenge,
        boot: &BootImage,
    ) -> anyhow::Result<TpmFinishRequest> {
        Ok(TpmFinishRequest { event_log: Some(boot.log().to_vec()), ..self.evidence(challenge, boot)? })
    }

    /// [`TpmVm::finish`] as the JSON body sent, the event log as `sent`. The log, the
    /// same for every VM of the image, is spliced in already encoded (base64 and JSON
    /// encoding 45 KB per request was a quarter of the generator's CPU).
    pub(crate) fn finish_body(
        evidence: &TpmFinishRequest,
        boot: &BootImage,
        sent: LogSent,
    ) -> anyhow::Result<Vec<u8>> {
        let named = TpmFinishRequest {
            event_log_sha256: (sent != LogSent::Whole).then(|| boot.log_sha256().to_owned()),
            ..evidence.clone()
        };
        let mut body = serde_json::to_vec(&named)?;
        if sent != LogSent::Named {
            anyhow::ensure!(body.pop() == Some(b'}'), "a JSON object ends with a brace");
            body.extend_from_slice(b",\"event_log\":");
            body.extend_from_slice(boot.log_json());
            body.push(b'}');
        }
        Ok(body)
    }

    /// The answer without the event log.
    pub(crate) fn evidence(
        &self,
        challenge: &TpmChallenge,
        boot: &BootImage,
    ) -> anyhow::Result<TpmFinishRequest> {
        let activated_secret = self
            .ek
            .activate_credential(&self.ak_name, &challenge.credential_blob, &challenge.encrypted_secret)
            .context("ActivateCredential")?;
        let quoted = boot.quoted(&challenge.pcr_selection)?;
        let digest = quoted.values.digest(&quoted.selection, super::boot_log::BANK)?;
        let qualifying = tpm_qualifying_data(&challenge.nonce, &self.key_public);
        let quote = sim::quote_fields(&qualifying).quote(&quoted.selection, &digest);
        let quote_signature = self.ak.sign(&quote);
        Ok(TpmFinishRequest {
            challenge_id: challenge.challenge_id.clone(),
            activated_secret,
            quote,
            quote_signature,
            pcrs: quoted.map,
            event_log: None,
            event_log_sha256: None,
            certify: self.certify.clone(),
            certify_signature: self.certify_signature.clone(),
        })
    }
}

/// How a `finish` carries the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogSent {
    /// By its SHA-256 alone.
    Named,
    /// Whole, with its SHA-256 (the broker keeps it if it admits the VM).
    WholeAndNamed,
    /// Whole, without its digest.
    Whole,
}

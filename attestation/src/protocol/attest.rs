//! The attestation exchange: `begin` and `finish` for each evidence kind, and the
//! credentials a VM receives.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{b64, b64_option};

/// `POST /v1/tpm/begin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmBeginRequest {
    /// The EK's `TPM2B_PUBLIC`, recreated from its standard template.
    #[serde(with = "b64")]
    pub ek_public: Vec<u8>,
    /// The EK certificate (DER, as read from NV). May be absent only for an enrolled EK.
    #[serde(default, with = "b64_option", skip_serializing_if = "Option::is_none")]
    pub ek_certificate: Option<Vec<u8>>,
    /// The AK's `TPM2B_PUBLIC`.
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
    /// The credential key K's `TPM2B_PUBLIC` (a non-exportable signing key in the TPM).
    #[serde(with = "b64")]
    pub key_public: Vec<u8>,
}

/// Answer to [`TpmBeginRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmChallenge {
    /// Identifies the challenge at `finish`.
    pub challenge_id: String,
    /// Fresh random nonce; the quote's qualifying data is [`tpm_qualifying_data`](super::tpm_qualifying_data) of it.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// `TPM2B_ID_OBJECT` from MakeCredential(EK, AK name, secret).
    #[serde(with = "b64")]
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` for ActivateCredential.
    #[serde(with = "b64")]
    pub encrypted_secret: Vec<u8>,
    /// PCRs to quote, bank name to indices.
    pub pcr_selection: BTreeMap<String, Vec<u8>>,
    /// Unix time (seconds) after which `finish` is refused.
    pub expires_at: i64,
}

/// `POST /v1/tpm/finish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmFinishRequest {
    /// From [`TpmChallenge::challenge_id`].
    pub challenge_id: String,
    /// The secret ActivateCredential recovered.
    #[serde(with = "b64")]
    pub activated_secret: Vec<u8>,
    /// `TPMS_ATTEST` of the quote, as the TPM returned it.
    #[serde(with = "b64")]
    pub quote: Vec<u8>,
    /// `TPMT_SIGNATURE` over `quote`.
    #[serde(with = "b64")]
    pub quote_signature: Vec<u8>,
    /// The quoted PCR values: bank name to index to hex value.
    pub pcrs: BTreeMap<String, BTreeMap<String, String>>,
    /// The measured-boot event log (`binary_bios_measurements`), when the VM has one.
    #[serde(default, with = "b64_option", skip_serializing_if = "Option::is_none")]
    pub event_log: Option<Vec<u8>>,
    /// SHA-256 of the event log, hex. Without `event_log` it names a log the broker already
    /// holds (one it admitted a VM with, [`Code::EventLogUnknown`](super::Code::EventLogUnknown)
    /// when it holds none by that digest; the challenge is then still unused, and the same
    /// finish may be sent again with the log). With `event_log` it must be that log's digest,
    /// and the broker keeps the log if it admits the VM. VMs booted from one image send the
    /// same log, so most need not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log_sha256: Option<String>,
    /// `TPMS_ATTEST` of TPM2_Certify(K) by the AK. Its qualifying data is not checked:
    /// K is fixedTPM, so proof that it was ever in this TPM stays true, and K is bound to
    /// this challenge by the quote's qualifying data.
    #[serde(with = "b64")]
    pub certify: Vec<u8>,
    /// `TPMT_SIGNATURE` over `certify`.
    #[serde(with = "b64")]
    pub certify_signature: Vec<u8>,
}

/// `POST /v1/snp/begin`: an empty JSON object (`{}`), nothing else.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpBeginRequest {}

/// Answer to [`SnpBeginRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpChallenge {
    /// Identifies the challenge at `finish`.
    pub challenge_id: String,
    /// Fresh random nonce for [`snp_report_data`](super::snp_report_data).
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// Unix time (seconds) after which `finish` is refused.
    pub expires_at: i64,
}

/// `POST /v1/snp/finish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpFinishRequest {
    /// From [`SnpChallenge::challenge_id`].
    pub challenge_id: String,
    /// The raw 1184-byte `ATTESTATION_REPORT`.
    #[serde(with = "b64")]
    pub report: Vec<u8>,
    /// The extended report's certificate table, when the host provides one.
    #[serde(default, with = "b64_option", skip_serializing_if = "Option::is_none")]
    pub certificate_table: Option<Vec<u8>>,
    /// Credential key K: SubjectPublicKeyInfo (DER) of a P-256 key in guest memory.
    #[serde(with = "b64")]
    pub key_spki: Vec<u8>,
    /// Raw X25519 public key that releasable secrets are sealed to (HPKE).
    #[serde(with = "b64")]
    pub sealing_key: Vec<u8>,
}

/// `POST /v1/azure/begin`: an empty JSON object (`{}`), nothing else. An Azure
/// confidential VM proves itself with its paravisor's HCL report and a vTPM quote
/// ([`AzureFinishRequest`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureBeginRequest {}

/// Answer to [`AzureBeginRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureChallenge {
    /// Identifies the challenge at `finish`.
    pub challenge_id: String,
    /// Fresh random nonce; the quote's qualifying data is [`tpm_qualifying_data`] of it.
    ///
    /// [`tpm_qualifying_data`]: super::tpm_qualifying_data
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// PCRs to quote, bank name to indices: every PCR some Azure class of the policy
    /// appraises.
    pub pcr_selection: BTreeMap<String, Vec<u8>>,
    /// Unix time (seconds) after which `finish` is refused.
    pub expires_at: i64,
}

/// `POST /v1/azure/finish`: the HCL report (whose SNP report commits to the vTPM's AK and
/// EK), a quote by that AK answering the challenge, and the credential key K certified by
/// the same AK.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureFinishRequest {
    /// From [`AzureChallenge::challenge_id`].
    pub challenge_id: String,
    /// The HCL report, as read from the vTPM's NV index 0x01400001.
    #[serde(with = "b64")]
    pub hcl_report: Vec<u8>,
    /// The VCEK, then optionally the ASK and ARK (PEM), as the instance metadata service's
    /// certification endpoint gives them. Absent: the broker's provisioned VCEKs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcek_chain: Option<String>,
    /// The AK's `TPM2B_PUBLIC`; its key must be the runtime claims' `HCLAkPub`.
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
    /// `TPMS_ATTEST` of the quote, as the vTPM returned it.
    #[serde(with = "b64")]
    pub quote: Vec<u8>,
    /// `TPMT_SIGNATURE` over `quote`.
    #[serde(with = "b64")]
    pub quote_signature: Vec<u8>,
    /// The quoted PCR values: bank name to index to hex value.
    pub pcrs: BTreeMap<String, BTreeMap<String, String>>,
    /// The measured-boot event log, when the VM has one.
    #[serde(default, with = "b64_option", skip_serializing_if = "Option::is_none")]
    pub event_log: Option<Vec<u8>>,
    /// The credential key K's `TPM2B_PUBLIC` (a non-exportable signing key in the vTPM).
    #[serde(with = "b64")]
    pub key_public: Vec<u8>,
    /// `TPMS_ATTEST` of TPM2_Certify(K) by the AK.
    #[serde(with = "b64")]
    pub certify: Vec<u8>,
    /// `TPMT_SIGNATURE` over `certify`.
    #[serde(with = "b64")]
    pub certify_signature: Vec<u8>,
}

/// One attestation as a client made it, recorded (`mooring-client --record FILE`) for
/// `mooring-broker policy dry-run`: the address it attested from, the challenge's nonce and
/// what it sent. A dry run judges it against a policy, skipping only freshness.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordedEvidence {
    /// A TPM VM's exchange.
    Tpm(RecordedExchange<TpmBeginRequest, TpmFinishRequest>),
    /// An SEV-SNP VM's exchange.
    Snp(RecordedExchange<SnpBeginRequest, SnpFinishRequest>),
    /// An Azure confidential VM's exchange.
    Azure(RecordedExchange<AzureBeginRequest, AzureFinishRequest>),
}

impl RecordedEvidence {
    /// The address the VM attested from.
    #[must_use]
    pub fn address(&self) -> IpAddr {
        match self {
            Self::Tpm(exchange) => exchange.address,
            Self::Snp(exchange) => exchange.address,
            Self::Azure(exchange) => exchange.address,
        }
    }

    /// `tpm`, `snp` or `azure`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tpm(_) => "tpm",
            Self::Snp(_) => "snp",
            Self::Azure(_) => "azure",
        }
    }
}

/// What one exchange sent, and the nonce it answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedExchange<B, F> {
    /// The address the VM attested from.
    pub address: IpAddr,
    /// The challenge's nonce.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// The `begin` request.
    pub begin: B,
    /// The `finish` request.
    pub finish: F,
}

/// Answer to a successful `finish`: the VM's credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedCredentials {
    /// `spiffe://<trust-domain>/vm/<class>/<id>`.
    pub spiffe_id: String,
    /// Policy class that admitted the VM.
    pub class: String,
    /// X.509-SVID for K (PEM, leaf first, then the issuing CA).
    pub x509_svid: String,
    /// Serial of the X.509-SVID (hex).
    pub x509_serial: String,
    /// JWT-SVID (compact JWS, ES256).
    pub jwt_svid: String,
    /// Trust bundle: the X.509 CA certificates (PEM).
    pub x509_bundle: String,
    /// Expiry of both credentials (Unix seconds).
    pub expires_at: i64,
    /// When the client should attest again (Unix seconds): half of the lifetime.
    pub renew_after: i64,
    /// The address the credentials are bound to.
    pub bound_address: IpAddr,
    /// Releasable secrets, sealed to this VM.
    #[serde(default)]
    pub secrets: Vec<SealedSecret>,
}

/// A secret released to a VM, readable only by that VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// Name from the policy.
    pub name: String,
    /// The sealed form.
    pub sealed: Sealed,
}

/// How a secret is sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sealed {
    /// TPM2_Import blob to the EK; unseals under a PolicyPCR session on the quoted PCRs.
    TpmImport {
        /// Sealed object's `TPM2B_PUBLIC`.
        #[serde(with = "b64")]
        public: Vec<u8>,
        /// `TPM2B_PRIVATE` duplicate (outer wrapper to the EK).
        #[serde(with = "b64")]
        duplicate: Vec<u8>,
        /// `TPM2B_ENCRYPTED_SECRET` seed.
        #[serde(with = "b64")]
        encrypted_seed: Vec<u8>,
        /// PCRs the unseal policy covers: bank name to indices.
        pcr_selection: BTreeMap<String, Vec<u8>>,
    },
    /// HPKE (RFC 9180) to the sealing key committed in `REPORT_DATA`.
    Hpke {
        /// Encapsulated key.
        #[serde(with = "b64")]
        enc: Vec<u8>,
        /// AEAD ciphertext.
        #[serde(with = "b64")]
        ciphertext: Vec<u8>,
    },
}

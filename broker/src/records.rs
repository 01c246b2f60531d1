//! What the broker records about challenges, credentials and VMs: the state the
//! service decides with and the store keeps.

use std::net::IpAddr;

use mooring_attestation::protocol::{HardwareId, IdentityStatus};
use serde::{Deserialize, Serialize};

/// Kind of evidence a challenge waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EvidenceKind {
    Tpm,
    Snp,
    /// An Azure confidential VM: SEV-SNP report through the paravisor, vTPM quote.
    Azure,
}

/// A challenge as `begin` made it: sealed into its id ([`crate::challenge`]), never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChallengeRecord {
    pub(crate) id: String,
    pub(crate) kind: EvidenceKind,
    #[serde(with = "hex_bytes")]
    pub(crate) nonce: Vec<u8>,
    pub(crate) expires_at: i64,
    /// The address `begin` came from: `finish` must come from it too.
    pub(crate) source: IpAddr,
    /// What `begin` established for a TPM challenge.
    pub(crate) tpm: Option<TpmChallengeState>,
}

/// The TPM identity a challenge was issued to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TpmChallengeState {
    /// SHA-256 of the activation secret.
    #[serde(with = "hex_bytes")]
    pub(crate) secret_digest: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub(crate) ek_public: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub(crate) ak_public: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub(crate) key_public: Vec<u8>,
    /// Hex SHA-256 of the EK public key.
    pub(crate) hardware_id: String,
    /// The policy class matched at `begin` (its PCR selection was sent).
    pub(crate) class: String,
    /// Issuer of the EK certificate (for the audit log).
    pub(crate) ek_issuer: Option<String>,
}

/// A credential that was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CredentialRecord {
    pub(crate) serial: String,
    pub(crate) hardware_id: HardwareId,
    pub(crate) spiffe_id: String,
    pub(crate) class: String,
    pub(crate) bound_address: IpAddr,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
    /// The boot it was issued in (TPM), from the quote's clock information.
    #[serde(default)]
    pub(crate) boot: Option<BootCounters>,
    /// The TPM's `clock` (milliseconds powered) in that quote.
    #[serde(default)]
    pub(crate) tpm_clock: Option<u64>,
}

/// One boot of a TPM: `resetCount` and `restartCount` of the quote's `TPMS_CLOCK_INFO` (TPM
/// 2.0 Part 2, Table 120), in that order (a later boot compares greater). Not obfuscated:
/// the AK is in the endorsement hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct BootCounters {
    pub(crate) reset_count: u32,
    pub(crate) restart_count: u32,
}

/// A credential of a VM's current boot that has not expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LiveCredential {
    pub(crate) serial: String,
    pub(crate) expires_at: i64,
}

/// Most credentials of one boot a VM record remembers (renewals at half-life: two or three
/// are live at once; the oldest are dropped first).
const MAX_LIVE: usize = 64;

/// What the broker knows of a VM (one per hardware identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VmRecord {
    pub(crate) hardware_id: HardwareId,
    pub(crate) spiffe_id: String,
    pub(crate) class: String,
    pub(crate) last_address: IpAddr,
    pub(crate) last_attested: i64,
    pub(crate) last_serial: String,
    pub(crate) credential_expires_at: i64,
    #[serde(default)]
    pub(crate) status: Option<IdentityStatus>,
    #[serde(default)]
    pub(crate) revoked: bool,
    /// The boot it last attested from (TPM).
    #[serde(default)]
    pub(crate) boot: Option<BootCounters>,
    /// Its credentials of that boot that have not expired.
    #[serde(default)]
    pub(crate) live: Vec<LiveCredential>,
    /// The TPM's clock at its last attestation.
    #[serde(default)]
    pub(crate) tpm_clock: Option<u64>,
}

impl VmRecord {
    /// The VM's state after `credential` was issued to it, following `previous` (admin
    /// state filled in on reading): the credentials of the same boot that are still live,
    /// and this one.
    pub(crate) fn issued(previous: Option<&Self>, credential: &CredentialRecord) -> Self {
        let mut live: Vec<LiveCredential> = previous
            .filter(|p| p.boot == credential.boot)
            .map(|p| p.live.iter().filter(|l| l.expires_at > credential.issued_at).cloned().collect())
            .unwrap_or_default();
        live.push(LiveCredential { serial: credential.serial.clone(), expires_at: credential.expires_at });
        let excess = live.len().saturating_sub(MAX_LIVE);
        live.drain(..excess);
        Self {
            hardware_id: credential.hardware_id.clone(),
            spiffe_id: credential.spiffe_id.clone(),
            class: credential.class.clone(),
            last_address: credential.bound_address,
            last_attested: credential.issued_at,
            last_serial: credential.serial.clone(),
            credential_expires_at: credential.expires_at,
            status: None,
            revoked: false,
            boot: credential.boot,
            live,
            tpm_clock: credential.tpm_clock,
        }
    }
}

/// Hex for byte fields of stored records.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

//! The administrators' routes (`/v1/admin/*`, mutual TLS with an admin certificate).

use serde::{Deserialize, Serialize};

use super::RevocationTarget;

/// A hardware identity: SHA-256 of an EK public key, or an SEV-SNP CHIP_ID (hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case", deny_unknown_fields)]
pub enum HardwareId {
    /// A TPM, by its EK.
    Ek(String),
    /// An AMD SEV-SNP processor, by CHIP_ID.
    Chip(String),
}

impl HardwareId {
    /// The identity's hex digits.
    #[must_use]
    pub fn hex(&self) -> &str {
        match self {
            Self::Ek(id) | Self::Chip(id) => id,
        }
    }
}

/// What an administrator said about a hardware identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityStatus {
    /// Admitted without an EK certificate (classes with `enrolled_only` admit only these).
    Enrolled,
    /// Refused, and its credentials refused (`vm_blocked`).
    Blocked,
}

/// `POST /v1/admin/identities`: enroll or block an EK or chip.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityChange {
    /// The hardware.
    pub identity: HardwareId,
    /// What it is now.
    pub status: IdentityStatus,
}

/// `POST /v1/admin/revocations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationRequest {
    /// What to revoke.
    pub target: RevocationTarget,
    /// Why (kept in the revocation list and the audit log).
    pub reason: String,
}

/// Answer to `GET /v1/admin/audit/verify`: whether the audit chain is intact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditVerification {
    /// Whether every record chains to the stored head.
    pub valid: bool,
    /// Records verified (when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Sequence number of the head (when valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// Where the chain breaks (when not valid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer to `POST /v1/admin/policy/reload`: the policy now in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInForce {
    /// SHA-256 of the policy text (hex), as in audit records.
    pub policy: String,
}

/// `POST /v1/admin/policy/dry-run`: a policy to judge the broker's recent evidence with,
/// before it is loaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The policy text (TOML), as it would be written to the policy file.
    pub policy: String,
}

/// Answer to [`DryRunRequest`]: each recent attestation judged by the policy in force and by
/// the proposed one, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunReport {
    /// SHA-256 of the proposed policy text (hex).
    pub policy: String,
    /// The judgements.
    pub results: Vec<DryRunResult>,
}

/// One recent attestation, judged twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunResult {
    /// When the broker saw it (Unix seconds).
    pub at: i64,
    /// The address it came from.
    pub address: std::net::IpAddr,
    /// `tpm`, `snp` or `azure`.
    pub kind: String,
    /// The decision under the policy in force.
    pub in_force: Decision,
    /// The decision under the proposed policy.
    pub proposed: Decision,
}

/// What a policy decides about one piece of evidence in a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// A class admits it.
    Admitted {
        /// The class.
        class: String,
        /// The hardware identity it would be issued for, when the evidence names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hardware_id: Option<String>,
        /// What a live attestation checks that this evidence could not show.
        not_checked: String,
    },
    /// Refused, with the code and reason a live attestation would get.
    Refused {
        /// The refusal code.
        code: super::Code,
        /// Why.
        reason: String,
    },
}

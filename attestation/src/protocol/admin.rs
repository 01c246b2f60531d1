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

//! Why the broker said no: a stable code for machines and one line for people.

use std::fmt;

/// Stable refusal codes. The OpenAPI document lists the same strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub(crate) enum Code {
    // Request shape.
    MalformedRequest,
    BodyTooLarge,
    RateLimited,
    Overloaded,
    Timeout,
    NotFound,
    Unauthorized,
    ForwardedAddressInvalid,
    // Challenges.
    ChallengeUnknown,
    ChallengeUsed,
    ChallengeExpired,
    ChallengeKind,
    ChallengeAddressMismatch,
    // TPM identity.
    EkInvalid,
    EkUntrusted,
    EkMismatch,
    AkInvalid,
    KeyInvalid,
    ActivationFailed,
    // TPM evidence.
    QuoteInvalid,
    NonceMismatch,
    PcrSelectionMismatch,
    PcrValueNotAllowed,
    EventLogMissing,
    EventLogMismatch,
    SecureBootState,
    BootApplicationNotAllowed,
    KernelCmdlineNotAllowed,
    UnaccountedMeasurement,
    CertifyInvalid,
    // SEV-SNP evidence.
    SnpReportInvalid,
    ReportDataMismatch,
    SnpDebug,
    SnpTcbTooLow,
    SnpMeasurement,
    SnpVmpl,
    // Policy.
    VmBlocked,
    NoMatchingClass,
    AddressNotAllowed,
    // Credential verification.
    CredentialMalformed,
    BadSignature,
    UnknownSigningKey,
    Expired,
    WrongAudience,
    Revoked,
    Retired,
    SupersededByReboot,
    CloneSuspected,
    AddressOutsideBinding,
    NoProofOfPossession,
    ProofInvalid,
    ProofReplayed,
    // Server side.
    Internal,
}

impl Code {
    /// Every code, for the OpenAPI sync test.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 53] = [
        Self::MalformedRequest,
        Self::BodyTooLarge,
        Self::RateLimited,
        Self::Overloaded,
        Self::Timeout,
        Self::NotFound,
        Self::Unauthorized,
        Self::ForwardedAddressInvalid,
        Self::ChallengeUnknown,
        Self::ChallengeUsed,
        Self::ChallengeExpired,
        Self::ChallengeKind,
        Self::ChallengeAddressMismatch,
        Self::EkInvalid,
        Self::EkUntrusted,
        Self::EkMismatch,
        Self::AkInvalid,
        Self::KeyInvalid,
        Self::ActivationFailed,
        Self::QuoteInvalid,
        Self::NonceMismatch,
        Self::PcrSelectionMismatch,
        Self::PcrValueNotAllowed,
        Self::EventLogMissing,
        Self::EventLogMismatch,
        Self::SecureBootState,
        Self::BootApplicationNotAllowed,
        Self::KernelCmdlineNotAllowed,
        Self::UnaccountedMeasurement,
        Self::CertifyInvalid,
        Self::SnpReportInvalid,
        Self::ReportDataMismatch,
        Self::SnpDebug,
        Self::SnpTcbTooLow,
        Self::SnpMeasurement,
        Self::SnpVmpl,
        Self::VmBlocked,
        Self::NoMatchingClass,
        Self::AddressNotAllowed,
        Self::CredentialMalformed,
        Self::BadSignature,
        Self::UnknownSigningKey,
        Self::Expired,
        Self::WrongAudience,
        Self::Revoked,
        Self::Retired,
        Self::SupersededByReboot,
        Self::CloneSuspected,
        Self::AddressOutsideBinding,
        Self::NoProofOfPossession,
        Self::ProofInvalid,
        Self::ProofReplayed,
        Self::Internal,
    ];

    /// The wire form.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed_request",
            Self::BodyTooLarge => "body_too_large",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::ForwardedAddressInvalid => "forwarded_address_invalid",
            Self::ChallengeUnknown => "challenge_unknown",
            Self::ChallengeUsed => "challenge_used",
            Self::ChallengeExpired => "challenge_expired",
            Self::ChallengeKind => "challenge_kind",
            Self::ChallengeAddressMismatch => "challenge_address_mismatch",
            Self::EkInvalid => "ek_invalid",
            Self::EkUntrusted => "ek_untrusted",
            Self::EkMismatch => "ek_mismatch",
            Self::AkInvalid => "ak_invalid",
            Self::KeyInvalid => "key_invalid",
            Self::ActivationFailed => "activation_failed",
            Self::QuoteInvalid => "quote_invalid",
            Self::NonceMismatch => "nonce_mismatch",
            Self::PcrSelectionMismatch => "pcr_selection_mismatch",
            Self::PcrValueNotAllowed => "pcr_value_not_allowed",
            Self::EventLogMissing => "event_log_missing",
            Self::EventLogMismatch => "event_log_mismatch",
            Self::SecureBootState => "secure_boot_state",
            Self::BootApplicationNotAllowed => "boot_application_not_allowed",
            Self::KernelCmdlineNotAllowed => "kernel_cmdline_not_allowed",
            Self::UnaccountedMeasurement => "unaccounted_measurement",
            Self::CertifyInvalid => "certify_invalid",
            Self::SnpReportInvalid => "snp_report_invalid",
            Self::ReportDataMismatch => "report_data_mismatch",
            Self::SnpDebug => "snp_debug",
            Self::SnpTcbTooLow => "snp_tcb_too_low",
            Self::SnpMeasurement => "snp_measurement",
            Self::SnpVmpl => "snp_vmpl",
            Self::VmBlocked => "vm_blocked",
            Self::NoMatchingClass => "no_matching_class",
            Self::AddressNotAllowed => "address_not_allowed",
            Self::CredentialMalformed => "credential_malformed",
            Self::BadSignature => "bad_signature",
            Self::UnknownSigningKey => "unknown_signing_key",
            Self::Expired => "expired",
            Self::WrongAudience => "wrong_audience",
            Self::Revoked => "revoked",
            Self::Retired => "retired",
            Self::SupersededByReboot => "superseded_by_reboot",
            Self::CloneSuspected => "clone_suspected",
            Self::AddressOutsideBinding => "address_outside_binding",
            Self::NoProofOfPossession => "no_proof_of_possession",
            Self::ProofInvalid => "proof_invalid",
            Self::ProofReplayed => "proof_replayed",
            Self::Internal => "internal",
        }
    }

    /// HTTP status when the code ends a request.
    pub(crate) fn http_status(self) -> u16 {
        match self {
            Self::MalformedRequest | Self::ChallengeKind | Self::ForwardedAddressInvalid => 400,
            Self::Unauthorized => 401,
            Self::NotFound | Self::ChallengeUnknown => 404,
            Self::ChallengeUsed | Self::ChallengeExpired => 409,
            Self::BodyTooLarge => 413,
            Self::RateLimited => 429,
            Self::Timeout => 408,
            Self::Overloaded => 503,
            Self::Internal => 500,
            _ => 403,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision against the caller, with what they can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: Code,
    pub(crate) reason: String,
}

impl Refusal {
    pub(crate) fn new(code: Code, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for Refusal {}

//! Refusal codes: why the broker, or a relying service (online or offline), said no. One
//! list for every side; `broker/openapi.json`'s `ErrorCode` enum is checked against it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines [`Code`] from one table: variant, wire form, HTTP status, meaning.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal, $status:literal;)*) => {
        /// A stable, machine-readable reason for a refusal (snake_case on the wire).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($(#[$doc])* $variant,)*
            /// A code this version does not know (sent by a newer broker). Never sent.
            Unrecognized,
        }

        impl Code {
            /// Every code a broker or verifier sends.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The wire form.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Unrecognized => "unrecognized",
                }
            }

            /// The HTTP status of an answer that ends with this code.
            #[must_use]
            pub fn http_status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)*
                    Self::Unrecognized => 500,
                }
            }

            /// The code of a wire form; [`Code::Unrecognized`] for one not in [`Code::ALL`].
            #[must_use]
            pub fn parse(wire: &str) -> Self {
                match wire {
                    $($wire => Self::$variant,)*
                    _ => Self::Unrecognized,
                }
            }
        }
    };
}

codes! {
    // The request itself.
    /// The body is not the JSON this route takes.
    MalformedRequest = "malformed_request", 400;
    /// The body is larger than `limits.max_body_bytes`.
    BodyTooLarge = "body_too_large", 413;
    /// Too many requests from this address.
    RateLimited = "rate_limited", 429;
    /// The broker is at capacity; retry after the `Retry-After` delay.
    Overloaded = "overloaded", 503;
    /// The body arrived too slowly.
    Timeout = "timeout", 408;
    /// No such route or object.
    NotFound = "not_found", 404;
    /// An admin route without an admin client certificate.
    Unauthorized = "unauthorized", 401;
    /// A proposed policy (admin dry run) does not load; the reason names its line.
    PolicyInvalid = "policy_invalid", 400;
    /// A trusted proxy sent a forwarded address that does not parse.
    ForwardedAddressInvalid = "forwarded_address_invalid", 400;
    // Challenges.
    /// The challenge id was never issued, was altered, or predates a restart.
    ChallengeUnknown = "challenge_unknown", 404;
    /// The challenge was already finished.
    ChallengeUsed = "challenge_used", 409;
    /// The challenge expired.
    ChallengeExpired = "challenge_expired", 409;
    /// The challenge was issued for the other evidence kind.
    ChallengeKind = "challenge_kind", 400;
    /// `finish` came from another address than `begin`.
    ChallengeAddressMismatch = "challenge_address_mismatch", 403;
    // TPM identity.
    /// The EK public area does not parse or cannot be used.
    EkInvalid = "ek_invalid", 403;
    /// No EK certificate chaining to a trusted root, and the EK is not enrolled.
    EkUntrusted = "ek_untrusted", 403;
    /// The EK certificate is for another key than the EK public area.
    EkMismatch = "ek_mismatch", 403;
    /// The AK is not a restricted signing key that never left the TPM.
    AkInvalid = "ak_invalid", 403;
    /// The credential key is not a non-exportable P-256 signing key.
    KeyInvalid = "key_invalid", 403;
    /// The activated secret is wrong: the AK is not in the TPM holding the EK.
    ActivationFailed = "activation_failed", 403;
    // TPM evidence.
    /// The quote or its signature does not verify.
    QuoteInvalid = "quote_invalid", 403;
    /// The quote is not for this challenge and credential key.
    NonceMismatch = "nonce_mismatch", 403;
    /// The quote covers other PCRs than the policy asks for.
    PcrSelectionMismatch = "pcr_selection_mismatch", 403;
    /// A PCR value the policy does not allow.
    PcrValueNotAllowed = "pcr_value_not_allowed", 403;
    /// The policy appraises the event log and none was sent.
    EventLogMissing = "event_log_missing", 403;
    /// The event log does not reproduce the quoted PCRs.
    EventLogMismatch = "event_log_mismatch", 403;
    /// `finish` named its event log by digest and this broker holds no log by that digest:
    /// send the same `finish` again with the log.
    EventLogUnknown = "event_log_unknown", 409;
    /// Secure Boot state other than the policy requires.
    SecureBootState = "secure_boot_state", 403;
    /// A boot application the policy does not allow.
    BootApplicationNotAllowed = "boot_application_not_allowed", 403;
    /// A kernel command line the policy does not allow.
    KernelCmdlineNotAllowed = "kernel_cmdline_not_allowed", 403;
    /// A measurement in a PCR a rule owns that no rule accounts for.
    UnaccountedMeasurement = "unaccounted_measurement", 403;
    /// The certification of the credential key does not verify.
    CertifyInvalid = "certify_invalid", 403;
    // SEV-SNP evidence.
    /// The report or its certificate chain does not verify.
    SnpReportInvalid = "snp_report_invalid", 403;
    /// `REPORT_DATA` does not bind this challenge and these keys.
    ReportDataMismatch = "report_data_mismatch", 403;
    /// The guest policy allows debugging.
    SnpDebug = "snp_debug", 403;
    /// The reported TCB is below the policy's minimum.
    SnpTcbTooLow = "snp_tcb_too_low", 403;
    /// A launch measurement the policy does not allow.
    SnpMeasurement = "snp_measurement", 403;
    /// The report comes from a less privileged VMPL than the policy allows.
    SnpVmpl = "snp_vmpl", 403;
    // Azure confidential VMs (SEV-SNP report through the paravisor, vTPM quote).
    /// The HCL report is malformed, or its runtime claims lack a usable AK or EK.
    HclReportInvalid = "hcl_report_invalid", 403;
    /// `REPORT_DATA` does not commit to the runtime claims sent with it.
    RuntimeClaimsMismatch = "runtime_claims_mismatch", 403;
    /// The AK sent is not the one the runtime claims (`HCLAkPub`) name.
    AkMismatch = "ak_mismatch", 403;
    // Admission.
    /// An administrator blocked this hardware.
    VmBlocked = "vm_blocked", 403;
    /// No class of the policy admits this VM.
    NoMatchingClass = "no_matching_class", 403;
    /// The VM's address is outside its class's networks.
    AddressNotAllowed = "address_not_allowed", 403;
    // Credentials.
    /// Not a well-formed SVID.
    CredentialMalformed = "credential_malformed", 403;
    /// The signature does not verify.
    BadSignature = "bad_signature", 403;
    /// Signed by a key or CA that is not in the trust bundle.
    UnknownSigningKey = "unknown_signing_key", 403;
    /// Outside its validity period.
    Expired = "expired", 403;
    /// Not for this audience.
    WrongAudience = "wrong_audience", 403;
    /// Revoked by an administrator.
    Revoked = "revoked", 403;
    /// The VM gave it up (it shut down).
    Retired = "retired", 403;
    /// The VM attested from a newer boot.
    SupersededByReboot = "superseded_by_reboot", 403;
    /// Two machines run one TPM state.
    CloneSuspected = "clone_suspected", 403;
    /// Presented from another address than the one it is bound to.
    AddressOutsideBinding = "address_outside_binding", 403;
    /// No proof that the caller holds the credential key: what a copy looks like.
    NoProofOfPossession = "no_proof_of_possession", 403;
    /// A proof of possession that does not hold.
    ProofInvalid = "proof_invalid", 403;
    /// A proof of possession presented before.
    ProofReplayed = "proof_replayed", 403;
    /// A token exchange asked for a scope its class is not granted for that audience.
    ScopeNotAllowed = "scope_not_allowed", 403;
    // Relying services.
    /// A relying service got no credential at all.
    NoCredential = "no_credential", 401;
    /// A relying service could not ask the broker, and fails closed.
    VerifierUnavailable = "verifier_unavailable", 503;
    /// Offline only: the revocation list is too old to rely on.
    RevocationListStale = "revocation_list_stale", 503;
    /// Offline only: the trust bundle is unusable.
    BundleInvalid = "bundle_invalid", 503;
    // The broker itself.
    /// A failure inside the broker; its log has the detail.
    Internal = "internal", 500;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::parse(&wire))
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn every_code_round_trips_through_its_wire_form() {
        for &code in Code::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), code);
        }
    }

    #[test]
    fn wire_forms_are_distinct_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in Code::ALL {
            let wire = code.as_str();
            assert!(wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{wire}");
            assert!(seen.insert(wire), "{wire} twice");
        }
    }

    #[test]
    fn an_unknown_code_parses_as_unrecognized() {
        assert_eq!(serde_json::from_str::<Code>("\"from_a_newer_broker\"").unwrap(), Code::Unrecognized);
        assert!(!Code::ALL.contains(&Code::Unrecognized));
    }
}

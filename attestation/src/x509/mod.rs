//! X.509 certificate chains (RFC 5280), generic over the PKIs this crate meets:
//! TPM EK/AK certificates (TCG EK Credential Profile 2.x) and AMD SEV-SNP
//! ARK → ASK/ASVK → VCEK/VLEK chains.
//!
//! * [`bundle`] reads certificates from PEM (with any text around the blocks),
//!   DER, and directories of such files.
//! * [`Certificate`] is one parsed certificate that owns its DER; signatures are
//!   checked over the TBS bytes exactly as received, never a re-encoding.
//! * [`TrustStore`] holds the trust anchors and known intermediates, parsed once,
//!   and verifies leaves against them at an injected time, caching verified
//!   issuer → anchor paths so repeated leaves cost one signature check.
//! * [`spki_public_key`] turns a SubjectPublicKeyInfo into the neutral
//!   [`crate::crypto::PublicKey`].
//!
//! Parsing is tolerant where OpenSSL is (multi-valued RDNs whose SET is not
//! DER-sorted, over-long common names, zero serial numbers, a NULL parameter
//! after an ECDSA algorithm OID); signature checking is strict.
//!
//! Why path validation is written here rather than taken from `rustls-webpki` (which the
//! workspace already uses for TLS): checked with rustls-webpki 0.103.17 against the test
//! vectors in the shared testdata (`MANIFEST.md`), it refuses both PKIs this crate serves.
//! * AMD's ARK → ASK → VCEK chains (Milan, Genoa, Turin) fail with
//!   `UnsupportedSignatureAlgorithmContext`: AMD's RSASSA-PSS/SHA-384 AlgorithmIdentifier
//!   spells out the DEFAULT `trailerField [3] INTEGER 1` (RFC 4055 §3.1), and webpki matches
//!   PSS parameters byte for byte against encodings that omit it.
//! * The STMicro ST33 EK chains (RSA and ECC) fail with `UnsupportedCriticalExtension`:
//!   their intermediate CAs mark certificatePolicies critical, as do 34 of the EK CAs in the
//!   testdata stores (STMicro, STSAFE, Infineon, Intel), and webpki does not accept a
//!   critical certificatePolicies it does not process (declined in rustls/webpki#211; see
//!   rustls/rustls#1091). This module accepts it without policy processing (below).
//!
//! (The GCE vTPM EK/AK chains do verify with webpki.)
//!
//! Critical extensions this module accepts (any other critical extension fails
//! the chain): basicConstraints and keyUsage (enforced on issuers),
//! subjectAltName and subjectDirectoryAttributes (TCG EK certificates carry the
//! TPM manufacturer, model and version there), certificatePolicies (accepted,
//! no policy processing), extKeyUsage (reported, not enforced), and the key
//! identifiers (used only to pick issuers).

pub mod bundle;
mod cert;
mod chain;
mod extensions;
mod framing;
mod name;
mod signature;
mod spki;
mod store;

pub use bundle::CertBundle;
pub use cert::{Certificate, CertificateError};
pub use chain::{CertPathError, VerifiedChain};
pub use extensions::Extension;
pub(crate) use name::decode_string;
pub use signature::SignatureError;
pub use spki::{spki_public_key, spki_public_key_pem, KeyError};
pub use store::{TrustStore, TrustStoreBuilder, MAX_CACHED_PATHS};

/// Most certificates a verified path may hold, leaf and trust anchor included.
/// TPM EK chains are 3-4 long (EK, one or two CAs, root) and SEV-SNP chains 3.
pub const MAX_CHAIN_LEN: usize = 6;

/// Most signature checks one path search may make before giving up, bounding the
/// work an adversarial pool of same-named intermediates can cause.
pub const MAX_SIGNATURE_CHECKS: usize = 24;

/// Largest DER certificate accepted (TPM NV EK certificates are under 2 KiB,
/// AMD certificates under 2 KiB).
pub const MAX_CERTIFICATE_LEN: usize = 64 * 1024;

/// Critical extensions a certificate may carry, as (OID, name). See the module
/// documentation for what is done with each.
pub const ACCEPTED_CRITICAL_EXTENSIONS: [(&str, &str); 8] = [
    (oid::BASIC_CONSTRAINTS, "basicConstraints"),
    (oid::KEY_USAGE, "keyUsage"),
    (oid::SUBJECT_ALT_NAME, "subjectAltName"),
    (oid::SUBJECT_DIRECTORY_ATTRIBUTES, "subjectDirectoryAttributes"),
    (oid::CERTIFICATE_POLICIES, "certificatePolicies"),
    (oid::EXT_KEY_USAGE, "extKeyUsage"),
    (oid::SUBJECT_KEY_ID, "subjectKeyIdentifier"),
    (oid::AUTHORITY_KEY_ID, "authorityKeyIdentifier"),
];

/// Dotted object identifiers used by this module (RFC 5280 §4.2.1, RFC 4055, RFC 5758).
pub(crate) mod oid {
    pub(crate) const SUBJECT_DIRECTORY_ATTRIBUTES: &str = "2.5.29.9";
    pub(crate) const SUBJECT_KEY_ID: &str = "2.5.29.14";
    pub(crate) const KEY_USAGE: &str = "2.5.29.15";
    pub(crate) const SUBJECT_ALT_NAME: &str = "2.5.29.17";
    pub(crate) const BASIC_CONSTRAINTS: &str = "2.5.29.19";
    pub(crate) const CERTIFICATE_POLICIES: &str = "2.5.29.32";
    pub(crate) const AUTHORITY_KEY_ID: &str = "2.5.29.35";
    pub(crate) const EXT_KEY_USAGE: &str = "2.5.29.37";
}

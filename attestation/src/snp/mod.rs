//! AMD SEV-SNP attestation reports, verified against AMD's certificate chains.
//!
//! References: *SEV Secure Nested Paging Firmware ABI Specification* (AMD publication
//! 56860; tables are named as in revision 1.57, where `ATTESTATION_REPORT` is Table 23),
//! the *GHCB specification* (AMD publication 56421, §4.1.8 for the extended report's
//! certificate table) and the *Versioned Chip Endorsement Key (VCEK) Certificate and KDS
//! Interface Specification* (AMD publication 57230, for the certificate extensions).
//!
//! * [`report`] parses the 1184-byte `ATTESTATION_REPORT` strictly (versions 2, 3, 5).
//! * [`tcb`] decodes `TCB_VERSION` per product (Turin's layout differs).
//! * [`guest_policy`] decodes the guest policy the owner launched with (`GUEST_POLICY`) and
//!   the platform information bits.
//! * [`cert_table`] parses the extended report's GUID certificate table.
//! * [`SnpVerifier`] checks the report signature with the VCEK or VLEK, the chain
//!   ARK → ASK → VCEK or ARK → ASVK → VLEK to the built-in pinned AMD roots of Milan,
//!   Genoa and Turin, and the cross-checks (CHIP_ID against hwID, REPORTED_TCB against
//!   the certificate's SPLs), and returns a [`VerifiedReport`] with typed [`SnpClaims`].
//!   What to admit (debug forbidden, minimum TCB, measurement) is the caller's admission
//!   policy, on the claims.
//! * [`azure`] verifies Azure confidential-VM evidence: an HCL report wrapping an SNP
//!   report whose REPORT_DATA commits to runtime claims carrying the vTPM key that signed
//!   a TPM quote.
//! * `sim` (feature `sim`) is a test signer with its own ARK/ASK/VCEK chain; its root
//!   is trusted only when a verifier is built with
//!   [`SnpVerifierBuilder::trust_test_root`].

pub mod appraisal;
pub mod azure;
pub mod cert_table;
mod certs;
mod claims;
pub mod guest_policy;
pub mod report;
mod roots;
#[cfg(feature = "sim")]
pub mod sim;
pub mod tcb;
mod verifier;

use serde::Serialize;
use thiserror::Error;

pub use cert_table::{CertTable, CertTableError, CertTableKind};
pub use claims::{FirmwareVersion, SignerClaims, SnpClaims, VerifiedReport};
pub use guest_policy::{GuestPolicy, PlatformInfo};
pub use report::{CpuId, Report};
pub use roots::{RootOrigin, BUILTIN_ROOT_FINGERPRINTS};
pub use tcb::{TcbParts, TcbVersion};
pub use verifier::{SnpCertSource, SnpVerifier, SnpVerifierBuilder, MAX_CACHED_CHAINS, MAX_PROVISIONED};

use crate::codec::CodecError;
use crate::x509::{CertPathError, CertificateError};

/// An AMD EPYC generation with SEV-SNP, each with its own ARK, ASK and ASVK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// 3rd generation EPYC (family 19h, models 00h-0Fh).
    Milan,
    /// 4th generation EPYC: Genoa, Bergamo, Siena (family 19h, models 10h-1Fh and A0h-AFh).
    Genoa,
    /// 5th generation EPYC (family 1Ah, models 00h-1Fh).
    Turin,
}

impl Product {
    /// Every product, in generation order.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD uses in certificate names and KDS URLs ("Milan").
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// The product of a CPU from the report's CPUID_FAM_ID and CPUID_MOD_ID (the
    /// extended family and model, as `CPUID Fn0000_0001_EAX` reports them).
    #[must_use]
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Self::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Self::Genoa),
            (0x1A, 0x00..=0x1F) => Some(Self::Turin),
            _ => None,
        }
    }

    /// Length of the VCEK's hwID extension, and of the meaningful prefix of CHIP_ID:
    /// 64 bytes, 8 on Turin.
    #[must_use]
    pub fn hw_id_len(self) -> usize {
        match self {
            Self::Milan | Self::Genoa => 64,
            Self::Turin => 8,
        }
    }
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The key that signed a report (`SIGNING_KEY`, bits 4:2 of the report's flags word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key: one per chip and TCB, issued under the ASK.
    Vcek,
    /// Versioned Loaded Endorsement Key: loaded by a cloud provider, issued under the ASVK.
    Vlek,
}

impl std::fmt::Display for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vcek => "VCEK",
            Self::Vlek => "VLEK",
        })
    }
}

/// Why an SEV-SNP report was refused. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SnpError {
    /// Fewer bytes than an `ATTESTATION_REPORT`.
    #[error("SEV-SNP report is {len} bytes; an ATTESTATION_REPORT is {} bytes", report::REPORT_LEN)]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// More bytes than an `ATTESTATION_REPORT`.
    #[error("SEV-SNP report is {len} bytes, more than the {} of an ATTESTATION_REPORT", report::REPORT_LEN)]
    TrailingBytes {
        /// Bytes received.
        len: usize,
    },
    /// A framing error inside a structure.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A report version this verifier does not parse.
    #[error("report VERSION {0} is not supported (2, 3 and 5 are)")]
    UnsupportedVersion(u32),
    /// A signature algorithm other than ECDSA P-384 with SHA-384.
    #[error("report SIGNATURE_ALGO {0} is not supported (1 = ECDSA P-384 with SHA-384)")]
    UnsupportedSignatureAlgorithm(u32),
    /// A field the ABI reserves holds a non-zero value (or a must-be-one bit is clear).
    #[error("reserved field {field} is not as the ABI requires")]
    Reserved {
        /// The field, with its offset.
        field: &'static str,
    },
    /// SIGNING_KEY says the report is not signed (value 7: no key, e.g. MASK_CHIP_KEY set).
    #[error("the report is not signed (SIGNING_KEY = 7)")]
    NotSigned,
    /// SIGNING_KEY holds a value the ABI does not define.
    #[error("SIGNING_KEY {0} is not defined (0 = VCEK, 1 = VLEK)")]
    UnknownSigningKey(u8),
    /// The CPUID family and model are not a product this verifier has roots for.
    #[error("CPUID family {family:#04x} model {model:#04x} is not Milan, Genoa or Turin")]
    UnknownProduct {
        /// CPUID_FAM_ID.
        family: u8,
        /// CPUID_MOD_ID.
        model: u8,
    },
    /// The report's product (CPUID) differs from the signing certificate's (its issuer),
    /// or the certificate's productName differs from its issuer's product.
    #[error("the report or chain is for {report} but the certificate says {certificate}")]
    ProductMismatch {
        /// Product from the report's CPUID fields, or from the chain.
        report: String,
        /// Product from the certificate's issuer or productName.
        certificate: String,
    },
    /// A certificate could not be parsed.
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// The extended report's certificate table is malformed.
    #[error(transparent)]
    CertTable(#[from] CertTableError),
    /// No VCEK/VLEK was supplied or provisioned for this report.
    #[error("no {kind} certificate for this report: {detail}")]
    MissingCertificate {
        /// The key the report names.
        kind: SigningKey,
        /// Where it was looked for.
        detail: String,
    },
    /// Several leaf certificates were supplied where one is expected.
    #[error("{count} non-CA certificates were supplied; pass exactly one VCEK or VLEK")]
    AmbiguousCertificate {
        /// How many.
        count: usize,
    },
    /// The certificate's issuer is not a pinned ASK or ASVK: the chain does not end at a
    /// pinned AMD root (or a configured test root).
    #[error("{subject} is issued by \"{issuer}\", which is not a pinned AMD ASK/ASVK: the chain does not end at a pinned root")]
    UnknownRoot {
        /// The leaf certificate.
        subject: String,
        /// Its issuer name.
        issuer: String,
    },
    /// A CA certificate supplied with the report is not byte-identical to the pinned one.
    #[error("the supplied {role} certificate (SHA-256 {fingerprint}) is not a pinned AMD certificate")]
    NotPinned {
        /// "ARK" or "ASK/ASVK".
        role: &'static str,
        /// SHA-256 of the supplied DER, hex.
        fingerprint: String,
    },
    /// The chain to the pinned root does not verify (expired, bad signature, ...).
    #[error("certificate chain: {0}")]
    Chain(#[from] CertPathError),
    /// The report signs with one kind of key and the certificate is the other kind.
    #[error("the report says it is signed by the {report}, the certificate is a {certificate}")]
    WrongSigningKeyKind {
        /// SIGNING_KEY of the report.
        report: SigningKey,
        /// What the certificate's issuer makes it.
        certificate: SigningKey,
    },
    /// The certificate's key is not an ECDSA P-384 key, or is unusable.
    #[error("the {kind} key cannot verify the report: {reason}")]
    SignerKey {
        /// VCEK or VLEK.
        kind: SigningKey,
        /// Why.
        reason: String,
    },
    /// The report signature does not verify with the certificate's key.
    #[error("report signature does not verify with the {kind} ({subject})")]
    BadSignature {
        /// VCEK or VLEK.
        kind: SigningKey,
        /// The certificate used.
        subject: String,
    },
    /// An AMD extension the check needs is absent from the certificate.
    #[error("the {kind} certificate lacks the {extension} extension ({oid})")]
    MissingExtension {
        /// VCEK or VLEK.
        kind: SigningKey,
        /// Extension name.
        extension: &'static str,
        /// Its OID.
        oid: &'static str,
    },
    /// An AMD extension is malformed.
    #[error("the {extension} extension ({oid}) is malformed")]
    MalformedExtension {
        /// Extension name.
        extension: &'static str,
        /// Its OID.
        oid: &'static str,
    },
    /// CHIP_ID differs from the VCEK's hwID: the report comes from another chip.
    #[error("report CHIP_ID {report} is not the VCEK's hwID {certificate}")]
    ChipIdMismatch {
        /// CHIP_ID, hex.
        report: String,
        /// hwID, hex.
        certificate: String,
    },
    /// REPORTED_TCB differs from the certificate's SPL extensions.
    #[error("REPORTED_TCB {component} is {report}, the certificate's SPL is {certificate}")]
    TcbMismatch {
        /// The TCB component ("microcode", "snp", ...).
        component: &'static str,
        /// Value in the report.
        report: u8,
        /// Value in the certificate.
        certificate: u8,
    },
    /// More provisioned certificates than [`MAX_PROVISIONED`].
    #[error("more than {max} provisioned VCEK/VLEK certificates")]
    TooManyProvisioned {
        /// [`MAX_PROVISIONED`].
        max: usize,
    },
    /// The verification time is negative.
    #[error("verification time {0} is before 1970")]
    BadTime(i64),
    /// A built-in or configured root certificate set is unusable.
    #[error("root certificates for {product}: {reason}")]
    Root {
        /// The product.
        product: String,
        /// What is wrong.
        reason: String,
    },
}

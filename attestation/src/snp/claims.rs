//! What a verified report says, typed for policy and serialised for audit and the CLI.

use std::sync::Arc;

use serde::Serialize;

use super::guest_policy::{GuestPolicy, PlatformInfo};
use super::report::{CpuId, Report};
use super::roots::RootOrigin;
use super::tcb::TcbVersion;
use super::{Product, SigningKey};
use crate::x509::Certificate;

/// A firmware version as `major.minor.build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

impl FirmwareVersion {
    fn new([major, minor, build]: [u8; 3]) -> Self {
        Self { major, minor, build }
    }
}

/// The certificate that signed the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerClaims {
    subject: String,
    issuer: String,
    /// SHA-256 of the certificate DER.
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    fingerprint: [u8; 32],
    product_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    csp_id: Option<String>,
    not_before: i64,
    not_after: i64,
}

impl SignerClaims {
    /// The certificate's subject.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// SHA-256 of its DER.
    #[must_use]
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Its productName extension ("Milan-B0", "Genoa", ...).
    #[must_use]
    pub fn product_name(&self) -> &str {
        &self.product_name
    }

    /// The cloud provider a VLEK was issued to (cspId extension), if present.
    #[must_use]
    pub fn csp_id(&self) -> Option<&str> {
        self.csp_id.as_deref()
    }
}

/// Every field of a verified report, decoded for `product`. Made only by verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    version: u32,
    product: Product,
    root: RootOrigin,
    signing_key: SigningKey,
    guest_svn: u32,
    policy: GuestPolicy,
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    family_id: [u8; 16],
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    image_id: [u8; 16],
    vmpl: u32,
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    measurement: [u8; 48],
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    report_data: [u8; 64],
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    host_data: [u8; 32],
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    id_key_digest: [u8; 48],
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    author_key_digest: [u8; 48],
    author_key_en: bool,
    mask_chip_key: bool,
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    report_id: [u8; 32],
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    report_id_ma: [u8; 32],
    #[serde(serialize_with = "crate::serde_hex::bytes")]
    chip_id: [u8; 64],
    cpuid: Option<CpuId>,
    platform_info: PlatformInfo,
    current_tcb: TcbVersion,
    reported_tcb: TcbVersion,
    committed_tcb: TcbVersion,
    launch_tcb: TcbVersion,
    current_firmware: FirmwareVersion,
    committed_firmware: FirmwareVersion,
    #[serde(serialize_with = "hex_u64_option")]
    launch_mit_vector: Option<u64>,
    #[serde(serialize_with = "hex_u64_option")]
    current_mit_vector: Option<u64>,
    signer: SignerClaims,
}

#[allow(clippy::ref_option)] // serde's serialize_with passes `&Option<T>`
fn hex_u64_option<S: serde::Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&format!("{v:#x}")),
        None => s.serialize_none(),
    }
}

impl SnpClaims {
    pub(super) fn new(
        report: &Report,
        product: Product,
        root: RootOrigin,
        signer: &Certificate,
        product_name: String,
        csp_id: Option<String>,
    ) -> Self {
        let tcb = |raw| TcbVersion::new(product, raw);
        Self {
            version: report.version,
            product,
            root,
            signing_key: report.signing_key,
            guest_svn: report.guest_svn,
            policy: report.policy,
            family_id: report.family_id,
            image_id: report.image_id,
            vmpl: report.vmpl,
            measurement: report.measurement,
            report_data: report.report_data,
            host_data: report.host_data,
            id_key_digest: report.id_key_digest,
            author_key_digest: report.author_key_digest,
            author_key_en: report.author_key_en,
            mask_chip_key: report.mask_chip_key,
            report_id: report.report_id,
            report_id_ma: report.report_id_ma,
            chip_id: report.chip_id,
            cpuid: report.cpuid,
            platform_info: report.platform_info,
            current_tcb: tcb(report.current_tcb),
            reported_tcb: tcb(report.reported_tcb),
            committed_tcb: tcb(report.committed_tcb),
            launch_tcb: tcb(report.launch_tcb),
            current_firmware: FirmwareVersion::new(report.current_version),
            committed_firmware: FirmwareVersion::new(report.committed_version),
            launch_mit_vector: report.mit_vectors.map(|(launch, _)| launch),
            current_mit_vector: report.mit_vectors.map(|(_, current)| current),
            signer: SignerClaims {
                subject: signer.subject().to_owned(),
                issuer: signer.issuer().to_owned(),
                fingerprint: *signer.fingerprint(),
                product_name,
                csp_id,
                not_before: signer.not_before_unix(),
                not_after: signer.not_after_unix(),
            },
        }
    }

    /// `VERSION` of the report.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The CPU generation.
    #[must_use]
    pub fn product(&self) -> Product {
        self.product
    }

    /// Whether the chain ended at AMD's pinned ARK or at a configured test root.
    #[must_use]
    pub fn root(&self) -> RootOrigin {
        self.root
    }

    /// VCEK or VLEK.
    #[must_use]
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }

    /// `GUEST_SVN`.
    #[must_use]
    pub fn guest_svn(&self) -> u32 {
        self.guest_svn
    }

    /// The guest policy (check [`GuestPolicy::debug_allowed`]).
    #[must_use]
    pub fn policy(&self) -> GuestPolicy {
        self.policy
    }

    /// `FAMILY_ID` from the ID block.
    #[must_use]
    pub fn family_id(&self) -> &[u8; 16] {
        &self.family_id
    }

    /// `IMAGE_ID` from the ID block.
    #[must_use]
    pub fn image_id(&self) -> &[u8; 16] {
        &self.image_id
    }

    /// `VMPL` of the request (0-3 from a guest).
    #[must_use]
    pub fn vmpl(&self) -> u32 {
        self.vmpl
    }

    /// `MEASUREMENT`, the launch digest.
    #[must_use]
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }

    /// `REPORT_DATA`, the guest's 64 bytes (the nonce binding).
    #[must_use]
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }

    /// `HOST_DATA`, set by the hypervisor at launch.
    #[must_use]
    pub fn host_data(&self) -> &[u8; 32] {
        &self.host_data
    }

    /// `ID_KEY_DIGEST` (SHA-384 of the ID key, zero without an ID block).
    #[must_use]
    pub fn id_key_digest(&self) -> &[u8; 48] {
        &self.id_key_digest
    }

    /// `AUTHOR_KEY_DIGEST` (meaningful when `AUTHOR_KEY_EN` is set).
    #[must_use]
    pub fn author_key_digest(&self) -> &[u8; 48] {
        &self.author_key_digest
    }

    /// `AUTHOR_KEY_EN`.
    #[must_use]
    pub fn author_key_en(&self) -> bool {
        self.author_key_en
    }

    /// `CHIP_ID` (checked against the VCEK's hwID; zero for VLEK reports).
    #[must_use]
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }

    /// `REPORT_ID`.
    #[must_use]
    pub fn report_id(&self) -> &[u8; 32] {
        &self.report_id
    }

    /// CPUID family, model, stepping (v3+).
    #[must_use]
    pub fn cpuid(&self) -> Option<CpuId> {
        self.cpuid
    }

    /// `PLATFORM_INFO`.
    #[must_use]
    pub fn platform_info(&self) -> PlatformInfo {
        self.platform_info
    }

    /// `CURRENT_TCB`.
    #[must_use]
    pub fn current_tcb(&self) -> TcbVersion {
        self.current_tcb
    }

    /// `REPORTED_TCB` (equal to the signing certificate's SPLs).
    #[must_use]
    pub fn reported_tcb(&self) -> TcbVersion {
        self.reported_tcb
    }

    /// `COMMITTED_TCB`.
    #[must_use]
    pub fn committed_tcb(&self) -> TcbVersion {
        self.committed_tcb
    }

    /// `LAUNCH_TCB`.
    #[must_use]
    pub fn launch_tcb(&self) -> TcbVersion {
        self.launch_tcb
    }

    /// `CURRENT_MAJOR.CURRENT_MINOR.CURRENT_BUILD`.
    #[must_use]
    pub fn current_firmware(&self) -> FirmwareVersion {
        self.current_firmware
    }

    /// `COMMITTED_MAJOR.COMMITTED_MINOR.COMMITTED_BUILD`.
    #[must_use]
    pub fn committed_firmware(&self) -> FirmwareVersion {
        self.committed_firmware
    }

    /// `LAUNCH_MIT_VECTOR` (v5).
    #[must_use]
    pub fn launch_mit_vector(&self) -> Option<u64> {
        self.launch_mit_vector
    }

    /// `CURRENT_MIT_VECTOR` (v5).
    #[must_use]
    pub fn current_mit_vector(&self) -> Option<u64> {
        self.current_mit_vector
    }

    /// The signing certificate.
    #[must_use]
    pub fn signer(&self) -> &SignerClaims {
        &self.signer
    }
}

/// A report whose signature, chain to a pinned root, CHIP_ID and REPORTED_TCB all
/// checked out. Only [`super::SnpVerifier::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    claims: SnpClaims,
    signer: Arc<Certificate>,
}

impl VerifiedReport {
    pub(super) fn new(claims: SnpClaims, signer: Arc<Certificate>) -> Self {
        Self { claims, signer }
    }

    /// The decoded claims.
    #[must_use]
    pub fn claims(&self) -> &SnpClaims {
        &self.claims
    }

    /// The claims, consuming the proof.
    #[must_use]
    pub fn into_claims(self) -> SnpClaims {
        self.claims
    }

    /// The VCEK or VLEK that signed.
    #[must_use]
    pub fn signer(&self) -> &Certificate {
        &self.signer
    }

    /// `REPORT_DATA`.
    #[must_use]
    pub fn report_data(&self) -> &[u8; 64] {
        self.claims.report_data()
    }

    /// `MEASUREMENT`.
    #[must_use]
    pub fn measurement(&self) -> &[u8; 48] {
        self.claims.measurement()
    }

    /// `CHIP_ID`.
    #[must_use]
    pub fn chip_id(&self) -> &[u8; 64] {
        self.claims.chip_id()
    }

    /// The chip's identity: `CHIP_ID` as long as the product defines it (64 bytes, 8 on
    /// Turin, zero-extended in the report).
    #[must_use]
    pub fn hw_id(&self) -> &[u8] {
        let chip_id = self.chip_id();
        chip_id.get(..self.product().hw_id_len()).unwrap_or(chip_id)
    }

    /// The guest policy.
    #[must_use]
    pub fn policy(&self) -> GuestPolicy {
        self.claims.policy()
    }

    /// The CPU generation.
    #[must_use]
    pub fn product(&self) -> Product {
        self.claims.product()
    }
}

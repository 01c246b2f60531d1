//! The `ATTESTATION_REPORT` structure (SEV-SNP Firmware ABI, Table 23 in revision 1.57):
//! 1184 bytes, little-endian, signed over bytes `0x000..0x2A0` with ECDSA P-384/SHA-384.
//!
//! Parsing is strict: the length is exact, the version is 2, 3 or 5, the signature
//! algorithm is 1, and every byte the ABI reserves for the report's version is zero
//! (including the signature field's unused high bytes and tail). Fields that only
//! exist from version 3 (CPUID) or 5 (mitigation vectors) are `None` before.

use crate::codec::Reader;

use super::guest_policy::{GuestPolicy, PlatformInfo};
use super::{SigningKey, SnpError};

/// Size of an `ATTESTATION_REPORT`.
pub const REPORT_LEN: usize = 0x4A0;
/// Bytes covered by the signature: everything before `SIGNATURE` (offset 0x2A0).
pub const SIGNED_LEN: usize = 0x2A0;
/// Report versions this parser accepts.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384 (the only one defined).
pub const SIGNATURE_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Bytes of each of `R` and `S` in the signature field (zero-extended, little-endian).
pub const SIGNATURE_COMPONENT_LEN: usize = 72;
/// Significant bytes of a P-384 `r` or `s`.
pub const P384_SCALAR_LEN: usize = 48;

/// `SIGNING_KEY` value meaning "no key": the report is unsigned.
const SIGNING_KEY_NONE: u8 = 7;

/// The CPU identification a v3+ report carries (`CPUID_FAM_ID`, `CPUID_MOD_ID`, `CPUID_STEP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CpuId {
    /// Extended family (`0x19` Milan/Genoa, `0x1A` Turin).
    pub family: u8,
    /// Extended model.
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
}

/// A parsed report. Only [`Report::parse`] makes one; it does not say the report is
/// genuine — that takes [`super::SnpVerifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub(super) version: u32,
    pub(super) guest_svn: u32,
    pub(super) policy: GuestPolicy,
    pub(super) family_id: [u8; 16],
    pub(super) image_id: [u8; 16],
    pub(super) vmpl: u32,
    pub(super) current_tcb: [u8; 8],
    pub(super) platform_info: PlatformInfo,
    pub(super) author_key_en: bool,
    pub(super) mask_chip_key: bool,
    pub(super) signing_key: SigningKey,
    pub(super) report_data: [u8; 64],
    pub(super) measurement: [u8; 48],
    pub(super) host_data: [u8; 32],
    pub(super) id_key_digest: [u8; 48],
    pub(super) author_key_digest: [u8; 48],
    pub(super) report_id: [u8; 32],
    pub(super) report_id_ma: [u8; 32],
    pub(super) reported_tcb: [u8; 8],
    pub(super) cpuid: Option<CpuId>,
    pub(super) chip_id: [u8; 64],
    pub(super) committed_tcb: [u8; 8],
    pub(super) current_version: [u8; 3],
    pub(super) committed_version: [u8; 3],
    pub(super) launch_tcb: [u8; 8],
    pub(super) mit_vectors: Option<(u64, u64)>,
    /// `r` and `s`, big-endian, 48 bytes each.
    pub(super) signature_r: [u8; P384_SCALAR_LEN],
    pub(super) signature_s: [u8; P384_SCALAR_LEN],
}

impl Report {
    /// Parses exactly one report.
    ///
    /// # Errors
    /// [`SnpError::Truncated`] / [`SnpError::TrailingBytes`] for a wrong length,
    /// [`SnpError::UnsupportedVersion`], [`SnpError::UnsupportedSignatureAlgorithm`],
    /// [`SnpError::Reserved`] naming the first reserved field that is not zero,
    /// [`SnpError::NotSigned`] / [`SnpError::UnknownSigningKey`].
    pub fn parse(bytes: &[u8]) -> Result<Self, SnpError> {
        if bytes.len() < REPORT_LEN {
            return Err(SnpError::Truncated { len: bytes.len() });
        }
        if bytes.len() > REPORT_LEN {
            return Err(SnpError::TrailingBytes { len: bytes.len() });
        }
        let mut r = Reader::new(bytes);
        let version = r.u32_le("VERSION")?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(SnpError::UnsupportedVersion(version));
        }
        let guest_svn = r.u32_le("GUEST_SVN")?;
        let policy = GuestPolicy::new(r.u64_le("POLICY")?)?;
        let family_id = r.array("FAMILY_ID")?;
        let image_id = r.array("IMAGE_ID")?;
        let vmpl = r.u32_le("VMPL")?;
        let signature_algo = r.u32_le("SIGNATURE_ALGO")?;
        if signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384 {
            return Err(SnpError::UnsupportedSignatureAlgorithm(signature_algo));
        }
        let current_tcb = r.array("CURRENT_TCB")?;
        let platform_info = PlatformInfo::new(r.u64_le("PLATFORM_INFO")?);
        let flags = r.u32_le("flags (0x48)")?;
        if flags >> 5 != 0 {
            return Err(SnpError::Reserved { field: "0x48 bits 31:5" });
        }
        let [signing_key, ..] = ((flags >> 2) & 0b111).to_le_bytes();
        let signing_key = match signing_key {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            SIGNING_KEY_NONE => return Err(SnpError::NotSigned),
            other => return Err(SnpError::UnknownSigningKey(other)),
        };
        zero(&mut r, 4, "0x4C (reserved)")?;
        let report_data = r.array("REPORT_DATA")?;
        let measurement = r.array("MEASUREMENT")?;
        let host_data = r.array("HOST_DATA")?;
        let id_key_digest = r.array("ID_KEY_DIGEST")?;
        let author_key_digest = r.array("AUTHOR_KEY_DIGEST")?;
        let report_id = r.array("REPORT_ID")?;
        let report_id_ma = r.array("REPORT_ID_MA")?;
        let reported_tcb = r.array("REPORTED_TCB")?;
        let cpuid = if version >= 3 {
            let [family, model, stepping] = r.array("CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP")?;
            Some(CpuId { family, model, stepping })
        } else {
            zero(&mut r, 3, "0x188..0x18B (reserved before version 3)")?;
            None
        };
        zero(&mut r, 0x15, "0x18B..0x1A0 (reserved)")?;
        let chip_id = r.array("CHIP_ID")?;
        let committed_tcb = r.array("COMMITTED_TCB")?;
        let [build, minor, major] = r.array("CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR")?;
        let current_version = [major, minor, build];
        zero(&mut r, 1, "0x1EB (reserved)")?;
        let [build, minor, major] = r.array("COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR")?;
        let committed_version = [major, minor, build];
        zero(&mut r, 1, "0x1EF (reserved)")?;
        let launch_tcb = r.array("LAUNCH_TCB")?;
        let mit_vectors = if version >= 5 {
            Some((r.u64_le("LAUNCH_MIT_VECTOR")?, r.u64_le("CURRENT_MIT_VECTOR")?))
        } else {
            zero(&mut r, 0x10, "0x1F8..0x208 (reserved before version 5)")?;
            None
        };
        zero(&mut r, 0x98, "0x208..0x2A0 (reserved)")?;
        debug_assert_eq!(r.position(), SIGNED_LEN);
        let signature_r = scalar(&mut r, "SIGNATURE.R")?;
        let signature_s = scalar(&mut r, "SIGNATURE.S")?;
        zero(
            &mut r,
            REPORT_LEN - SIGNED_LEN - 2 * SIGNATURE_COMPONENT_LEN,
            "SIGNATURE 0x330..0x4A0 (reserved)",
        )?;
        r.expect_end("ATTESTATION_REPORT")?;
        Ok(Self {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            current_tcb,
            platform_info,
            author_key_en: flags & 1 != 0,
            mask_chip_key: flags & 2 != 0,
            signing_key,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid,
            chip_id,
            committed_tcb,
            current_version,
            committed_version,
            launch_tcb,
            mit_vectors,
            signature_r,
            signature_s,
        })
    }

    /// `VERSION`: 2, 3 or 5.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The key the report says signed it.
    #[must_use]
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }

    /// CPUID family, model and stepping (version 3 and later).
    #[must_use]
    pub fn cpuid(&self) -> Option<CpuId> {
        self.cpuid
    }

    /// `CHIP_ID` (zero when the platform masks it, and for VLEK-signed reports).
    #[must_use]
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }

    /// `REPORT_DATA`, the 64 bytes the guest supplied.
    #[must_use]
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }

    /// `MEASUREMENT`, the launch digest.
    #[must_use]
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }

    /// `REPORTED_TCB`, raw (decode it with the product's layout, [`super::TcbVersion`]).
    #[must_use]
    pub fn reported_tcb_raw(&self) -> [u8; 8] {
        self.reported_tcb
    }

    /// The guest policy.
    #[must_use]
    pub fn policy(&self) -> GuestPolicy {
        self.policy
    }
}

/// The bytes the signature covers, exactly as received.
pub(super) fn signed_region(bytes: &[u8]) -> Result<&[u8], SnpError> {
    Ok(Reader::new(bytes).take(SIGNED_LEN, "signed region")?)
}

/// Takes `n` bytes that the ABI reserves and requires them to be zero.
fn zero(r: &mut Reader<'_>, n: usize, field: &'static str) -> Result<(), SnpError> {
    if r.take(n, field)?.iter().all(|b| *b == 0) {
        Ok(())
    } else {
        Err(SnpError::Reserved { field })
    }
}

/// A 72-byte little-endian signature component, returned big-endian in 48 bytes;
/// the 24 high bytes must be zero.
fn scalar(r: &mut Reader<'_>, field: &'static str) -> Result<[u8; P384_SCALAR_LEN], SnpError> {
    let le: [u8; P384_SCALAR_LEN] = r.array(field)?;
    zero(r, SIGNATURE_COMPONENT_LEN - P384_SCALAR_LEN, field)?;
    let mut be = le;
    be.reverse();
    Ok(be)
}

//! The guest policy (SEV-SNP Firmware ABI, "GUEST_POLICY Structure", Table 10 in
//! revision 1.57) and the platform information word (`PLATFORM_INFO`, in
//! `ATTESTATION_REPORT` at 0x40).
//!
//! "Guest policy" is AMD's term: the launch constraints the firmware enforces on the guest,
//! not TPM policy digests ([`crate::tpm::session_policy`]) or the broker's admission
//! policy. The verifier decodes these bits; deciding which are acceptable (debug forbidden,
//! migration agent forbidden, ...) is the caller's admission policy.

use serde::ser::SerializeStruct as _;
use serde::{Serialize, Serializer};

use super::SnpError;

/// `GUEST_POLICY` bit 17: reserved, must be one.
const RESERVED_ONE: u32 = 17;
/// `GUEST_POLICY` bits from here up are reserved and must be zero.
const FIRST_RESERVED: u32 = 26;

/// One accessor per named bit of a 64-bit word, and the same bits as the table
/// `FLAGS` (name, bit number) that serialization walks.
macro_rules! flag_bits {
    ($word:ident { $($bit:literal $name:ident $doc:literal,)* }) => {
        impl $word {
            const FLAGS: &'static [(&'static str, u32)] = &[$((stringify!($name), $bit)),*];
            $(
                #[doc = $doc]
                #[must_use]
                pub fn $name(self) -> bool {
                    self.0 & (1 << $bit) != 0
                }
            )*
        }
    };
}

/// The guest owner's launch policy, as the firmware enforced it and signed it into the
/// report. Bits 63:26 must be zero and bit 17 one, or the report does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPolicy(u64);

impl GuestPolicy {
    /// Checks the reserved bits of `raw`.
    ///
    /// # Errors
    /// [`SnpError::Reserved`] when bit 17 is clear or a bit above 25 is set.
    pub fn new(raw: u64) -> Result<Self, SnpError> {
        if raw >> FIRST_RESERVED != 0 {
            return Err(SnpError::Reserved { field: "POLICY bits 63:26" });
        }
        if raw & (1 << RESERVED_ONE) == 0 {
            return Err(SnpError::Reserved { field: "POLICY bit 17 (must be one)" });
        }
        Ok(Self(raw))
    }

    /// The raw 64-bit value.
    #[must_use]
    pub fn raw(self) -> u64 {
        self.0
    }

    /// `ABI_MAJOR`: the minimum firmware ABI major version the guest requires.
    #[must_use]
    pub fn abi_major(self) -> u8 {
        self.0.to_le_bytes()[1]
    }

    /// `ABI_MINOR`: the minimum firmware ABI minor version the guest requires.
    #[must_use]
    pub fn abi_minor(self) -> u8 {
        self.0.to_le_bytes()[0]
    }
}

flag_bits!(GuestPolicy {
    16 smt_allowed "`SMT`: the guest may run with simultaneous multithreading enabled.",
    18 migrate_ma_allowed "`MIGRATE_MA`: the guest may be associated with a migration agent.",
    19 debug_allowed "`DEBUG`: the hypervisor may read and write the guest's memory (refuse in production).",
    20 single_socket_required "`SINGLE_SOCKET`: the guest may only be activated on one socket.",
    21 cxl_allowed "`CXL_ALLOW`: CXL may be populated with devices or memory.",
    22 mem_aes_256_xts_required "`MEM_AES_256_XTS`: AES-256-XTS memory encryption is required.",
    23 rapl_disable_required "`RAPL_DIS`: Running Average Power Limit must be disabled.",
    24 ciphertext_hiding_required "`CIPHERTEXT_HIDING_DRAM`: ciphertext hiding for DRAM is required.",
    25 page_swap_disabled "`PAGE_SWAP_DISABLE`: the guest's pages may not be swapped by the hypervisor.",
});

impl Serialize for GuestPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let numbers = [("abi_major", self.abi_major()), ("abi_minor", self.abi_minor())];
        serialize_word(s, "GuestPolicy", self.0, &numbers, Self::FLAGS)
    }
}

/// `PLATFORM_INFO`: the platform's state when the report was made. Bits without a
/// name here are kept in [`PlatformInfo::raw`] (newer firmware defines more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformInfo(u64);

impl PlatformInfo {
    pub(super) fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw 64-bit value.
    #[must_use]
    pub fn raw(self) -> u64 {
        self.0
    }
}

flag_bits!(PlatformInfo {
    0 smt_enabled "`SMT_EN`: simultaneous multithreading is enabled.",
    1 tsme_enabled "`TSME_EN`: transparent SME is enabled.",
    2 ecc_enabled "`ECC_EN`: the platform uses error-correcting memory.",
    3 rapl_disabled "`RAPL_DIS`: Running Average Power Limit is disabled.",
    4 ciphertext_hiding_enabled "`CIPHERTEXT_HIDING_DRAM_EN`: ciphertext hiding for DRAM is enabled.",
    5 alias_check_complete "`ALIAS_CHECK_COMPLETE`: the memory alias check has completed.",
});

impl Serialize for PlatformInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_word(s, "PlatformInfo", self.0, &[], Self::FLAGS)
    }
}

/// `{"raw": "0x…", <number>: n, …, <flag>: bool, …}`.
fn serialize_word<S: Serializer>(
    s: S,
    name: &'static str,
    raw: u64,
    numbers: &[(&'static str, u8)],
    flags: &[(&'static str, u32)],
) -> Result<S::Ok, S::Error> {
    let mut out = s.serialize_struct(name, 1 + numbers.len() + flags.len())?;
    out.serialize_field("raw", &format!("{raw:#x}"))?;
    for (field, value) in numbers {
        out.serialize_field(field, value)?;
    }
    for (field, bit) in flags {
        out.serialize_field(field, &(raw & (1 << bit) != 0))?;
    }
    out.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_debug_and_checks_reserved_bits() {
        let go_sev_guest = GuestPolicy::new(0xb0000).unwrap();
        assert!(go_sev_guest.debug_allowed() && go_sev_guest.smt_allowed());
        assert!(!go_sev_guest.migrate_ma_allowed());
        let trustee = GuestPolicy::new(0x3001f).unwrap();
        assert!(!trustee.debug_allowed());
        assert_eq!((trustee.abi_major(), trustee.abi_minor()), (0, 0x1f));
        assert_eq!(
            GuestPolicy::new(0x10000),
            Err(SnpError::Reserved { field: "POLICY bit 17 (must be one)" })
        );
        assert_eq!(
            GuestPolicy::new(0x30000 | 1 << 26),
            Err(SnpError::Reserved { field: "POLICY bits 63:26" })
        );
        assert_eq!(
            GuestPolicy::new(0x30000 | 1 << 63),
            Err(SnpError::Reserved { field: "POLICY bits 63:26" })
        );
        let json = serde_json::to_value(go_sev_guest).unwrap();
        assert_eq!(json["raw"], "0xb0000");
        assert_eq!(
            (&json["debug_allowed"], &json["smt_allowed"], &json["abi_major"]),
            (&true.into(), &true.into(), &0.into())
        );
        assert_eq!(json.as_object().unwrap().len(), 12);
    }

    #[test]
    fn platform_info_bits() {
        let turin = PlatformInfo::new(0x67);
        assert!(turin.smt_enabled() && turin.tsme_enabled() && turin.ecc_enabled());
        assert!(!turin.rapl_disabled() && !turin.ciphertext_hiding_enabled() && turin.alias_check_complete());
        assert_eq!(turin.raw(), 0x67);
        let json = serde_json::to_value(turin).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 7);
        assert_eq!(
            (&json["raw"], &json["alias_check_complete"], &json["rapl_disabled"]),
            (&"0x67".into(), &true.into(), &false.into())
        );
    }
}

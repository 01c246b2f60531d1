//! The guest policy (SEV-SNP Firmware ABI, "GUEST_POLICY Structure", Table 10 in
//! revision 1.57) and the platform information word (`PLATFORM_INFO`, in
//! `ATTESTATION_REPORT` at 0x40).
//!
//! "Guest policy" is AMD's term: the launch constraints the firmware enforces on the guest,
//! not TPM policy digests ([`crate::tpm::session_policy`]) or the broker's admission
//! policy. The verifier decodes these bits; deciding which are acceptable (debug forbidden,
//! migration agent forbidden, ...) is the caller's admission policy.

use serde::{Serialize, Serializer};

use super::SnpError;

/// Guest policy bit numbers (ABI "GUEST_POLICY Structure").
mod bit {
    pub(super) const SMT: u32 = 16;
    /// Reserved, must be one.
    pub(super) const RESERVED_ONE: u32 = 17;
    pub(super) const MIGRATE_MA: u32 = 18;
    pub(super) const DEBUG: u32 = 19;
    pub(super) const SINGLE_SOCKET: u32 = 20;
    pub(super) const CXL_ALLOW: u32 = 21;
    pub(super) const MEM_AES_256_XTS: u32 = 22;
    pub(super) const RAPL_DIS: u32 = 23;
    pub(super) const CIPHERTEXT_HIDING_DRAM: u32 = 24;
    pub(super) const PAGE_SWAP_DISABLE: u32 = 25;
    /// Bits from here up are reserved and must be zero.
    pub(super) const FIRST_RESERVED: u32 = 26;
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
        if raw >> bit::FIRST_RESERVED != 0 {
            return Err(SnpError::Reserved { field: "POLICY bits 63:26" });
        }
        if raw & (1 << bit::RESERVED_ONE) == 0 {
            return Err(SnpError::Reserved { field: "POLICY bit 17 (must be one)" });
        }
        Ok(Self(raw))
    }

    /// The raw 64-bit value.
    #[must_use]
    pub fn raw(self) -> u64 {
        self.0
    }

    fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
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

    /// `SMT`: the guest may run with simultaneous multithreading enabled.
    #[must_use]
    pub fn smt_allowed(self) -> bool {
        self.bit(bit::SMT)
    }

    /// `MIGRATE_MA`: the guest may be associated with a migration agent.
    #[must_use]
    pub fn migrate_ma_allowed(self) -> bool {
        self.bit(bit::MIGRATE_MA)
    }

    /// `DEBUG`: the hypervisor may debug the guest (read and write its memory). A
    /// production policy refuses this.
    #[must_use]
    pub fn debug_allowed(self) -> bool {
        self.bit(bit::DEBUG)
    }

    /// `SINGLE_SOCKET`: the guest may only be activated on one socket.
    #[must_use]
    pub fn single_socket_required(self) -> bool {
        self.bit(bit::SINGLE_SOCKET)
    }

    /// `CXL_ALLOW`: CXL may be populated with devices or memory.
    #[must_use]
    pub fn cxl_allowed(self) -> bool {
        self.bit(bit::CXL_ALLOW)
    }

    /// `MEM_AES_256_XTS`: AES-256-XTS memory encryption is required.
    #[must_use]
    pub fn mem_aes_256_xts_required(self) -> bool {
        self.bit(bit::MEM_AES_256_XTS)
    }

    /// `RAPL_DIS`: Running Average Power Limit must be disabled.
    #[must_use]
    pub fn rapl_disable_required(self) -> bool {
        self.bit(bit::RAPL_DIS)
    }

    /// `CIPHERTEXT_HIDING_DRAM`: ciphertext hiding for DRAM is required.
    #[must_use]
    pub fn ciphertext_hiding_required(self) -> bool {
        self.bit(bit::CIPHERTEXT_HIDING_DRAM)
    }

    /// `PAGE_SWAP_DISABLE`: the guest's pages may not be swapped by the hypervisor.
    #[must_use]
    pub fn page_swap_disabled(self) -> bool {
        self.bit(bit::PAGE_SWAP_DISABLE)
    }
}

impl Serialize for GuestPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Decoded {
            raw: String,
            abi_major: u8,
            abi_minor: u8,
            smt_allowed: bool,
            migrate_ma_allowed: bool,
            debug_allowed: bool,
            single_socket_required: bool,
            cxl_allowed: bool,
            mem_aes_256_xts_required: bool,
            rapl_disable_required: bool,
            ciphertext_hiding_required: bool,
            page_swap_disabled: bool,
        }
        let p = *self;
        Decoded {
            raw: format!("{:#x}", p.0),
            abi_major: p.abi_major(),
            abi_minor: p.abi_minor(),
            smt_allowed: p.smt_allowed(),
            migrate_ma_allowed: p.migrate_ma_allowed(),
            debug_allowed: p.debug_allowed(),
            single_socket_required: p.single_socket_required(),
            cxl_allowed: p.cxl_allowed(),
            mem_aes_256_xts_required: p.mem_aes_256_xts_required(),
            rapl_disable_required: p.rapl_disable_required(),
            ciphertext_hiding_required: p.ciphertext_hiding_required(),
            page_swap_disabled: p.page_swap_disabled(),
        }
        .serialize(s)
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

    fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }

    /// `SMT_EN`: simultaneous multithreading is enabled.
    #[must_use]
    pub fn smt_enabled(self) -> bool {
        self.bit(0)
    }

    /// `TSME_EN`: transparent SME is enabled.
    #[must_use]
    pub fn tsme_enabled(self) -> bool {
        self.bit(1)
    }

    /// `ECC_EN`: the platform uses error-correcting memory.
    #[must_use]
    pub fn ecc_enabled(self) -> bool {
        self.bit(2)
    }

    /// `RAPL_DIS`: Running Average Power Limit is disabled.
    #[must_use]
    pub fn rapl_disabled(self) -> bool {
        self.bit(3)
    }

    /// `CIPHERTEXT_HIDING_DRAM_EN`: ciphertext hiding for DRAM is enabled.
    #[must_use]
    pub fn ciphertext_hiding_enabled(self) -> bool {
        self.bit(4)
    }

    /// `ALIAS_CHECK_COMPLETE`: the memory alias check has completed.
    #[must_use]
    pub fn alias_check_complete(self) -> bool {
        self.bit(5)
    }
}

impl Serialize for PlatformInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Decoded {
            raw: String,
            smt_enabled: bool,
            tsme_enabled: bool,
            ecc_enabled: bool,
            rapl_disabled: bool,
            ciphertext_hiding_enabled: bool,
            alias_check_complete: bool,
        }
        let p = *self;
        Decoded {
            raw: format!("{:#x}", p.0),
            smt_enabled: p.smt_enabled(),
            tsme_enabled: p.tsme_enabled(),
            ecc_enabled: p.ecc_enabled(),
            rapl_disabled: p.rapl_disabled(),
            ciphertext_hiding_enabled: p.ciphertext_hiding_enabled(),
            alias_check_complete: p.alias_check_complete(),
        }
        .serialize(s)
    }
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
        assert_eq!(json["debug_allowed"], true);
    }

    #[test]
    fn platform_info_bits() {
        let turin = PlatformInfo::new(0x67);
        assert!(turin.smt_enabled() && turin.tsme_enabled() && turin.ecc_enabled());
        assert!(!turin.rapl_disabled() && !turin.ciphertext_hiding_enabled() && turin.alias_check_complete());
        assert_eq!(turin.raw(), 0x67);
    }
}

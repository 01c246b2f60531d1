//! One event log record: PCR index, event type, digests per bank and the event data,
//! borrowed from the log bytes.

use std::fmt;

use crate::tpm::alg::HashAlg;

/// An event type (TCG PC Client Platform Firmware Profile, section 10.4.1, Table "Events").
///
/// Unknown values are kept: the log stays parseable when firmware uses vendor or newer types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u32);

impl EventType {
    /// `EV_PREBOOT_CERT`.
    pub const PREBOOT_CERT: Self = Self(0x0000_0000);
    /// `EV_POST_CODE`: a POST code string or a `UEFI_PLATFORM_FIRMWARE_BLOB`.
    pub const POST_CODE: Self = Self(0x0000_0001);
    /// `EV_UNUSED`.
    pub const UNUSED: Self = Self(0x0000_0002);
    /// `EV_NO_ACTION`: informational, never extended into a PCR.
    pub const NO_ACTION: Self = Self(0x0000_0003);
    /// `EV_SEPARATOR`: ends the pre-OS measurements of a PCR.
    pub const SEPARATOR: Self = Self(0x0000_0004);
    /// `EV_ACTION`: an action string.
    pub const ACTION: Self = Self(0x0000_0005);
    /// `EV_EVENT_TAG`: a `TCG_PCClientTaggedEvent`.
    pub const EVENT_TAG: Self = Self(0x0000_0006);
    /// `EV_S_CRTM_CONTENTS`.
    pub const S_CRTM_CONTENTS: Self = Self(0x0000_0007);
    /// `EV_S_CRTM_VERSION`: the S-CRTM version string (often UTF-16) or GUID.
    pub const S_CRTM_VERSION: Self = Self(0x0000_0008);
    /// `EV_CPU_MICROCODE`.
    pub const CPU_MICROCODE: Self = Self(0x0000_0009);
    /// `EV_PLATFORM_CONFIG_FLAGS`.
    pub const PLATFORM_CONFIG_FLAGS: Self = Self(0x0000_000A);
    /// `EV_TABLE_OF_DEVICES`.
    pub const TABLE_OF_DEVICES: Self = Self(0x0000_000B);
    /// `EV_COMPACT_HASH`.
    pub const COMPACT_HASH: Self = Self(0x0000_000C);
    /// `EV_IPL`: initial program loader measurements (grub, shim, systemd-boot).
    pub const IPL: Self = Self(0x0000_000D);
    /// `EV_IPL_PARTITION_DATA`.
    pub const IPL_PARTITION_DATA: Self = Self(0x0000_000E);
    /// `EV_NONHOST_CODE`.
    pub const NONHOST_CODE: Self = Self(0x0000_000F);
    /// `EV_NONHOST_CONFIG`.
    pub const NONHOST_CONFIG: Self = Self(0x0000_0010);
    /// `EV_NONHOST_INFO`.
    pub const NONHOST_INFO: Self = Self(0x0000_0011);
    /// `EV_OMIT_BOOT_DEVICE_EVENTS`.
    pub const OMIT_BOOT_DEVICE_EVENTS: Self = Self(0x0000_0012);
    /// `EV_POST_CODE2`.
    pub const POST_CODE2: Self = Self(0x0000_0013);
    /// `EV_EFI_VARIABLE_DRIVER_CONFIG`: a `UEFI_VARIABLE_DATA` (`SecureBoot`, PK, KEK, db, dbx).
    pub const EFI_VARIABLE_DRIVER_CONFIG: Self = Self(0x8000_0001);
    /// `EV_EFI_VARIABLE_BOOT`: a `UEFI_VARIABLE_DATA` (`BootOrder`, `Boot####`).
    pub const EFI_VARIABLE_BOOT: Self = Self(0x8000_0002);
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`: a `UEFI_IMAGE_LOAD_EVENT`.
    pub const EFI_BOOT_SERVICES_APPLICATION: Self = Self(0x8000_0003);
    /// `EV_EFI_BOOT_SERVICES_DRIVER`: a `UEFI_IMAGE_LOAD_EVENT`.
    pub const EFI_BOOT_SERVICES_DRIVER: Self = Self(0x8000_0004);
    /// `EV_EFI_RUNTIME_SERVICES_DRIVER`: a `UEFI_IMAGE_LOAD_EVENT`.
    pub const EFI_RUNTIME_SERVICES_DRIVER: Self = Self(0x8000_0005);
    /// `EV_EFI_GPT_EVENT`.
    pub const EFI_GPT_EVENT: Self = Self(0x8000_0006);
    /// `EV_EFI_ACTION`: an action string.
    pub const EFI_ACTION: Self = Self(0x8000_0007);
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB`: a `UEFI_PLATFORM_FIRMWARE_BLOB`.
    pub const EFI_PLATFORM_FIRMWARE_BLOB: Self = Self(0x8000_0008);
    /// `EV_EFI_HANDOFF_TABLES`.
    pub const EFI_HANDOFF_TABLES: Self = Self(0x8000_0009);
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB2`: a `UEFI_PLATFORM_FIRMWARE_BLOB2`.
    pub const EFI_PLATFORM_FIRMWARE_BLOB2: Self = Self(0x8000_000A);
    /// `EV_EFI_HANDOFF_TABLES2`.
    pub const EFI_HANDOFF_TABLES2: Self = Self(0x8000_000B);
    /// `EV_EFI_VARIABLE_BOOT2`: a `UEFI_VARIABLE_DATA`.
    pub const EFI_VARIABLE_BOOT2: Self = Self(0x8000_000C);
    /// `EV_EFI_GPT_EVENT2`.
    pub const EFI_GPT_EVENT2: Self = Self(0x8000_000D);
    /// `EV_EFI_HCRTM_EVENT`.
    pub const EFI_HCRTM_EVENT: Self = Self(0x8000_0010);
    /// `EV_EFI_VARIABLE_AUTHORITY`: a `UEFI_VARIABLE_DATA` naming the certificate that
    /// authorised an image.
    pub const EFI_VARIABLE_AUTHORITY: Self = Self(0x8000_00E0);
    /// `EV_EFI_SPDM_FIRMWARE_BLOB`.
    pub const EFI_SPDM_FIRMWARE_BLOB: Self = Self(0x8000_00E1);
    /// `EV_EFI_SPDM_FIRMWARE_CONFIG`.
    pub const EFI_SPDM_FIRMWARE_CONFIG: Self = Self(0x8000_00E2);

    const NAMES: [(Self, &'static str); 38] = [
        (Self::PREBOOT_CERT, "EV_PREBOOT_CERT"),
        (Self::POST_CODE, "EV_POST_CODE"),
        (Self::UNUSED, "EV_UNUSED"),
        (Self::NO_ACTION, "EV_NO_ACTION"),
        (Self::SEPARATOR, "EV_SEPARATOR"),
        (Self::ACTION, "EV_ACTION"),
        (Self::EVENT_TAG, "EV_EVENT_TAG"),
        (Self::S_CRTM_CONTENTS, "EV_S_CRTM_CONTENTS"),
        (Self::S_CRTM_VERSION, "EV_S_CRTM_VERSION"),
        (Self::CPU_MICROCODE, "EV_CPU_MICROCODE"),
        (Self::PLATFORM_CONFIG_FLAGS, "EV_PLATFORM_CONFIG_FLAGS"),
        (Self::TABLE_OF_DEVICES, "EV_TABLE_OF_DEVICES"),
        (Self::COMPACT_HASH, "EV_COMPACT_HASH"),
        (Self::IPL, "EV_IPL"),
        (Self::IPL_PARTITION_DATA, "EV_IPL_PARTITION_DATA"),
        (Self::NONHOST_CODE, "EV_NONHOST_CODE"),
        (Self::NONHOST_CONFIG, "EV_NONHOST_CONFIG"),
        (Self::NONHOST_INFO, "EV_NONHOST_INFO"),
        (Self::OMIT_BOOT_DEVICE_EVENTS, "EV_OMIT_BOOT_DEVICE_EVENTS"),
        (Self::POST_CODE2, "EV_POST_CODE2"),
        (Self::EFI_VARIABLE_DRIVER_CONFIG, "EV_EFI_VARIABLE_DRIVER_CONFIG"),
        (Self::EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT"),
        (Self::EFI_BOOT_SERVICES_APPLICATION, "EV_EFI_BOOT_SERVICES_APPLICATION"),
        (Self::EFI_BOOT_SERVICES_DRIVER, "EV_EFI_BOOT_SERVICES_DRIVER"),
        (Self::EFI_RUNTIME_SERVICES_DRIVER, "EV_EFI_RUNTIME_SERVICES_DRIVER"),
        (Self::EFI_GPT_EVENT, "EV_EFI_GPT_EVENT"),
        (Self::EFI_ACTION, "EV_EFI_ACTION"),
        (Self::EFI_PLATFORM_FIRMWARE_BLOB, "EV_EFI_PLATFORM_FIRMWARE_BLOB"),
        (Self::EFI_HANDOFF_TABLES, "EV_EFI_HANDOFF_TABLES"),
        (Self::EFI_PLATFORM_FIRMWARE_BLOB2, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"),
        (Self::EFI_HANDOFF_TABLES2, "EV_EFI_HANDOFF_TABLES2"),
        (Self::EFI_VARIABLE_BOOT2, "EV_EFI_VARIABLE_BOOT2"),
        (Self::EFI_GPT_EVENT2, "EV_EFI_GPT_EVENT2"),
        (Self::EFI_HCRTM_EVENT, "EV_EFI_HCRTM_EVENT"),
        (Self::EFI_VARIABLE_AUTHORITY, "EV_EFI_VARIABLE_AUTHORITY"),
        (Self::EFI_SPDM_FIRMWARE_BLOB, "EV_EFI_SPDM_FIRMWARE_BLOB"),
        (Self::EFI_SPDM_FIRMWARE_CONFIG, "EV_EFI_SPDM_FIRMWARE_CONFIG"),
        (Self(0x8000_00E3), "EV_EFI_SPDM_DEVICE_POLICY"),
    ];

    /// The specification's name (`EV_SEPARATOR`, ...), if the value is a known type.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES.iter().find(|(t, _)| *t == self).map(|(_, name)| *name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "event type {:#010x}", self.0),
        }
    }
}

/// Number of banks a [`Digests`] can hold: one slot per hash algorithm this crate knows.
const SLOTS: usize = HashAlg::ALL.len();

/// The digests one event carries, at most one per supported bank, borrowed from the log.
///
/// Digests of algorithms the Spec ID event declares but this crate does not support are
/// skipped while parsing and do not appear here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digests<'a> {
    slots: [Option<&'a [u8]>; SLOTS],
}

fn slot(bank: HashAlg) -> usize {
    match bank {
        HashAlg::Sha1 => 0,
        HashAlg::Sha256 => 1,
        HashAlg::Sha384 => 2,
        HashAlg::Sha512 => 3,
        HashAlg::Sm3_256 => 4,
    }
}

impl<'a> Digests<'a> {
    /// Stores `digest` for `bank`; false when the bank already had one.
    pub(super) fn insert(&mut self, bank: HashAlg, digest: &'a [u8]) -> bool {
        match self.slots.get_mut(slot(bank)) {
            Some(entry @ None) => {
                *entry = Some(digest);
                true
            }
            _ => false,
        }
    }

    /// The digest for `bank`, if the event carries one.
    #[must_use]
    pub fn get(&self, bank: HashAlg) -> Option<&'a [u8]> {
        self.slots.get(slot(bank)).copied().flatten()
    }

    /// Every digest the event carries, in `TPM_ALG_ID` order.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, &'a [u8])> + '_ {
        HashAlg::ALL.into_iter().filter_map(|bank| self.get(bank).map(|digest| (bank, digest)))
    }
}

/// One record of the log: a `TCG_PCR_EVENT` (PFP Table "TCG_PCR_EVENT") or a
/// `TCG_PCR_EVENT2` (PFP Table "TCG_PCR_EVENT2").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub(super) pcr: u32,
    pub(super) event_type: EventType,
    pub(super) digests: Digests<'a>,
    pub(super) data: &'a [u8],
}

impl<'a> Event<'a> {
    /// `pcrIndex`: the PCR the event extends. `EV_NO_ACTION` events may carry any value
    /// (Windows logs use `0xFFFFFFFF`); every other event's index is below
    /// [`crate::tpm::pcr::MAX_PCRS`], which parsing checks.
    #[must_use]
    pub fn pcr(&self) -> u32 {
        self.pcr
    }

    /// `eventType`.
    #[must_use]
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// `digest` (SHA-1 format) or `digests` (crypto-agile format).
    #[must_use]
    pub fn digests(&self) -> &Digests<'a> {
        &self.digests
    }

    /// The digest extended into `bank`, if the event carries one.
    #[must_use]
    pub fn digest(&self, bank: HashAlg) -> Option<&'a [u8]> {
        self.digests.get(bank)
    }

    /// `event`: the event data, exactly `eventSize` bytes. Not covered by the digests in
    /// general; see [`super::BootSummary`] for which content is checked against them.
    #[must_use]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Whether replay extends this event into its PCR (every type but `EV_NO_ACTION`).
    #[must_use]
    pub fn is_extended(&self) -> bool {
        self.event_type != EventType::NO_ACTION
    }
}
